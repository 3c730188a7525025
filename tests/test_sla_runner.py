"""The runner with the SLA view: a crash mid-batch, rebuilds, and the polling follower."""

from __future__ import annotations

from typing import Any

import pytest

from domain.ticket import Status
from domain.user import UserKind
from projections.views import View
from tests.conftest import view_rows
from tests.sla_fixtures import HandClock
from ticketlog.background import ViewFollower
from ticketlog.runtime import Runtime


def sla_view(rt: Runtime) -> View:
    [view] = [v for v in rt.runner.views if v.name == "sla"]
    return view


def sla_rows(rt: Runtime) -> dict[str, list[str]]:
    return view_rows(rt.views.db, [sla_view(rt)])


def seed(rt: Runtime, clock: HandClock, tickets: int) -> None:
    desk = rt.desk
    desk.define_policy(
        "Standard",
        {},
        {"normal": {"first_reply": {"minutes": 30}, "resolution": {"minutes": 240}}},
        None,
    )
    customer = desk.register_user(UserKind.CUSTOMER, "Crash Test", "crash@example.com")
    agent = desk.register_user(UserKind.AGENT, "Agent Crash", "agent@example.com")
    for n in range(tickets):
        ticket = desk.open_ticket(customer, "Subject", "Body")
        clock.advance(n * 7)
        desk.add_comment(ticket, agent, "Reply", public=True)
        desk.assign(ticket, agent)
        desk.change_status(ticket, Status.PENDING if n % 2 else Status.SOLVED)


def test_a_crash_mid_batch_in_the_sla_view_applies_nothing_twice(
    clocked_runtime: Runtime, clock: HandClock
) -> None:
    rt = clocked_runtime
    seed(rt, clock, tickets=6)
    rt.runner.catch_up()
    expected = sla_rows(rt)
    rt.runner.rebuild()
    assert sla_rows(rt) == expected  # a rebuild yields identical rows

    rt.runner.store.reset([sla_view(rt)])
    rt.runner.batch_size = 7  # several batches, so the crash lands in the middle of the log
    view = sla_view(rt)
    original = view.apply
    calls = 0

    def crashing(c: Any, event: Any) -> None:
        nonlocal calls
        calls += 1
        original(c, event)
        if calls == 17:
            raise RuntimeError("power cut")

    view.apply = crashing  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        rt.runner.catch_up()
    position = rt.runner.store.position(view)
    assert position == 14  # two whole batches committed, the third rolled back
    view.apply = original  # type: ignore[method-assign]
    rt.runner.catch_up()
    assert sla_rows(rt) == expected


def test_the_poll_fallback_alone_keeps_views_current(clocked_runtime: Runtime) -> None:
    """With no LISTEN at all (as after a lost NOTIFY), polling still catches up."""
    rt = clocked_runtime
    follower = ViewFollower(rt.runner, rt.desk.recorder, poll_interval=0.01, listen=False)
    follower.start()
    try:
        rt.desk.register_user(UserKind.CUSTOMER, "Poll Person", "poll@example.com")
        while any(s.lag for s in rt.runner.status()):
            assert follower.loop.wait_for_pass(follower.loop.passes, timeout=30)
        assert follower.details()["mode"] == "poll"
    finally:
        follower.stop()
