"""Every data-subject right, end to end over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
import uuid
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from api.tokens import Role
from domain.user import User
from tests.conftest import Api, open_api, postgres_hits, raw_hits
from ticketlog.config import Settings
from ticketlog.reconcile import reconcile
from ticketlog.runtime import Runtime


def comment(api: Api, ticket_id: object, author_id: object, body: str, public: bool = True):  # type: ignore[no-untyped-def]
    return api.post(
        f"/v1/tickets/{ticket_id}/comments",
        {"author_id": author_id, "body": body, "public": public},
    )


def test_anonymize_keeps_ticket_content_but_not_the_person(api: Api) -> None:
    ann = api.user(name="Ann Onymous", email="ann@anon.example")
    other, agent = api.user(), api.user(kind="agent")
    own = api.ticket(ann["id"], subject="Archive me", body="Useful history")["id"]
    comment(api, own, ann["id"], "My own follow-up")
    comment(api, own, agent["id"], "Agent answer")
    elsewhere = api.ticket(other["id"])["id"]
    comment(api, elsewhere, ann["id"], "Ann's remark elsewhere")

    r = api.post(f"/v1/subjects/{ann['id']}/anonymize", role=Role.COMPLIANCE)
    assert r.status_code == 200, r.text
    assert r.json()["already_anonymized"] is False
    assert r.json()["key_destroyed"] == f"user:{ann['id']}"

    user = api.get(f"/v1/users/{ann['id']}").json()
    assert (user["name"], user["email"]) == (None, None)
    assert user["anonymized"] is True
    assert user["erased"] is False
    ticket = api.get(f"/v1/tickets/{own}").json()
    assert ticket["subject"] == "Archive me"
    assert ticket["requester_id"] == ann["id"]  # the pseudonym stays
    assert [c["body"] for c in ticket["comments"]] == ["My own follow-up", "Agent answer"]
    other_ticket = api.get(f"/v1/tickets/{elsewhere}").json()
    assert [c["body"] for c in other_ticket["comments"]] == ["Ann's remark elsewhere"]

    # Nothing new from or about the anonymized person...
    r = api.post("/v1/tickets", {"requester_id": ann["id"], "subject": "s", "body": "b"})
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "subject_anonymized"
    # ...but agents can still work the archived ticket.
    assert comment(api, own, agent["id"], "Closing this out").status_code == 201
    again = api.post(f"/v1/subjects/{ann['id']}/anonymize", role=Role.COMPLIANCE)
    assert again.json()["already_anonymized"] is True

    # A later full erasure takes the rest.
    assert api.post(f"/v1/subjects/{ann['id']}/erase", role=Role.COMPLIANCE).status_code == 200
    ticket = api.get(f"/v1/tickets/{own}").json()
    assert ticket["subject"] is None
    assert api.get(f"/v1/tickets/{elsewhere}").json()["comments"][0]["body"] is None


def test_restriction_stops_routine_processing_but_not_compliance(api: Api) -> None:
    rita, agent = api.user(name="Rita Restricted"), api.user(kind="agent")
    tid = api.ticket(rita["id"], subject="Rita's ticket")["id"]
    other = api.ticket(api.user()["id"])["id"]
    comment(api, other, rita["id"], "Rita elsewhere")

    r = api.post(f"/v1/subjects/{rita['id']}/restrict", role=Role.COMPLIANCE)
    assert r.json() == {"subject_id": rita["id"], "restricted": True, "on_legal_hold": False}
    refused = [
        api.patch(f"/v1/users/{rita['id']}", {"name": "New"}),
        api.post("/v1/tickets", {"requester_id": rita["id"], "subject": "s", "body": "b"}),
        comment(api, tid, agent["id"], "hello"),
        comment(api, other, rita["id"], "me again"),
        api.post(f"/v1/tickets/{tid}/status", {"status": "pending"}),
        api.get(f"/v1/users/{rita['id']}"),
        api.get(f"/v1/tickets/{tid}"),
        api.get(f"/v1/tickets/{tid}/comments"),
    ]
    assert [r.status_code for r in refused] == [423] * len(refused)
    assert refused[0].json()["error"]["code"] == "processing_restricted"
    # Lists keep the ticket but not her data; her comment elsewhere is hidden too.
    listed = api.get("/v1/tickets", requester_id=rita["id"]).json()["items"]
    assert [(t["id"], t["subject"]) for t in listed] == [(tid, None)]
    assert api.get(f"/v1/tickets/{other}").json()["comments"][0]["body"] is None
    assert api.get(f"/v1/tickets/{other}/comments").json()["items"][0]["body"] is None
    # Compliance still sees and acts; she can still give or withdraw consent.
    assert (
        api.get(f"/v1/users/{rita['id']}", role=Role.COMPLIANCE).json()["name"] == "Rita Restricted"
    )
    assert api.get(f"/v1/subjects/{rita['id']}/export", role=Role.COMPLIANCE).status_code == 200
    consent = api.post(
        f"/v1/subjects/{rita['id']}/consents",
        {"purpose": "marketing", "policy_version": "v1", "granted": False},
    )
    assert consent.status_code == 201

    api.post(f"/v1/subjects/{rita['id']}/unrestrict", role=Role.COMPLIANCE)
    assert api.get(f"/v1/tickets/{tid}").json()["subject"] == "Rita's ticket"
    assert comment(api, tid, agent["id"], "hello").status_code == 201


def test_consents_keep_their_history(api: Api) -> None:
    person = api.user()
    path = f"/v1/subjects/{person['id']}/consents"
    api.post(path, {"purpose": "marketing", "policy_version": "2026-01", "granted": True})
    api.post(path, {"purpose": "surveys", "policy_version": "2026-01", "granted": True})
    r = api.post(path, {"purpose": "marketing", "policy_version": "2026-06", "granted": False})
    assert r.status_code == 201
    state = api.get(path).json()
    current = {c["purpose"]: (c["policy_version"], c["granted"]) for c in state["current"]}
    assert current == {"marketing": ("2026-06", False), "surveys": ("2026-01", True)}
    assert [(c["purpose"], c["granted"]) for c in state["history"]] == [
        ("marketing", True),
        ("surveys", True),
        ("marketing", False),
    ]
    assert (
        api.post(
            path, {"purpose": "Bad Purpose!", "policy_version": "x", "granted": True}
        ).status_code
        == 422
    )
    assert api.get(f"/v1/subjects/{uuid.uuid4()}/consents").status_code == 404
    assert api.get(path, role=Role.AUDITOR).status_code == 403


def test_legal_hold_blocks_erasure_until_released(api: Api) -> None:
    held = api.user(name="Harold Held")
    tid = api.ticket(held["id"])["id"]
    r = api.post(
        f"/v1/subjects/{held['id']}/hold", {"reason": "Litigation 2026-17"}, role=Role.COMPLIANCE
    )
    assert r.json()["on_legal_hold"] is True
    assert (
        api.post(
            f"/v1/subjects/{held['id']}/hold", {"reason": "again"}, role=Role.COMPLIANCE
        ).status_code
        == 409
    )
    for action in ("erase", "anonymize"):
        r = api.post(f"/v1/subjects/{held['id']}/{action}", role=Role.COMPLIANCE)
        assert r.status_code == 409, action
        assert r.json()["error"]["code"] == "legal_hold"
    assert api.get(f"/v1/tickets/{tid}").json()["subject"] == "Subject"  # nothing destroyed
    blocked = [
        e
        for e in api.runtime.desk.history(uuid.UUID(held["id"]))
        if isinstance(e, User.ErasureBlocked)
    ]
    assert [e.action for e in blocked] == ["erasure", "anonymization"]

    assert (
        api.post(f"/v1/subjects/{held['id']}/hold/release", role=Role.COMPLIANCE).json()[
            "on_legal_hold"
        ]
        is False
    )
    assert (
        api.post(f"/v1/subjects/{held['id']}/hold/release", role=Role.COMPLIANCE).status_code == 409
    )
    assert api.post(f"/v1/subjects/{held['id']}/erase", role=Role.COMPLIANCE).status_code == 200
    export = api.get(f"/v1/subjects/{held['id']}/export", role=Role.COMPLIANCE).json()
    assert len(export["legal_holds"]) == 1
    assert export["legal_holds"][0]["released_at"] is not None
    assert export["legal_holds"][0]["reason"] is None  # erased with the person


def test_the_vault_itself_refuses_to_destroy_a_held_persons_keys(runtime: Runtime) -> None:
    """Even a caller that skips the domain's check cannot shred a held person."""
    from crypto.errors import HeldByLaw

    person = runtime.desk.register_user("customer", "Vera Vault", "vera@example.com")  # type: ignore[arg-type]
    runtime.desk.place_hold(person, "audit")
    with pytest.raises(HeldByLaw):
        runtime.vault.destroy_owned_by(f"user:{person}")
    with pytest.raises(HeldByLaw):
        runtime.vault.destroy_scope(f"user:{person}")


