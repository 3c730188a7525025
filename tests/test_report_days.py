"""SLA reports keep whole days' tallies: reused while the day stands, counted again when the
view rewrites it or the clock turns an active target into a breached one."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from domain.ticket import Status
from domain.user import UserKind
from projections.report_days import DayTallies
from projections.reports import Reports
from projections.tally import Tallies, Tally, count_targets, total
from tests.sla_fixtures import T0, HandClock
from ticketlog.runtime import Runtime

DAY = timedelta(days=1)
MIDNIGHT = T0.replace(hour=0, minute=0)
WEEK = (MIDNIGHT, MIDNIGHT + 7 * DAY)  # whole days only


class Desk:
    """Tickets opened and answered at the hand clock's times."""

    def __init__(self, rt: Runtime, clock: HandClock) -> None:
        self.rt, self.clock = rt, clock
        rt.desk.define_policy(
            "Standard",
            {},
            {"normal": {"first_reply": {"minutes": 30}, "resolution": {"minutes": 240}}},
            None,
        )
        self.customer = rt.desk.register_user(UserKind.CUSTOMER, "Day Person", "day@example.com")
        self.agent = rt.desk.register_user(UserKind.AGENT, "Agent Day", "agent@example.com")

    def open_at(self, at: datetime) -> UUID:
        self.clock.now = at
        return self.rt.desk.open_ticket(self.customer, "Subject", "Body")

    def reply_at(self, ticket: UUID, at: datetime) -> None:
        self.clock.now = at
        self.rt.desk.add_comment(ticket, self.agent, "Reply", public=True)

    def solve_at(self, ticket: UUID, at: datetime) -> None:
        self.clock.now = at
        self.rt.desk.assign(ticket, self.agent)
        self.rt.desk.change_status(ticket, Status.SOLVED)


def a_week_of_tickets(desk: Desk) -> list[UUID]:
    """Two tickets a day for a week, at 03:00 and 21:00; most answered and solved."""
    tickets = []
    for n in range(14):
        opened = MIDNIGHT + n // 2 * DAY + timedelta(hours=3 if n % 2 else 21)
        ticket = desk.open_at(opened)
        if n % 3:
            desk.reply_at(ticket, opened + timedelta(minutes=10 + 5 * n))
        if n % 4 == 0:
            desk.solve_at(ticket, opened + timedelta(minutes=200))
        tickets.append(ticket)
    desk.rt.runner.catch_up()
    return tickets


def one_query(rt: Runtime, start: datetime, end: datetime, now: datetime) -> Tallies:
    """The same tallies from one range query, keeping nothing."""
    with rt.views.db.transaction(commit=False) as c:
        return count_targets(c, start, end, now, "policy")


def summaries(tallies: Tallies) -> dict[Any, dict[str, Any]]:
    return {key: t.summary(key[1]) for key, t in tallies.items()}


def kept_tallies(
    rt: Runtime, days: DayTallies, start: datetime, end: datetime, now: datetime
) -> Tallies:
    with rt.views.db.transaction(commit=False) as c:
        return total(t for _, t in days.by_day(c, start, end, now, "policy"))


@pytest.fixture
def desk(clocked_runtime: Runtime, clock: HandClock) -> Desk:
    return Desk(clocked_runtime, clock)


def test_a_second_report_counts_no_day_again(desk: Desk) -> None:
    a_week_of_tickets(desk)
    now = desk.clock.now + DAY
    reports = Reports(desk.rt.views.db, DayTallies())
    first = reports.sla(*WEEK, "policy", now)
    assert (reports.days.counted, reports.days.reused) == (7, 0)
    assert reports.sla(*WEEK, "policy", now) == first
    assert (reports.days.counted, reports.days.reused) == (7, 7)
    assert first == Reports(desk.rt.views.db).sla(*WEEK, "policy", now)


def test_a_reply_to_an_old_ticket_recounts_only_the_days_it_touches(desk: Desk) -> None:
    tickets = a_week_of_tickets(desk)
    days = DayTallies()
    now = MIDNIGHT + 8 * DAY
    before = kept_tallies(desk.rt, days, *WEEK, now)
    unanswered = tickets[3]  # opened on day 2 at 03:00, never answered nor solved
    desk.reply_at(unanswered, MIDNIGHT + 5 * DAY + timedelta(hours=12))
    desk.rt.runner.catch_up()
    counted = days.counted
    after = kept_tallies(desk.rt, days, *WEEK, now)
    assert days.counted - counted == 2  # day 2 (the ticket's start) and day 6 (the reply)
    assert summaries(after) == summaries(one_query(desk.rt, *WEEK, now))
    [first_reply] = [key for key in after if key[1] == "first_reply"]
    assert len(after[first_reply].calendar_s) == len(before[first_reply].calendar_s) + 1


