"""Idempotency-Key: a retried command returns the first response and appends nothing new."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx
import orjson

from api.idempotency import STALE_AFTER, IdempotencyStore, Secrets
from api.tokens import Role
from tests.conftest import Api, LiveServer, postgres_hits, raw_hits
from ticketlog.config import Settings
from ticketlog.runtime import Runtime


def _events(runtime: Runtime) -> int:
    return int(runtime.desk.recorder.max_notification_id() or 0)


def _user(email: str) -> dict[str, object]:
    return {"kind": "customer", "name": "Idem Potent", "email": email}


def _post(api: Api, path: str, body: object, key: str, role: Role = Role.SERVICE) -> httpx.Response:
    headers = {**api.headers(role), "Idempotency-Key": key}
    return api.client.post(path, json=body, headers=headers)


def _comment_on_a_new_ticket(
    api: Api, body: str, key: str
) -> tuple[str, dict[str, object], httpx.Response]:
    """A new ticket's first comment, sent with key: (comments path, comment, answer: 201)."""
    requester = api.user()
    ticket = api.ticket(requester["id"])
    comment = {"author_id": requester["id"], "body": body, "public": True}
    path = f"/v1/tickets/{ticket['id']}/comments"
    first = _post(api, path, comment, key)
    assert first.status_code == 201, first.text
    return path, comment, first


def test_a_retry_returns_the_first_response_and_appends_nothing(api: Api) -> None:
    key = str(uuid.uuid4())
    first = _post(api, "/v1/users", _user("first@example.com"), key)
    assert first.status_code == 201
    events = _events(api.runtime)
    again = _post(api, "/v1/users", _user("first@example.com"), key)
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert _events(api.runtime) == events


def test_commands_on_a_ticket_are_not_applied_twice(api: Api) -> None:
    key = "comment-" + uuid.uuid4().hex
    path, comment, first = _comment_on_a_new_ticket(api, "once only", key)
    for _ in range(3):
        assert _post(api, path, comment, key).json() == first.json()
    read = api.get(path.removesuffix("/comments")).json()
    assert [c["body"] for c in read["comments"]].count("once only") == 1


def test_a_replay_repeats_the_etag_and_content_type_but_not_the_request_id(api: Api) -> None:
    key = "etag-" + uuid.uuid4().hex
    path, comment, first = _comment_on_a_new_ticket(api, "versioned", key)
    assert first.headers["etag"] == f'"{first.json()["ticket"]["version"]}"'
    again = _post(api, path, comment, key)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["etag"] == first.headers["etag"]
    assert again.headers["content-type"] == first.headers["content-type"]
    assert again.headers["x-request-id"] != first.headers["x-request-id"]


def test_the_same_key_with_a_different_body_is_refused(api: Api) -> None:
    key = str(uuid.uuid4())
    assert _post(api, "/v1/users", _user("one@example.com"), key).status_code == 201
    events = _events(api.runtime)
    r = _post(api, "/v1/users", _user("other@example.com"), key)
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "idempotency_key_reused"
    # The same key on another route is a different request too.
    r = _post(api, "/v1/organizations", {"name": "Org"}, key)
    assert r.json()["error"]["code"] == "idempotency_key_reused"
    assert _events(api.runtime) == events


def test_keys_belong_to_one_token(api: Api) -> None:
    key = str(uuid.uuid4())
    first = _post(api, "/v1/users", _user("token@example.com"), key)
    assert first.status_code == 201
    other = _post(api, "/v1/users", _user("token@example.com"), key, role=Role.ADMIN)
    # Run anew, not replayed: the address is now taken by the first request's user.
    assert (other.status_code, other.json()["error"]["code"]) == (409, "email_taken")
    assert "idempotent-replayed" not in other.headers


def test_failed_commands_are_not_remembered(api: Api) -> None:
    key = str(uuid.uuid4())
    body = {"requester_id": str(uuid.uuid4()), "subject": "S", "body": "B"}
    assert _post(api, "/v1/tickets", body, key).status_code == 404
    requester = api.user()
    fixed = {**body, "requester_id": requester["id"]}
    # A different body after a failure is a new request, not a reuse.
    assert _post(api, "/v1/tickets", fixed, key).status_code == 201


def test_malformed_keys_are_refused(api: Api) -> None:
    for key in ("", "x" * 256, "has space"):
        r = _post(api, "/v1/users", _user("bad@example.com"), key)
        assert r.status_code == 422
        assert r.json()["error"]["code"] == "invalid_idempotency_key"


def _age_unanswered_reservations(runtime: Runtime) -> None:
    """Let the stale period pass for requests whose answer was never remembered."""
    stale = (datetime.now(UTC) - STALE_AFTER - timedelta(seconds=1)).isoformat()
    with runtime.tokens.db.transaction() as c:
        c.execute("UPDATE idempotency_keys SET created_at = ? WHERE status IS NULL", [stale])


def _unanswered(runtime: Runtime) -> int:
    with runtime.tokens.db.transaction() as c:
        row = c.execute(
            "SELECT count(*) AS n FROM idempotency_keys WHERE status IS NULL"
        ).fetchone()
    return int(row["n"])


def _lose_the_answers(runtime: Runtime) -> None:
    """What a kill -9 between storing a command and remembering its answer leaves behind."""
    deadline = time.monotonic() + 10
    while _unanswered(runtime):  # answers are remembered just after they are sent
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with runtime.tokens.db.transaction() as c:
        c.execute("UPDATE idempotency_keys SET status = NULL, response = NULL")
    _age_unanswered_reservations(runtime)