def test_organizations(api: Api) -> None:
    r = api.post("/v1/organizations", {"name": "Acme Support Contract"})
    assert r.status_code == 201
    org = r.json()
    assert org["members"] == 0
    assert org["contract_ended_at"] is None
    member = api.user(organization_id=org["id"])
    assert member["organization_id"] == org["id"]
    other = api.user()
    r = api.patch(f"/v1/users/{other['id']}", {"organization_id": org["id"]})
    assert r.json()["organization_id"] == org["id"]
    assert api.get(f"/v1/organizations/{org['id']}").json()["members"] == 2
    r = api.post(
        f"/v1/organizations/{org['id']}/contract-end",
        {"ended_at": "2026-03-31T00:00:00Z"},
        role=Role.COMPLIANCE,
    )
    assert r.json()["contract_ended_at"].startswith("2026-03-31")
    assert (
        api.post(
            f"/v1/organizations/{org['id']}/contract-end", {}, role=Role.COMPLIANCE
        ).status_code
        == 409
    )
    assert (
        api.post(
            "/v1/users",
            {
                "kind": "customer",
                "name": "X",
                "email": "x@example.com",
                "organization_id": str(uuid.uuid4()),
            },
        ).status_code
        == 404
    )
    assert api.get(f"/v1/organizations/{uuid.uuid4()}").status_code == 404


