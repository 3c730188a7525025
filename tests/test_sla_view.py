"""The SLA view and GET /v1/tickets/{id}/sla, driven by a hand-moved clock over HTTP."""

from __future__ import annotations

from typing import Any

from api.tokens import Role
from tests.conftest import Api, postgres_hits, raw_hits
from tests.sla_fixtures import HandClock, standard_policy, targets
from ticketlog.runtime import Runtime


def view_rows(runtime: Runtime) -> dict[str, list[Any]]:
    out = {}
    with runtime.views.db.transaction(commit=False) as c:
        for table in ("view_sla_tickets", "view_sla_targets", "view_sla_agent_activity"):
            rows = c.execute(f"SELECT * FROM {table}").fetchall()
            out[table] = sorted(tuple(dict(r).items()) for r in rows)
    return out


def test_targets_follow_replies_pauses_and_reopens(sla_api: Api, clock: HandClock) -> None:
    api = sla_api
    policy = standard_policy(api)
    customer, agent = api.user(), api.user(kind="agent")
    ticket = api.ticket(customer["id"], subject="Printer on fire", body="Smoke everywhere")
    tid = ticket["id"]

    start = targets(api, tid)
    assert set(start) == {("first_reply", 1), ("resolution", 1)}
    assert start[("first_reply", 1)]["status"] == "active"
    assert start[("first_reply", 1)]["due_at"] == "2026-11-17T09:00:00Z"
    assert start[("resolution", 1)]["due_at"] == "2026-11-17T16:00:00Z"  # 17:00 Berlin
    assert start[("resolution", 1)]["policy_id"] == policy["id"]

    clock.advance(30)
    api.post(f"/v1/tickets/{tid}/comments", {"author_id": agent["id"], "body": "On it"})
    api.post(f"/v1/tickets/{tid}/assign", {"assignee_id": agent["id"]})
    clock.advance(30)
    api.post(f"/v1/tickets/{tid}/status", {"status": "pending"})
    clock.advance(120)
    now = targets(api, tid)
    reply = now[("first_reply", 1)]
    assert (reply["status"], reply["breached"], reply["elapsed_calendar_minutes"]) == (
        "fulfilled",
        False,
        30,
    )
    resolution = now[("resolution", 1)]
    assert (resolution["status"], resolution["due_at"]) == ("paused", None)
    assert resolution["elapsed_business_minutes"] == 60

    r = api.post(f"/v1/tickets/{tid}/comments", {"author_id": customer["id"], "body": "Still?"})
    assert r.json()["ticket"]["status"] == "open"  # the requester's reply reopened it
    clock.advance(45)
    now = targets(api, tid)
    next_reply = now[("next_reply", 1)]
    assert (next_reply["status"], next_reply["breached"]) == ("breached", True)
    assert next_reply["due_at"] == "2026-11-17T11:30:00Z"
    assert now[("resolution", 1)]["status"] == "active"
    assert now[("resolution", 1)]["elapsed_business_minutes"] == 105
    # 60 business minutes before the pause, 420 left from 11:00 UTC (12:00 Berlin): 5 hours
    # today until 17:00 Berlin, then 2 hours from 09:00 Berlin tomorrow.
    assert now[("resolution", 1)]["due_at"] == "2026-11-18T10:00:00Z"


def test_configured_then_and_now_side_by_side(sla_api: Api, clock: HandClock) -> None:
    api = sla_api
    policy = standard_policy(api)
    ticket = api.ticket(api.user()["id"])
    changed = {
        "name": "Standard",
        "targets": {"normal": {"first_reply": {"minutes": 10}}},
        "schedule_id": policy["schedule_id"],
    }
    assert api.put(f"/v1/sla/policies/{policy['id']}", changed, role=Role.ADMIN).status_code == 200
    clock.advance(20)
    then = targets(api, ticket["id"])
    now = targets(api, ticket["id"], configured="now")
    assert then[("first_reply", 1)]["status"] == "active"
    assert then[("first_reply", 1)]["policy_version"] == 1
    assert now[("first_reply", 1)]["status"] == "breached"
    assert now[("first_reply", 1)]["policy_version"] == 2
    assert ("resolution", 1) not in now  # today's version has no resolution target
    r = api.get(f"/v1/tickets/{ticket['id']}/sla", configured="sometime")
    assert r.status_code == 422


def test_rebuild_gives_identical_sla_rows_and_erasure_changes_none(
    sla_api: Api, clock: HandClock, clocked_runtime: Runtime
) -> None:
    api = sla_api
    standard_policy(api)
    customer, agent = api.user(name="Wilhelmina Slaperson"), api.user(kind="agent")
    for n in range(3):
        t = api.ticket(customer["id"], subject=f"Secret subject {n}", body="Secret body text")
        clock.advance(20 * n)
        api.post(f"/v1/tickets/{t['id']}/comments", {"author_id": agent["id"], "body": "Hi"})
        api.post(f"/v1/tickets/{t['id']}/assign", {"assignee_id": agent["id"]})
        api.post(f"/v1/tickets/{t['id']}/status", {"status": "solved"})
    before = view_rows(clocked_runtime)
    assert len(before["view_sla_targets"]) == 6
    clocked_runtime.runner.rebuild()
    assert view_rows(clocked_runtime) == before

    needles = ["Wilhelmina", "Slaperson", "Secret subject", "Secret body text"]
    settings = clocked_runtime.settings
    assert [h for h in raw_hits(settings.data_dir, needles) if h[0].startswith("views")] == []
    assert [h for h in postgres_hits(settings, needles) if "sla" in h[0]] == []
    r = api.post(f"/v1/subjects/{customer['id']}/erase", role=Role.COMPLIANCE)
    assert r.status_code == 200, r.text
    clocked_runtime.runner.catch_up()
    after = view_rows(clocked_runtime)
    assert after["view_sla_targets"] == before["view_sla_targets"]


def test_unknown_ticket_sla_is_404(sla_api: Api) -> None:
    assert sla_api.get("/v1/tickets/00000000-0000-0000-0000-000000000001/sla").status_code == 404
    assert sla_api.get("/v1/tickets/nope/sla").status_code == 404