def test_a_command_whose_answer_was_lost_is_not_stored_twice(api: Api) -> None:
    requester = api.user()
    ticket = api.ticket(requester["id"])
    path = f"/v1/tickets/{ticket['id']}/comments"
    comment = {"author_id": requester["id"], "body": "answer lost", "public": True}
    opening = {"requester_id": requester["id"], "subject": "Lost answer", "body": "B"}
    assert _post(api, path, comment, "comment-key").status_code == 201
    assert _post(api, "/v1/tickets", opening, "ticket-key").status_code == 201
    events = _events(api.runtime)
    _lose_the_answers(api.runtime)
    for retry_path, body, key in [
        (path, comment, "comment-key"),
        ("/v1/tickets", opening, "ticket-key"),
    ]:
        again = _post(api, retry_path, body, key)
        assert again.status_code == 409, again.text
        assert again.json()["error"]["code"] == "idempotency_key_stored"
    assert _events(api.runtime) == events
    read = api.get(f"/v1/tickets/{ticket['id']}").json()
    assert [c["body"] for c in read["comments"]].count("answer lost") == 1
    mine = api.get("/v1/tickets", requester_id=requester["id"]).json()["items"]
    assert [t["subject"] for t in mine].count("Lost answer") == 1


def test_a_command_cut_off_before_it_was_stored_runs_on_retry(api: Api) -> None:
    requester = api.user()
    body = orjson.dumps({"requester_id": requester["id"], "subject": "Cut off", "body": "B"})
    token = api.tokens[Role.SERVICE]
    principal = api.runtime.tokens.authenticate(token)
    assert principal is not None
    who = Secrets.derive(principal.token_id, token, "cut-off")
    # The server reserved the key, then died before storing anything.
    store = IdempotencyStore(api.runtime.tokens.db)
    mac = who.request_mac("POST", "/v1/tickets", b"", body)
    assert store.reserve(who, mac, datetime.now(UTC)) is None
    headers = {
        **api.headers(Role.SERVICE),
        "Idempotency-Key": "cut-off",
        "Content-Type": "application/json",
    }
    early = api.client.post("/v1/tickets", content=body, headers=headers)
    assert early.json()["error"]["code"] == "idempotency_key_in_flight"
    _age_unanswered_reservations(api.runtime)
    retried = api.client.post("/v1/tickets", content=body, headers=headers)
    assert retried.status_code == 201, retried.text
    replayed = api.client.post("/v1/tickets", content=body, headers=headers)
    assert replayed.json() == retried.json()
    assert replayed.headers["idempotent-replayed"] == "true"


@contextmanager
def _serving(
    settings: Settings, token: str | None = None
) -> Iterator[tuple[Runtime, httpx.Client, str]]:
    runtime = Runtime.open(settings)
    try:
        if token is None:
            token = runtime.tokens.create(Role.SERVICE, "retrying service")[1]
        with LiveServer(runtime) as url, httpx.Client(base_url=url, timeout=30) as client:
            client.headers["Authorization"] = f"Bearer {token}"
            yield runtime, client, token
    finally:
        runtime.close()


def test_a_retry_after_a_restart_still_gets_the_first_response(settings: Settings) -> None:
    key = str(uuid.uuid4())
    email = f"restart-{uuid.uuid4().hex[:8]}@example.com"
    headers = {"Idempotency-Key": key}
    with _serving(settings) as (runtime, client, token):
        first = client.post("/v1/users", json=_user(email), headers=headers)
        assert first.status_code == 201
        events = _events(runtime)
    with _serving(settings, token) as (runtime, client, _):
        again = client.post("/v1/users", json=_user(email), headers=headers)
        assert again.status_code == 201
        assert again.json() == first.json()
        assert _events(runtime) == events
        reused = client.post("/v1/users", json=_user("x" + email), headers=headers)
        assert reused.json()["error"]["code"] == "idempotency_key_reused"
    # The remembered response holds personal data: at rest it is ciphertext only.
    needles = [email, "Idem Potent"]
    assert raw_hits(settings.data_dir, needles) == []
    assert postgres_hits(settings, needles) == []


def test_a_request_that_outlived_its_reservation_leaves_the_retrys_alone(api: Api) -> None:
    """A first request slower than STALE_AFTER: its retry took the key over. The first one's
    late answer or release must not touch the retry's reservation."""
    token = api.tokens[Role.SERVICE]
    principal = api.runtime.tokens.authenticate(token)
    assert principal is not None
    who = Secrets.derive(principal.token_id, token, "slow-first")
    mac = who.request_mac("POST", "/v1/tickets", b"", b"{}")
    store = IdempotencyStore(api.runtime.tokens.db)
    first_at = datetime.now(UTC) - STALE_AFTER - timedelta(seconds=1)
    assert store.reserve(who, mac, first_at) is None
    retry_at = datetime.now(UTC)
    assert store.reserve(who, mac, retry_at) is None  # the stale reservation was taken over
    store.release(who, first_at)  # the slow first request gives up late: nothing of the retry's
    store.complete(who, first_at, 201, b"first")
    in_flight = store.reserve(who, mac, datetime.now(UTC))
    assert in_flight is not None
    assert in_flight.status is None
    store.complete(who, retry_at, 201, who.seal([], b"retry"))
    answered = store.reserve(who, mac, datetime.now(UTC))
    assert answered is not None
    assert answered.status == 201
    assert who.open(answered.response or b"")[1] == b"retry"