def test_every_decrypting_response_is_in_the_access_log(api: Api) -> None:
    person = api.user(name="Paula Watched")
    tid = api.ticket(person["id"])["id"]  # the 201 response shows her data: recorded
    api.get(f"/v1/tickets/{tid}")
    agent = api.user(kind="agent")
    api.post(f"/v1/tickets/{tid}/comments", {"author_id": agent["id"], "body": "Seen?"})
    api.get(f"/v1/tickets/{tid}/comments")
    api.get(f"/v1/users/{person['id']}", role=Role.COMPLIANCE)
    api.get(f"/v1/tickets/{tid}/history", role=Role.AUDITOR)
    export = api.get(f"/v1/subjects/{person['id']}/export", role=Role.COMPLIANCE).json()
    seen = [(a["token_name"], a["role"], a["endpoint"]) for a in export["access_log"]]
    assert ("test service", "service", "POST /v1/users") in seen
    assert ("test service", "service", "POST /v1/tickets") in seen
    assert ("test service", "service", "GET /v1/tickets/{ticket_id}") in seen
    # A comment's answer shows her ticket's subject; the comment list shows her ticket's text.
    assert ("test service", "service", "POST /v1/tickets/{ticket_id}/comments") in seen
    assert ("test service", "service", "GET /v1/tickets/{ticket_id}/comments") in seen
    assert ("test compliance", "compliance", "GET /v1/users/{user_id}") in seen
    assert ("test auditor", "auditor", "GET /v1/tickets/{ticket_id}/history") in seen
    assert all(a["at"] for a in export["access_log"])
    # The export itself is recorded too (it shows up in the next one).
    again = api.get(f"/v1/subjects/{person['id']}/export", role=Role.COMPLIANCE).json()
    assert ("test compliance", "compliance", "GET /v1/subjects/{subject_id}/export") in [
        (a["token_name"], a["role"], a["endpoint"]) for a in again["access_log"]
    ]


