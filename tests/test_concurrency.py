"""Concurrent writers on one ticket: nothing lost, never a 500; If-Match / ETag refuse stale
writes (412) and apply current ones, also when the command lost a race and re-ran."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any
from uuid import UUID

import httpx
import pytest
from eventsourcing.persistence import IntegrityError

from api.tokens import Role
from domain.errors import VersionMismatch
from domain.ticket import Ticket
from tests.conftest import Api
from tests.test_attachments import upload
from ticketlog.runtime import Runtime

THREADS = 16
COMMENTS_EACH = 10


def in_threads(count: int, work: Callable[[int], None]) -> None:
    """Run work(0..count-1) in threads released together; re-raise the first failure."""
    start = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(n: int) -> None:
        start.wait()
        try:
            work(n)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def logged_comment_bodies(runtime: Runtime, ticket_id: UUID) -> list[str]:
    events = runtime.desk.ticket_history(ticket_id)
    return [str(e.body) for e in events if isinstance(e, Ticket.CommentAdded)]


def scene(api: Api) -> tuple[str, str, dict[str, Any]]:
    """A customer, an agent and the customer's ticket."""
    customer = api.user()
    agent = api.user(kind="agent")
    ticket = api.ticket(customer["id"])
    return str(customer["id"]), str(agent["id"]), ticket


# Many writers, nothing lost


def test_many_threads_commenting_over_http_lose_nothing_and_never_get_a_500(
    unlimited_api: Api,
) -> None:
    api = unlimited_api
    _, agent, ticket = scene(api)
    statuses: list[int] = []
    accepted: list[str] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        with httpx.Client(base_url=str(api.client.base_url), timeout=60) as client:
            for i in range(COMMENTS_EACH):
                text = f"comment {n}-{i}"
                r = client.post(
                    f"/v1/tickets/{ticket['id']}/comments",
                    json={"author_id": agent, "body": text, "public": False},
                    headers=api.headers(Role.SERVICE),
                )
                with lock:
                    statuses.append(r.status_code)
                    if r.status_code == 201:
                        accepted.append(text)
                    else:
                        assert r.status_code == 409, r.text
                        assert r.json()["error"]["code"] == "conflict"

    in_threads(THREADS, writer)

    assert len(statuses) == THREADS * COMMENTS_EACH
    assert all(s < 500 for s in statuses)
    assert accepted, "no comment got through"
    logged = logged_comment_bodies(api.runtime, UUID(str(ticket["id"])))
    assert sorted(logged) == sorted(accepted)  # every 2xx is in the log, and nothing else
    view = api.get(f"/v1/tickets/{ticket['id']}").json()
    assert sorted(c["body"] for c in view["comments"]) == sorted(accepted)
    assert view["version"] == api.runtime.desk.get(Ticket, UUID(str(ticket["id"]))).version


def test_many_threads_commenting_on_the_desk_lose_nothing(runtime: Runtime) -> None:
    desk = runtime.desk
    agent = desk.register_user("agent", "Agent", "agent@example.com")
    customer = desk.register_user("customer", "Customer", "customer@example.com")
    ticket_id = desk.open_ticket(customer, "Subject", "Body")
    versions: list[int] = []
    accepted: list[str] = []
    conflicts = 0
    lock = threading.Lock()

    def writer(n: int) -> None:
        nonlocal conflicts
        for i in range(COMMENTS_EACH):
            text = f"desk {n}-{i}"
            try:
                version = desk.add_comment(ticket_id, agent, text, public=False)
            except IntegrityError:  # out of retries: the API answers 409 conflict
                with lock:
                    conflicts += 1
                continue
            with lock:
                versions.append(version)
                accepted.append(text)

    in_threads(THREADS, writer)

    assert len(accepted) + conflicts == THREADS * COMMENTS_EACH
    assert len(set(versions)) == len(versions)  # each got its own version
    assert sorted(logged_comment_bodies(runtime, ticket_id)) == sorted(accepted)
    runtime.runner.catch_up()
    row = runtime.queries.ticket(str(ticket_id))
    assert row is not None
    assert len(row["comments"]) == len(accepted)
    print(f"{conflicts} of {THREADS * COMMENTS_EACH} ran out of retries")


# If-Match and ETag


