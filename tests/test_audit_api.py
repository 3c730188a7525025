"""The auditor's API and point-in-time reads, against a live server on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from api.tokens import Role
from crypto.checkpoint import NoteVerifier, open_checkpoint
from crypto.merkle import verify_consistency, verify_inclusion
from domain.user import UserKind
from tests.conftest import Api, open_api
from ticketlog.audit.leaves import event_leaf_hash
from ticketlog.audit.signing import load_signer
from ticketlog.config import Settings
from ticketlog.runtime import Runtime


def b64(text: str) -> bytes:
    return base64.b64decode(text)


def sign_now(api: Api) -> None:
    from ticketlog.audit.signing import Checkpointer

    runtime = api.runtime
    assert runtime.audit is not None
    signer = load_signer(runtime.settings, may_create=True)
    Checkpointer(runtime.audit, signer, runtime.settings.log_origin).make()


def test_auditors_read_stored_events_and_prove_them(api: Api) -> None:
    # Commands straight through the desk: API responses would add access records to the log.
    desk = api.runtime.desk
    customer = desk.register_user(UserKind.CUSTOMER, "Ada Lovelace", "ada@example.com")
    desk.open_ticket(customer, "Printer on fire", "Body")
    assert api.get("/v1/audit/checkpoints/latest", role=Role.AUDITOR).status_code == 404
    sign_now(api)
    first = api.get("/v1/audit/checkpoints/latest", role=Role.AUDITOR).json()
    desk.open_ticket(customer, "Subject", "Body")
    sign_now(api)

    key = NoteVerifier.from_text(
        api.get("/v1/audit/public-key", role=Role.AUDITOR).json()["public_key"]
    )
    latest = api.get("/v1/audit/checkpoints/latest", role=Role.AUDITOR).json()
    head = open_checkpoint(latest["note"], key)
    assert head.size == latest["tree_size"] == 3

    page = api.get("/v1/audit/events", role=Role.AUDITOR, after=0, limit=2).json()
    assert [e["position"] for e in page["items"]] == [0, 1]
    rest = api.get("/v1/audit/events", role=Role.AUDITOR, after=page["next_after"]).json()
    events = page["items"] + rest["items"]
    assert rest["next_after"] is None
    assert len(events) == 3
    for e in events:
        # Each leaf is recomputable from what the API shows; personal fields are ciphertext.
        state = b64(e["state"])
        assert b"Ada Lovelace" not in state
        assert b"Printer on fire" not in state
        digest = event_leaf_hash(
            e["notification_id"], e["originator_id"], e["originator_version"], e["topic"], state
        )
        assert digest == b64(e["leaf_hash"])
        proof = api.get(f"/v1/audit/proofs/inclusion/{e['notification_id']}", role=Role.AUDITOR)
        body = proof.json()
        assert body["tree_size"] == head.size
        assert verify_inclusion(
            digest, e["position"], head.size, [b64(h) for h in body["proof"]], head.root
        )

    c = api.get(
        "/v1/audit/proofs/consistency", role=Role.AUDITOR, **{"from": first["tree_size"], "to": 3}
    ).json()
    assert verify_consistency(
        first["tree_size"], 3, b64(first["root"]), head.root, [b64(h) for h in c["proof"]]
    )


def test_audit_routes_refuse_other_roles_and_bad_input(api: Api) -> None:
    api.user()
    sign_now(api)
    for path in (
        "/v1/audit/events",
        "/v1/audit/checkpoints/latest",
        "/v1/audit/proofs/inclusion/1",
    ):
        assert api.get(path, role=Role.SERVICE).status_code == 403
        assert api.get(path, role=None).status_code == 401
    cases = [
        ("/v1/audit/proofs/inclusion/1", {"tree_size": 5}, 422),
        ("/v1/audit/proofs/inclusion/1", {"tree_size": 0}, 422),
        ("/v1/audit/proofs/inclusion/99", {}, 404),
        ("/v1/audit/proofs/inclusion/abc", {}, 422),
        ("/v1/audit/proofs/consistency", {"from": 2, "to": 1}, 422),
        ("/v1/audit/proofs/consistency", {"from": 0, "to": 9}, 422),
        ("/v1/audit/proofs/consistency", {"from": -1, "to": 1}, 422),
        ("/v1/audit/events", {"limit": 0}, 422),
        ("/v1/audit/events", {"after": "x"}, 422),
    ]
    for path, params, status in cases:
        r = api.get(path, role=Role.AUDITOR, **params)
        assert r.status_code == status, (path, params, r.text)
        assert "code" in r.json()["error"]


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clocked(settings: Settings) -> Iterator[tuple[Api, Clock]]:
    clock = Clock(datetime(2024, 1, 1, 9, 0, tzinfo=UTC))
    runtime = Runtime.open(settings, clock=clock)
    try:
        for api in open_api(runtime)():
            yield api, clock
    finally:
        runtime.close()


def test_tickets_as_recorded_and_as_they_happened(clocked: tuple[Api, Clock]) -> None:
    api, clock = clocked
    customer = api.user()
    agent = api.user(kind="agent")
    ticket = api.ticket(customer["id"], subject="Invoice wrong")
    tid = ticket["id"]
    recorded_before_assign = datetime.now(UTC)
    clock.now += timedelta(days=2)
    api.post(f"/v1/tickets/{tid}/assign", {"assignee_id": agent["id"]})
    clock.now += timedelta(days=1)
    api.post(f"/v1/tickets/{tid}/comments", {"author_id": agent["id"], "body": "Fixed"})

    then = api.get(f"/v1/tickets/{tid}", as_of=recorded_before_assign.isoformat())
    assert then.status_code == 200, then.text
    assert (then.json()["status"], then.json()["assignee_id"]) == ("new", None)
    assert then.json()["subject"] == "Invoice wrong"

    # Business time: one day after opening (imports set occurred_at to when things happened).
    day_one = api.get(
        f"/v1/tickets/{tid}", role=Role.AUDITOR, as_of_occurred="2024-01-02T09:00:00+00:00"
    ).json()
    assert (day_one["status"], day_one["comments"]) == ("new", [])
    day_three = api.get(f"/v1/tickets/{tid}", as_of_occurred="2024-01-03T12:00:00Z").json()
    assert (day_three["status"], len(day_three["comments"])) == ("open", 0)
    now = api.get(f"/v1/tickets/{tid}", role=Role.AUDITOR, as_of="2999-01-01T00:00:00Z").json()
    assert now == api.get(f"/v1/tickets/{tid}").json()

    assert api.get(f"/v1/tickets/{tid}", as_of_occurred="2023-12-31T00:00:00Z").status_code == 404
    both = api.get(f"/v1/tickets/{tid}", as_of="2024-01-01", as_of_occurred="2024-01-01")
    assert both.status_code == 422
    assert api.get(f"/v1/tickets/{tid}", as_of="yesterday").status_code == 422
    assert api.get(f"/v1/tickets/{tid}", role=Role.AUDITOR).status_code == 403
    assert (
        api.get(f"/v1/tickets/{tid}", role=Role.COMPLIANCE, as_of="2999-01-01").status_code == 403
    )
    assert api.get(f"/v1/tickets/{customer['id']}", as_of="2999-01-01").status_code == 404


def test_point_in_time_reads_hide_erased_content(clocked: tuple[Api, Clock]) -> None:
    api, _ = clocked
    customer = api.user()
    tid = api.ticket(customer["id"], subject="Secret subject")["id"]
    assert api.post(f"/v1/subjects/{customer['id']}/erase", role=Role.COMPLIANCE).status_code == 200
    past = api.get(f"/v1/tickets/{tid}", role=Role.AUDITOR, as_of="2999-01-01T00:00:00Z").json()
    assert (past["subject"], past["body"]) == (None, None)