def test_export_as_a_zip_bundle(api: Api) -> None:
    person = api.user(name="Zelda Zipper", email="zelda@zip.example")
    api.ticket(person["id"], subject="Zip me")
    api.post(
        f"/v1/subjects/{person['id']}/consents",
        {"purpose": "marketing", "policy_version": "v2", "granted": True},
    )
    r = api.client.get(
        f"/v1/subjects/{person['id']}/export",
        headers={**api.headers(Role.COMPLIANCE), "Accept": "application/zip"},
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/zip"
    bundle = zipfile.ZipFile(io.BytesIO(r.content))
    assert sorted(bundle.namelist()) == ["export.json", "export.schema.json", "summary.txt"]
    data = json.loads(bundle.read("export.json"))
    assert data["profile"]["email"] == "zelda@zip.example"
    assert data["tickets_requested"][0]["subject"] == "Zip me"
    assert data["consents"][0]["purpose"] == "marketing"
    schema = json.loads(bundle.read("export.schema.json"))
    assert set(schema["required"]) >= {"profile", "tickets_requested", "consents", "access_log"}
    summary = bundle.read("summary.txt").decode()
    assert "Name: Zelda Zipper" in summary
    assert "Zip me" in summary
    assert "test service (service) via POST /v1/users" in summary


def test_hold_reasons_and_consents_leave_no_plaintext(settings: Settings) -> None:
    runtime = Runtime.open(settings)
    try:
        for api in open_api(runtime)():
            person = api.user(name="Quorra Plaintext-Check")
            api.post(
                f"/v1/subjects/{person['id']}/hold",
                {"reason": "Quorra versus Grimsby Holdings"},
                role=Role.COMPLIANCE,
            )
            api.post("/v1/organizations", {"name": "Organizations are not personal"})
        runtime.runner.catch_up()
    finally:
        runtime.close()
    needles = ["Quorra", "Grimsby"]
    assert raw_hits(settings.data_dir, needles) + postgres_hits(settings, needles) == []


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clocked(settings: Settings) -> Iterator[tuple[Api, Clock]]:
    clock = Clock(datetime(2026, 1, 1, 9, 0, tzinfo=UTC))
    runtime = Runtime.open(settings, clock=clock)
    try:
        for api in open_api(runtime)():
            yield api, clock
    finally:
        runtime.close()


def test_retention_with_an_injected_clock(clocked: tuple[Api, Clock]) -> None:
    api, clock = clocked
    agent = api.user(kind="agent")
    r = api.client.put(
        "/v1/retention/rules",
        headers=api.headers(Role.ADMIN),
        json={
            "rules": [
                {"kind": "shred_closed_ticket_content", "after_days": 30},
                {"kind": "erase_inactive_customers", "after_days": 365},
                {"kind": "erase_after_contract_end", "after_days": 90},
            ]
        },
    )
    assert r.status_code == 200, r.text
    assert (
        api.client.put(
            "/v1/retention/rules", headers=api.headers(Role.COMPLIANCE), json={"rules": []}
        ).status_code
        == 403
    )

    def closed_ticket(requester: object) -> str:
        tid = api.ticket(requester, subject="Old business")["id"]
        api.post(f"/v1/tickets/{tid}/assign", {"assignee_id": agent["id"]})
        api.post(f"/v1/tickets/{tid}/status", {"status": "solved"})
        api.post(f"/v1/tickets/{tid}/status", {"status": "closed"})
        return str(tid)

    loyal = api.user(name="Loyal Customer")
    shred_me = closed_ticket(loyal["id"])
    held = api.user(name="Held Customer")
    held_ticket = closed_ticket(held["id"])
    api.post(f"/v1/subjects/{held['id']}/hold", {"reason": "dispute"}, role=Role.COMPLIANCE)
    busy = api.user(name="Busy Customer")
    api.ticket(busy["id"], subject="Still open")
    org = api.post("/v1/organizations", {"name": "Former Client"}).json()
    leaver = api.user(name="Former Client Person", organization_id=org["id"])
    api.post(f"/v1/organizations/{org['id']}/contract-end", {}, role=Role.COMPLIANCE)

    def run(dry: bool) -> list[dict[str, object]]:
        r = api.post(
            f"/v1/retention/run?dry_run={'true' if dry else 'false'}", role=Role.COMPLIANCE
        )
        assert r.status_code == 200, r.text
        return list(r.json()["actions"])

    clock.now += timedelta(days=29)
    assert run(dry=True) == []

    clock.now += timedelta(days=2)  # 31 days after closing
    planned = run(dry=True)
    assert {(a["action"], a["target_id"], a["blocked_by_legal_hold"]) for a in planned} == {
        ("shred_ticket_content", shred_me, False),
        ("shred_ticket_content", held_ticket, True),
    }
    assert all("closed 2026-01-01, more than 30 days ago" in str(a["reason"]) for a in planned)
    assert api.get(f"/v1/tickets/{shred_me}").json()["subject"] == "Old business"  # dry run

    done = run(dry=False)
    assert {(a["target_id"], a["done"]) for a in done} == {(shred_me, True), (held_ticket, False)}
    assert api.get(f"/v1/tickets/{shred_me}").json()["subject"] is None
    assert api.get(f"/v1/tickets/{held_ticket}").json()["subject"] == "Old business"
    assert api.get(f"/v1/users/{loyal['id']}").json()["name"] == "Loyal Customer"
    history = api.get(f"/v1/tickets/{shred_me}/history", role=Role.AUDITOR).json()["events"]
    assert history[-1]["type"] == "ContentShredded"
    assert history[-1]["data"]["reason"] == "retention:shred_closed_ticket_content"

    clock.now += timedelta(days=70)  # 101 days after the contract ended
    erased = {a["target_id"] for a in run(dry=False) if a["action"] == "erase_person"}
    assert erased == {leaver["id"]}
    assert api.get(f"/v1/users/{leaver['id']}").json()["erased"] is True

    clock.now += timedelta(days=300)  # over a year of silence
    erased = {a["target_id"] for a in run(dry=False) if a["action"] == "erase_person" and a["done"]}
    # The agent is not a customer; the busy customer still has an open ticket; the held
    # customer is blocked.
    assert erased == {loyal["id"]}
    assert api.get(f"/v1/users/{busy['id']}").json()["name"] == "Busy Customer"
    assert api.get(f"/v1/users/{held['id']}").json()["name"] == "Held Customer"


def test_an_erasure_a_vault_reader_holds_up_is_finished_by_repeating_it(tmp_path: Path) -> None:
    """A backup or a second process reading keys.db can keep destroyed keys' old pages on disk
    past the lock timeout: the keys are gone, but the erasure is not reported (nor recorded)
    until a repeat has removed them."""
    runtime = Runtime.open(Settings(data_dir=tmp_path / "data", lock_timeout=1))
    reader = sqlite3.connect(runtime.settings.keys_path, isolation_level=None)
    try:
        for api in open_api(runtime)():
            gone = api.user(name="Gone Person")
            tid = api.ticket(gone["id"], subject="Gone subject")["id"]
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM owner_keys").fetchone()
            r = api.post(f"/v1/subjects/{gone['id']}/erase", role=Role.COMPLIANCE)
            assert r.status_code == 503
            assert r.json()["error"]["code"] == "erasure_unfinished"
            assert r.headers["Retry-After"] == "1"
            assert api.get(f"/v1/tickets/{tid}").json()["subject"] is None  # keys destroyed
            erased = User.SubjectErased
            history = api.runtime.desk.history(uuid.UUID(gone["id"]))
            assert not any(isinstance(e, erased) for e in history)

            reader.execute("COMMIT")
            r = api.post(f"/v1/subjects/{gone['id']}/erase", role=Role.COMPLIANCE)
            assert r.status_code == 200
            history = api.runtime.desk.history(uuid.UUID(gone["id"]))
            assert sum(isinstance(e, erased) for e in history) == 1
    finally:
        reader.close()
        runtime.close()


def test_a_restored_key_vault_does_not_resurrect_anyone(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    runtime = Runtime.open(settings)
    try:
        for api in open_api(runtime)():
            gone = api.user(name="Gone Person")
            tid = api.ticket(gone["id"], subject="Gone subject")["id"]
            stays = api.user(name="Staying Person")
    finally:
        runtime.close()
    backup = tmp_path / "keys-backup.db"
    shutil.copy(settings.keys_path, backup)

    runtime = Runtime.open(settings)
    try:
        runtime.desk.erase_subject(uuid.UUID(str(gone["id"])))
        runtime.runner.catch_up()
    finally:
        runtime.close()
    shutil.copy(backup, settings.keys_path)  # the old vault, with her keys, is back

    runtime = Runtime.open(settings)
    try:
        report = reconcile(runtime)  # what `serve` does on start, and `keys reconcile`
        assert sorted(report.destroyed_again) == sorted([f"user:{gone['id']}", f"ticket:{tid}"])
        for api in open_api(runtime)():
            assert api.get(f"/v1/users/{gone['id']}").json()["name"] is None
            assert api.get(f"/v1/tickets/{tid}").json()["subject"] is None
            assert api.get(f"/v1/users/{stays['id']}").json()["name"] == "Staying Person"
        assert reconcile(runtime).destroyed_again == []
    finally:
        runtime.close()


def test_notifications_respect_restriction_and_marketing_consent(api: Api) -> None:
    from ticketlog.notify.policy import MARKETING, may_notify

    person = api.user()
    pid = str(person["id"])
    runtime = api.runtime
    assert may_notify(runtime, pid)
    assert not may_notify(runtime, pid, MARKETING)  # no consent recorded
    path = f"/v1/subjects/{pid}/consents"
    api.post(path, {"purpose": MARKETING, "policy_version": "v1", "granted": True})
    assert may_notify(runtime, pid, MARKETING)
    api.post(f"/v1/subjects/{pid}/restrict", role=Role.COMPLIANCE)
    assert not may_notify(runtime, pid)
    assert not may_notify(runtime, pid, MARKETING)
    api.post(f"/v1/subjects/{pid}/unrestrict", role=Role.COMPLIANCE)
    api.post(path, {"purpose": MARKETING, "policy_version": "v2", "granted": False})
    assert may_notify(runtime, pid)
    assert not may_notify(runtime, pid, MARKETING)  # withdrawn: objection honoured
    api.post(f"/v1/subjects/{pid}/anonymize", role=Role.COMPLIANCE)
    assert not may_notify(runtime, pid)