def test_the_etag_round_trips_and_a_stale_one_is_refused_with_nothing_stored(api: Api) -> None:
    _, agent, ticket = scene(api)
    path = f"/v1/tickets/{ticket['id']}"
    read = api.get(path)
    etag = read.headers["etag"]
    assert etag == f'"{read.json()["version"]}"'

    comment = {"author_id": agent, "body": "first", "public": False}
    fresh = api.client.post(
        f"{path}/comments", json=comment, headers={**api.headers(Role.SERVICE), "If-Match": etag}
    )
    assert fresh.status_code == 201, fresh.text
    assert fresh.headers["etag"] == f'"{fresh.json()["ticket"]["version"]}"' != etag

    before = api.runtime.desk.recorder.max_notification_id()
    stale = api.client.post(
        f"{path}/comments",
        json={**comment, "body": "second"},
        headers={**api.headers(Role.SERVICE), "If-Match": etag},
    )
    assert stale.status_code == 412
    error = stale.json()["error"]
    assert error["code"] == "version_mismatch"
    assert error["details"][0]["current_version"] == fresh.json()["ticket"]["version"]
    assert stale.headers["etag"] == fresh.headers["etag"]
    assert api.runtime.desk.recorder.max_notification_id() == before
    assert [c["body"] for c in api.get(path).json()["comments"]] == ["first"]


@pytest.mark.parametrize("form", ["{v}", '"{v}"', 'W/"{v}"', "*"])
def test_if_match_takes_the_number_the_etag_or_the_weak_etag(api: Api, form: str) -> None:
    _, _, ticket = scene(api)
    if_match = form.format(v=ticket["version"])
    r = api.client.post(
        f"/v1/tickets/{ticket['id']}/priority",
        json={"priority": "high"},
        headers={**api.headers(Role.SERVICE), "If-Match": if_match},
    )
    assert r.status_code == 200, r.text
    assert r.json()["priority"] == "high"


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("comments", {"body": "late", "public": False}),
        ("assign", {}),
        ("status", {"status": "open"}),
        ("priority", {"priority": "urgent"}),
        ("tags", {"tags": ["billing"]}),
    ],
)
def test_every_ticket_command_refuses_a_stale_version(
    api: Api, route: str, body: dict[str, Any]
) -> None:
    _, agent, ticket = scene(api)
    body = {**body, "author_id": agent} if route == "comments" else body
    body = {**body, "assignee_id": agent} if route == "assign" else body
    moved = api.post(f"/v1/tickets/{ticket['id']}/tags", {"tags": ["moved"]})
    assert moved.status_code == 200
    before = api.runtime.desk.recorder.max_notification_id()
    r = api.client.post(
        f"/v1/tickets/{ticket['id']}/{route}",
        json=body,
        headers={**api.headers(Role.SERVICE), "If-Match": f'"{ticket["version"]}"'},
    )
    assert r.status_code == 412, r.text
    assert r.json()["error"]["code"] == "version_mismatch"
    assert r.json()["error"]["details"][0]["current_version"] == moved.json()["version"]
    assert api.runtime.desk.recorder.max_notification_id() == before


