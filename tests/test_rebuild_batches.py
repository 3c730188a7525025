"""Views put work off to the end of each batch; the rows must not depend on where batches end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from domain.ticket import Priority, Status
from domain.user import UserKind
from projections.views import timestamp
from tests.conftest import view_rows
from tests.sla_fixtures import HandClock
from ticketlog.runtime import Runtime
from ticketlog.sla_jobs import record_due_breaches


def all_view_rows(rt: Runtime) -> dict[str, list[str]]:
    return view_rows(rt.views.db, rt.runner.views)


def busy_help_desk(rt: Runtime, clock: HandClock) -> None:
    """Several tickets interleaved: replies, pauses, reopenings, breaches, an erasure."""
    desk = rt.desk
    desk.define_policy(
        "Standard",
        {},
        {"normal": {"first_reply": {"minutes": 30}, "resolution": {"minutes": 240}}},
        None,
    )
    customer = desk.register_user(UserKind.CUSTOMER, "Batch Customer", "batch@example.com")
    leaving = desk.register_user(UserKind.CUSTOMER, "Leaving Soon", "leaving@example.com")
    agent = desk.register_user(UserKind.AGENT, "Batch Agent", "agent@example.com")
    tickets = [desk.open_ticket(customer, f"Issue {n}", "Body") for n in range(4)]
    tickets.append(desk.open_ticket(leaving, "Mine", "Body"))
    for n, ticket in enumerate(tickets):
        clock.advance(10 + n * 9)
        desk.add_comment(ticket, agent, "Looking", public=True)
        desk.assign(ticket, agent)
        desk.add_comment(ticket, agent, "Internal note", public=False)
    desk.change_status(tickets[0], Status.PENDING)
    desk.change_status(tickets[1], Status.SOLVED)
    clock.advance(45)
    desk.add_comment(tickets[0], customer, "Still broken", public=True)  # reopens
    desk.add_comment(tickets[1], customer, "Not fixed", public=True)
    desk.change_priority(tickets[2], Priority.HIGH)
    desk.change_tags(tickets[3], ["printer", "floor-3"])
    clock.advance(600)
    assert record_due_breaches(rt)  # resolution targets are overdue by now
    desk.change_status(tickets[2], Status.SOLVED)
    desk.erase_subject(leaving)


def test_event_by_event_and_rebuilds_in_any_batches_give_identical_rows(
    clocked_runtime: Runtime, clock: HandClock
) -> None:
    rt = clocked_runtime
    busy_help_desk(rt, clock)
    rt.runner.store.reset(rt.runner.views)
    rt.runner.batch_size = 1
    rt.runner.catch_up()
    one_by_one = all_view_rows(rt)
    for table in ("view_sla_breaches", "view_sla_targets", "view_sla_agent_activity"):
        assert one_by_one[table], table  # the scenario reaches every kind of row

    for batch_size in (2000, 4, 7):  # all at once, and batches ending mid-ticket
        rt.runner.rebuild_batch_size = batch_size
        rt.runner.rebuild()
        assert all_view_rows(rt) == one_by_one, batch_size

    rt.runner.store.reset(rt.runner.views)
    rt.runner.batch_size = 500
    rt.runner.catch_up()  # a running server's path: `batch_size` batches, durable commits
    assert all_view_rows(rt) == one_by_one


def index_names(rt: Runtime) -> set[str]:
    sql = (
        "SELECT indexname AS name FROM pg_indexes WHERE schemaname = current_schema()"
        if rt.views.db.postgres
        else "SELECT name FROM sqlite_master WHERE type = 'index'"
    )
    with rt.views.db.transaction(commit=False) as c:
        return {r["name"] for r in c.execute(sql).fetchall()}


def test_a_rebuild_leaves_every_index_in_place_even_when_it_fails(
    clocked_runtime: Runtime, clock: HandClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = clocked_runtime
    busy_help_desk(rt, clock)
    before = index_names(rt)
    assert {"view_tickets_requester", "view_comments_ticket"} <= before
    rt.runner.rebuild()
    assert index_names(rt) == before

    def broken(*_: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(rt.runner.views[0], "flush", broken)
    with pytest.raises(RuntimeError):
        rt.runner.rebuild()
    assert index_names(rt) == before


@pytest.mark.parametrize(
    "when",
    [
        datetime(2026, 11, 30, 22, 5, 7, 123456, tzinfo=UTC),
        datetime(2026, 11, 30, 22, 5, 0, tzinfo=UTC),  # no microseconds: still fixed width
        datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC),  # a year below 1000: padded
        datetime(2026, 1, 1, 1, 30, 59, 999999, tzinfo=timezone(timedelta(hours=2))),
    ],
)
def test_view_times_are_fixed_width_utc_text(when: datetime) -> None:
    expected = when.astimezone(UTC).isoformat(timespec="microseconds")
    assert timestamp(when) == expected
    assert timestamp(when + timedelta(seconds=1, microseconds=1)) == (
        (when + timedelta(seconds=1, microseconds=1))
        .astimezone(UTC)
        .isoformat(timespec="microseconds")
    )
    assert len(expected) == 32