def test_a_kept_day_follows_the_clock_past_a_due_time(desk: Desk) -> None:
    opened = MIDNIGHT + timedelta(hours=8)
    desk.open_at(opened)
    desk.rt.runner.catch_up()
    day = (MIDNIGHT, MIDNIGHT + DAY)
    days = DayTallies()

    def first_reply_at(now: datetime) -> Tally:
        tallies = kept_tallies(desk.rt, days, *day, now)
        [key] = [key for key in tallies if key[1] == "first_reply"]
        return tallies[key]

    waiting = first_reply_at(opened + timedelta(minutes=10))
    assert waiting.counts == [0, 0, 1]  # active
    assert first_reply_at(opened + timedelta(minutes=30)).counts == [0, 0, 1]  # due, not late
    counted = days.counted
    late = first_reply_at(opened + timedelta(minutes=31))
    assert late.counts == [0, 1, 0]  # breached without any new event
    assert days.counted == counted + 1
    assert first_reply_at(opened + timedelta(hours=3)).counts == [0, 1, 0]
    assert days.counted == counted + 1  # nothing falls due before 4 hours: kept
    first_reply_at(opened + timedelta(hours=5))
    assert days.counted == counted + 2  # the resolution target fell due


@pytest.mark.parametrize("hours", [(5, 70), (0, 49), (13, 24), (2, 7)])
def test_part_days_at_the_edges_count_like_one_query(desk: Desk, hours: tuple[int, int]) -> None:
    a_week_of_tickets(desk)
    start = MIDNIGHT + timedelta(hours=hours[0])
    end = MIDNIGHT + timedelta(hours=hours[1])
    now = MIDNIGHT + 2 * DAY + timedelta(hours=4)  # some targets still active, some late
    days = DayTallies()
    for _ in range(2):
        kept = kept_tallies(desk.rt, days, start, end, now)
        assert summaries(kept) == summaries(one_query(desk.rt, start, end, now))
    assert sum(t.counts[0] + t.counts[1] + t.counts[2] for t in kept.values()) > 0


def test_a_rebuild_of_the_views_forgets_the_kept_days(desk: Desk) -> None:
    a_week_of_tickets(desk)
    days = DayTallies()
    now = MIDNIGHT + 8 * DAY
    before = summaries(kept_tallies(desk.rt, days, *WEEK, now))
    desk.rt.runner.rebuild()
    assert summaries(kept_tallies(desk.rt, days, *WEEK, now)) == before
    assert (days.counted, days.reused) == (14, 0)  # the same marks, but counted again


def test_the_least_recently_used_day_goes_first(desk: Desk) -> None:
    a_week_of_tickets(desk)
    days = DayTallies(max_times=1)  # room for one day (each of these holds a few times)
    now = MIDNIGHT + 8 * DAY

    def report(first: int, last: int) -> tuple[int, int]:
        """Counted and reused days for a report over days first..last (1-based, inclusive)."""
        counted, reused = days.counted, days.reused
        kept_tallies(desk.rt, days, MIDNIGHT + (first - 1) * DAY, MIDNIGHT + last * DAY, now)
        return days.counted - counted, days.reused - reused

    assert report(1, 1) == (1, 0)
    assert report(1, 1) == (0, 1)
    assert report(2, 2) == (1, 0)  # day 1 goes
    assert report(2, 2) == (0, 1)
    assert report(1, 2) == (2, 0)  # day 1 comes back, pushing day 2 out, which comes back
    assert report(2, 2) == (0, 1)


def test_the_weekly_chart_reads_the_days_the_report_kept(desk: Desk) -> None:
    a_week_of_tickets(desk)
    now = MIDNIGHT + 8 * DAY
    reports = Reports(desk.rt.views.db, DayTallies())
    reports.sla(*WEEK, "policy", now)
    counted = reports.days.counted
    weeks, series = reports.weekly_achievement(MIDNIGHT + timedelta(hours=2), WEEK[1], now)
    assert reports.days.counted == counted  # six whole days kept; the first is a part-day
    assert (weeks, series) == Reports(desk.rt.views.db).weekly_achievement(
        MIDNIGHT + timedelta(hours=2), WEEK[1], now
    )
    assert weeks == ["2026-11-16", "2026-11-23"]  # Tuesday 17th to Monday 23rd
    assert series["Standard"][0] is not None