@pytest.mark.parametrize("value", ["seven", '"7', "7, 8", "-1", 'W/"x"', "1" * 19, "7.0"])
def test_a_malformed_if_match_is_a_400_and_stores_nothing(api: Api, value: str) -> None:
    _, _, ticket = scene(api)
    before = api.runtime.desk.recorder.max_notification_id()
    r = api.client.post(
        f"/v1/tickets/{ticket['id']}/status",
        json={"status": "open"},
        headers={**api.headers(Role.SERVICE), "If-Match": value},
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_if_match"
    assert api.runtime.desk.recorder.max_notification_id() == before


def test_a_profile_change_takes_if_match_and_a_stale_one_reserves_no_address(api: Api) -> None:
    user = api.user(name="Vera Version", email="vera@example.com")
    path = f"/v1/users/{user['id']}"
    read = api.get(path)
    assert read.headers["etag"] == f'"{read.json()["version"]}"'

    def patch(body: dict[str, Any], if_match: str) -> httpx.Response:
        headers = {**api.headers(Role.SERVICE), "If-Match": if_match}
        return api.client.patch(path, json=body, headers=headers)

    renamed = patch({"name": "Vera Current"}, read.headers["etag"])
    assert renamed.status_code == 200, renamed.text
    assert renamed.headers["etag"] == f'"{renamed.json()["version"]}"' != read.headers["etag"]

    before = api.runtime.desk.recorder.max_notification_id()
    stale = patch({"name": "Vera Stale", "email": "wanted@example.com"}, read.headers["etag"])
    assert stale.status_code == 412, stale.text
    assert stale.json()["error"]["code"] == "version_mismatch"
    assert stale.headers["etag"] == renamed.headers["etag"]
    assert api.runtime.desk.recorder.max_notification_id() == before
    assert api.get(path).json()["name"] == "Vera Current"
    # The address the stale change asked for was not held for Vera: another user takes it.
    other = {"kind": "customer", "name": "W", "email": "wanted@example.com"}
    assert api.post("/v1/users", other).status_code == 201

    assert patch({"name": "Vera"}, "seven").status_code == 400
    assert patch({"name": "Vera"}, "*").status_code == 200


def test_a_contract_end_takes_if_match(api: Api) -> None:
    created = api.post("/v1/organizations", {"name": "Versioned GmbH"})
    assert created.headers["etag"] == '"1"'
    path = f"/v1/organizations/{created.json()['id']}"
    assert api.get(path).headers["etag"] == '"1"'

    def end(if_match: str) -> httpx.Response:
        headers = {**api.headers(Role.COMPLIANCE), "If-Match": if_match}
        return api.client.post(f"{path}/contract-end", json={}, headers=headers)

    assert end("nine").status_code == 400
    stale = end('"7"')
    assert stale.status_code == 412, stale.text
    assert stale.headers["etag"] == '"1"'
    assert api.get(path).json()["contract_ended_at"] is None  # nothing stored
    ended = end('"1"')
    assert ended.status_code == 200, ended.text
    assert ended.json()["contract_ended_at"] is not None
    assert ended.headers["etag"] == f'"{ended.json()["version"]}"' == '"2"'


def test_a_stale_upload_is_refused_and_an_unconditional_one_goes_through(api: Api) -> None:
    customer, _, ticket = scene(api)
    api.post(f"/v1/tickets/{ticket['id']}/priority", {"priority": "low"})
    r = api.client.post(
        f"/v1/tickets/{ticket['id']}/attachments",
        files={"file": ("a.txt", b"data", "text/plain")},
        data={"uploader_id": customer},
        headers={**api.headers(Role.SERVICE), "If-Match": str(ticket["version"])},
    )
    assert r.status_code == 412
    assert r.json()["error"]["code"] == "version_mismatch"
    assert api.get(f"/v1/tickets/{ticket['id']}/attachments").json()["items"] == []
    assert upload(api, ticket["id"], customer, b"data").status_code == 201


# The check is race-free: racers that all expect one version, one wins


def test_racing_writers_expecting_one_version_let_exactly_one_through_on_the_desk(
    runtime: Runtime,
) -> None:
    desk = runtime.desk
    agent = desk.register_user("agent", "Agent", "agent@example.com")
    customer = desk.register_user("customer", "Customer", "customer@example.com")
    ticket_id = desk.open_ticket(customer, "Subject", "Body")
    version = desk.get(Ticket, ticket_id).version
    outcomes: list[str] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        try:
            desk.add_comment(ticket_id, agent, f"racer {n}", False, expected_version=version)
            outcome = "applied"
        except VersionMismatch as e:
            outcome = f"refused at {e.current}"
        with lock:
            outcomes.append(outcome)

    in_threads(THREADS, writer)

    assert sorted(outcomes) == ["applied"] + [f"refused at {version + 1}"] * (THREADS - 1)
    assert len(logged_comment_bodies(runtime, ticket_id)) == 1
    assert desk.get(Ticket, ticket_id).version == version + 1


def test_racing_requests_with_one_if_match_let_exactly_one_through(unlimited_api: Api) -> None:
    api = unlimited_api
    _, agent, ticket = scene(api)
    statuses: list[int] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        with httpx.Client(base_url=str(api.client.base_url), timeout=60) as client:
            r = client.post(
                f"/v1/tickets/{ticket['id']}/comments",
                json={"author_id": agent, "body": f"racer {n}", "public": False},
                headers={**api.headers(Role.SERVICE), "If-Match": f'"{ticket["version"]}"'},
            )
        with lock:
            statuses.append(r.status_code)

    in_threads(THREADS, writer)

    assert sorted(statuses) == [201] + [412] * (THREADS - 1)
    view = api.get(f"/v1/tickets/{ticket['id']}").json()
    assert len(view["comments"]) == 1
    assert view["version"] == int(str(ticket["version"])) + 1


def test_a_command_for_an_unknown_ticket_is_still_a_404_with_if_match(api: Api) -> None:
    r = api.client.post(
        f"/v1/tickets/{uuid.uuid4()}/status",
        json={"status": "open"},
        headers={**api.headers(Role.SERVICE), "If-Match": '"1"'},
    )
    assert r.status_code == 404
