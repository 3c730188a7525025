"""Breaches by the passing of time: `SlaBreached` events from the tick, the CLI and `serve`."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import psycopg

from api.tokens import Role
from tests.conftest import Api
from tests.sla_fixtures import HandClock, standard_policy, targets
from tests.test_cli import run_cli
from ticketlog.background import Loop, ViewFollower
from ticketlog.config import Settings
from ticketlog.runtime import Runtime
from ticketlog.sla_jobs import record_due_breaches


def wait_for_listen(settings: Settings, since: datetime) -> None:
    """Until the follower's LISTEN is registered, so the NOTIFY under test cannot be missed."""
    pg = settings.postgres
    assert pg is not None
    with psycopg.connect(pg.conninfo(), autocommit=True) as conn:
        for _ in range(3000):
            row = conn.execute(
                "SELECT 1 FROM pg_stat_activity WHERE query ILIKE 'LISTEN%%' AND query_start >= %s",
                [since],
            ).fetchone()
            if row is not None:
                return
            time.sleep(0.01)
    raise AssertionError("the follower never started listening")


def breach_events(api: Api, ticket_id: object) -> list[dict[str, Any]]:
    r = api.get(f"/v1/tickets/{ticket_id}/history", role=Role.AUDITOR)
    return [e for e in r.json()["events"] if e["type"] == "SlaBreached"]


def test_a_passing_due_time_appends_one_pii_free_breach_event(
    sla_api: Api, clock: HandClock, clocked_runtime: Runtime
) -> None:
    api = sla_api
    standard_policy(api)
    customer, agent = api.user(), api.user(kind="agent")
    ticket = api.ticket(customer["id"], subject="Where is my parcel")
    clock.advance(59)
    assert record_due_breaches(clocked_runtime) == []
    clock.advance(2)
    [breach] = record_due_breaches(clocked_runtime)
    assert (breach.ticket_id, breach.metric, breach.instance) == (ticket["id"], "first_reply", 1)
    assert record_due_breaches(clocked_runtime) == []  # once only

    [event] = breach_events(api, ticket["id"])
    assert event["data"]["metric"] == "first_reply"
    assert event["data"]["due_at"].startswith("2026-11-17T09:00:00")
    assert event["erased_fields"] == []
    assert "parcel" not in json.dumps(event)
    assert targets(api, ticket["id"])[("first_reply", 1)]["breach_recorded"] is True

    # A target fulfilled late, with no tick in between, is recorded as breached too.
    api.post(f"/v1/tickets/{ticket['id']}/comments", {"author_id": agent["id"], "body": "Hi"})
    customer_reply = {"author_id": customer["id"], "body": "Thanks, but?"}
    api.post(f"/v1/tickets/{ticket['id']}/comments", customer_reply)
    clock.advance(45)
    api.post(f"/v1/tickets/{ticket['id']}/comments", {"author_id": agent["id"], "body": "Sorry"})
    late = targets(api, ticket["id"])[("next_reply", 1)]
    assert (late["status"], late["breached"], late["breach_recorded"]) == (
        "fulfilled",
        True,
        False,
    )
    [recorded] = record_due_breaches(clocked_runtime)
    assert (recorded.metric, recorded.instance) == ("next_reply", 1)
    assert [e["data"]["metric"] for e in breach_events(api, ticket["id"])] == [
        "first_reply",
        "next_reply",
    ]


def test_paused_targets_do_not_breach(
    sla_api: Api, clock: HandClock, clocked_runtime: Runtime
) -> None:
    api = sla_api
    standard_policy(api)
    agent = api.user(kind="agent")
    ticket = api.ticket(api.user()["id"])
    api.post(f"/v1/tickets/{ticket['id']}/comments", {"author_id": agent["id"], "body": "Hi"})
    api.post(f"/v1/tickets/{ticket['id']}/status", {"status": "on_hold"})
    clock.advance(60 * 24 * 7)
    assert record_due_breaches(clocked_runtime) == []


def test_sla_tick_command_records_overdue_targets(settings: Settings, clock: HandClock) -> None:
    if settings.postgres is not None:
        return  # the command is backend-agnostic; one real subprocess run is enough
    rt = Runtime.open(settings, clock=clock)  # the hand clock is days behind the real one
    try:
        rt.desk.define_policy(
            "Fast", {}, {"normal": {"first_reply": {"minutes": 5}}}, schedule_id=None
        )
        customer = rt.desk.register_user("customer", "Tick Tester", "tick@example.com")
        ticket = rt.desk.open_ticket(customer, "Subject", "Body")
    finally:
        rt.close()
    first = run_cli(settings.data_dir, "sla", "tick", "--json")
    assert first.returncode == 0, first.stderr
    [row] = json.loads(first.stdout)["breaches_recorded"]
    assert (row["ticket_id"], row["metric"]) == (str(ticket), "first_reply")
    again = run_cli(settings.data_dir, "sla", "tick")
    assert again.returncode == 0, again.stderr
    assert "recorded 0 breaches" in again.stdout


def test_the_breach_scheduler_and_view_follower_run_in_the_background(
    clocked_runtime: Runtime, clock: HandClock
) -> None:
    rt = clocked_runtime
    rt.desk.define_policy("Fast", {}, {"normal": {"first_reply": {"minutes": 5}}}, None)
    customer = rt.desk.register_user("customer", "Follow Me", "follow@example.com")
    # Poll only once an hour: on PostgreSQL the NOTIFY wakes the follower, on SQLite the
    # explicit wake() stands in for the poll.
    follower = ViewFollower(rt.runner, rt.desk.recorder, poll_interval=3600)
    scheduler = Loop("sla-breaches", lambda: record_due_breaches(rt), interval=3600)
    started = datetime.now(UTC)
    follower.start()
    try:
        assert follower.loop.wait_for_pass(0, timeout=30)
        if follower.listen:
            wait_for_listen(rt.settings, started)
        passes = follower.loop.passes
        ticket = rt.desk.open_ticket(customer, "Subject", "Body")
        if not follower.listen:
            follower.loop.wake()
        assert follower.loop.wait_for_pass(passes, timeout=30)
        while any(s.lag for s in rt.runner.status()):  # a NOTIFY may land between passes
            assert follower.loop.wait_for_pass(follower.loop.passes, timeout=30)
        assert follower.listen is (rt.settings.postgres is not None)

        clock.advance(6)
        scheduler.start()
        assert scheduler.wait_for_pass(0, timeout=30)
        events = rt.desk.ticket_history(ticket)
        assert [type(e).__name__ for e in events][-1] == "SlaBreached"
    finally:
        scheduler.stop()
        follower.stop()
