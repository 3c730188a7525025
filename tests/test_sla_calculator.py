"""The SLA calculator on hand-computed cases: business hours, holidays, DST, pauses, policies."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from domain.sla.metrics import (
    AgentReplied,
    Fact,
    Metric,
    Opened,
    PolicySet,
    PolicyTerms,
    PrioritySet,
    RequesterCommented,
    StatusSet,
    Target,
    TargetResult,
    TargetStatus,
    evaluate,
)
from domain.sla.schedule import Schedule, ScheduleError

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
NINE_TO_FIVE = {d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}
ALL_DAY = {d: [["00:00", "24:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


def berlin_office(holidays: tuple[str, ...] = ()) -> Schedule:
    return Schedule.from_definition(
        {"timezone": "Europe/Berlin", "hours": NINE_TO_FIVE, "holidays": list(holidays)}
    )


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def local(zone: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=zone)  # type: ignore[misc]


# Schedules


def test_business_minutes_skip_the_weekend() -> None:
    office = berlin_office()
    friday_4pm = local(BERLIN, 2026, 11, 20, 16, 0)
    monday_10am = local(BERLIN, 2026, 11, 23, 10, 0)
    assert office.business_seconds(friday_4pm, monday_10am) / 60 == 120
    assert office.add_business_seconds(friday_4pm, 120 * 60) == monday_10am
    # Starting outside hours counts from the next opening.
    saturday = local(BERLIN, 2026, 11, 21, 12, 0)
    assert office.add_business_seconds(saturday, 30 * 60) == local(BERLIN, 2026, 11, 23, 9, 30)
    assert office.business_seconds(saturday, monday_10am) / 60 == 60


def test_holidays_are_not_working_days() -> None:
    office = berlin_office(holidays=("2026-12-25",))  # a Friday
    thursday = local(BERLIN, 2026, 12, 24, 16, 30)
    due = office.add_business_seconds(thursday, 90 * 60)
    assert due == local(BERLIN, 2026, 12, 28, 10, 0)  # 30 on Thursday, 60 on Monday
    assert office.business_seconds(thursday, due) / 60 == 90


def test_a_24_hour_day_in_berlin_lasts_23_hours_in_spring_and_25_in_autumn() -> None:
    always = Schedule.from_definition({"timezone": "Europe/Berlin", "hours": ALL_DAY})
    spring = always.business_seconds(
        local(BERLIN, 2026, 3, 29, 0, 0), local(BERLIN, 2026, 3, 30, 0, 0)
    )
    autumn = always.business_seconds(
        local(BERLIN, 2026, 10, 25, 0, 0), local(BERLIN, 2026, 10, 26, 0, 0)
    )
    assert (spring / 3600, autumn / 3600) == (23, 25)
    night = Schedule.from_definition(
        {"timezone": "Europe/Berlin", "hours": {"sun": [["00:00", "04:00"]]}}
    )
    march_sunday = local(BERLIN, 2026, 3, 29, 0, 0)
    assert night.business_seconds(march_sunday, march_sunday + timedelta(days=1)) / 60 == 180
    october_sunday = local(BERLIN, 2026, 10, 25, 0, 0)
    assert night.business_seconds(october_sunday, october_sunday + timedelta(days=1)) / 60 == 300


def test_adding_business_minutes_across_the_new_york_spring_forward() -> None:
    office = Schedule.from_definition({"timezone": "America/New_York", "hours": NINE_TO_FIVE})
    friday = local(NEW_YORK, 2026, 3, 6, 16, 0)  # 21:00 UTC, EST
    due = office.add_business_seconds(friday, 120 * 60)
    assert due == local(NEW_YORK, 2026, 3, 9, 10, 0)
    assert due.astimezone(UTC) == utc(2026, 3, 9, 14, 0)  # EDT: 10:00 local is 14:00 UTC
    assert (due - friday) == timedelta(hours=65)  # a weekend one hour short


def test_spans_of_many_years_are_counted_not_refused() -> None:
    """An imported ticket left open for years must not stop the view that measures it."""
    office = berlin_office()
    start = local(BERLIN, 2019, 1, 7, 9, 0)  # a Monday
    end = local(BERLIN, 2026, 1, 5, 9, 0)  # a Monday: 2555 days (two leap days) = 365 weeks
    assert office.business_seconds(start, end) / 3600 == 365 * 5 * 8


@pytest.mark.parametrize(
    "definition",
    [
        {"timezone": "Mars/Olympus", "hours": NINE_TO_FIVE},
        {"timezone": "UTC", "hours": {}},
        {"timezone": "UTC", "hours": {"mon": [["17:00", "09:00"]]}},
        {"timezone": "UTC", "hours": {"mon": [["09:00", "12:00"], ["11:00", "13:00"]]}},
        {"timezone": "UTC", "hours": {"funday": [["09:00", "12:00"]]}},
        {"timezone": "UTC", "hours": {"mon": [["9am", "5pm"]]}},
    ],
)
def test_unworkable_schedules_are_refused(definition: dict[str, object]) -> None:
    with pytest.raises(ScheduleError):
        Schedule.from_definition(definition)


def test_schedule_definition_round_trips() -> None:
    office = berlin_office(holidays=("2026-12-25", "2026-12-24"))
    assert Schedule.from_definition(office.definition()) == office
    assert office.holidays == frozenset({date(2026, 12, 24), date(2026, 12, 25)})


# Metrics

T0 = utc(2026, 11, 17, 8, 0)  # a Tuesday


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def terms(
    policy_id: str = "A",
    version: int = 1,
    schedule: Schedule | None = None,
    business: bool = False,
    **by_priority: dict[Metric, int],
) -> PolicyTerms:
    targets = by_priority or {
        "normal": {Metric.FIRST_REPLY: 60, Metric.NEXT_REPLY: 30, Metric.RESOLUTION: 480}
    }
    return PolicyTerms(
        policy_id,
        version,
        f"policy {policy_id}",
        {p: {m: Target(n, business) for m, n in by.items()} for p, by in targets.items()},
        schedule,
    )


def opened(policy: PolicyTerms | None = None, at: datetime = T0) -> list[Fact]:
    return [Opened(at, "normal"), PolicySet(at, policy or terms())]


def one(results: list[TargetResult], metric: Metric, instance: int = 1) -> TargetResult:
    [found] = [r for r in results if r.metric is metric and r.instance == instance]
    return found


def test_first_reply_in_time_late_and_overdue() -> None:
    in_time = one(
        evaluate([*opened(), AgentReplied(T0 + minutes(30))], T0 + minutes(90)), Metric.FIRST_REPLY
    )
    assert (in_time.status, in_time.breached) == (TargetStatus.FULFILLED, False)
    assert in_time.due_at == T0 + minutes(60)
    assert in_time.elapsed_calendar_minutes == 30

    late = one(
        evaluate([*opened(), AgentReplied(T0 + minutes(90))], T0 + minutes(90)), Metric.FIRST_REPLY
    )
    assert (late.status, late.breached) == (TargetStatus.FULFILLED, True)  # fulfilled and breached

    waiting = evaluate(opened(), T0 + minutes(59))
    assert one(waiting, Metric.FIRST_REPLY).status is TargetStatus.ACTIVE
    overdue = one(evaluate(opened(), T0 + minutes(61)), Metric.FIRST_REPLY)
    assert (overdue.status, overdue.breached) == (TargetStatus.BREACHED, True)
    assert overdue.elapsed_calendar_minutes == 61


def test_first_reply_in_business_hours_waits_for_monday() -> None:
    office = berlin_office()
    policy = terms(schedule=office, business=True)
    friday = local(BERLIN, 2026, 11, 20, 16, 30).astimezone(UTC)
    reply = local(BERLIN, 2026, 11, 23, 9, 20).astimezone(UTC)
    result = one(
        evaluate([*opened(policy, friday), AgentReplied(reply)], reply), Metric.FIRST_REPLY
    )
    assert result.due_at == local(BERLIN, 2026, 11, 23, 9, 30)
    assert (result.status, result.breached) == (TargetStatus.FULFILLED, False)
    assert result.elapsed_business_minutes == 50
    assert result.elapsed_calendar_minutes == (reply - friday).total_seconds() / 60


def test_resolution_pauses_while_pending_and_on_hold() -> None:
    timeline = [
        *opened(),
        StatusSet(T0 + minutes(120), "pending"),  # 2 h running
        StatusSet(T0 + minutes(360), "open"),  # 4 h paused
        StatusSet(T0 + minutes(420), "on_hold"),  # 1 h running
        StatusSet(T0 + minutes(480), "open"),  # 1 h paused
    ]
    paused = one(evaluate(timeline[:3], T0 + minutes(300)), Metric.RESOLUTION)
    assert (paused.status, paused.due_at) == (TargetStatus.PAUSED, None)
    assert paused.elapsed_calendar_minutes == 120

    running = one(evaluate(timeline, T0 + minutes(540)), Metric.RESOLUTION)
    assert running.status is TargetStatus.ACTIVE
    assert running.elapsed_calendar_minutes == 120 + 60 + 60
    assert running.due_at == T0 + minutes(480 + 300)  # 3 h used by 08:00+8h, 5 h left

    solved = one(
        evaluate([*timeline, StatusSet(T0 + minutes(700), "solved")], T0 + minutes(900)),
        Metric.RESOLUTION,
    )
    assert (solved.status, solved.breached) == (TargetStatus.FULFILLED, False)
    assert solved.elapsed_calendar_minutes == 120 + 60 + 220
    assert solved.fulfilled_at == T0 + minutes(700)


def test_a_reopen_resumes_resolution_and_the_next_solve_fulfils_it() -> None:
    timeline = [*opened(), StatusSet(T0 + minutes(240), "solved")]
    first = one(evaluate(timeline, T0 + minutes(300)), Metric.RESOLUTION)
    assert (first.status, first.elapsed_calendar_minutes) == (TargetStatus.FULFILLED, 240)

    timeline += [RequesterCommented(T0 + minutes(420)), StatusSet(T0 + minutes(420), "open")]
    reopened = one(evaluate(timeline, T0 + minutes(480)), Metric.RESOLUTION)
    assert reopened.status is TargetStatus.ACTIVE
    assert reopened.elapsed_calendar_minutes == 240 + 60  # the solved spell did not count
    assert reopened.due_at == T0 + minutes(420 + 240)
    assert reopened.fulfilled_at is None

    timeline.append(StatusSet(T0 + minutes(700), "solved"))
    late = one(evaluate(timeline, T0 + minutes(700)), Metric.RESOLUTION)
    assert (late.status, late.breached) == (TargetStatus.FULFILLED, True)
    assert late.elapsed_calendar_minutes == 240 + 280


def test_a_breached_target_stays_breached_when_paused() -> None:
    timeline = [*opened(), StatusSet(T0 + minutes(500), "pending")]
    result = one(evaluate(timeline, T0 + minutes(600)), Metric.RESOLUTION)
    assert (result.status, result.breached, result.due_at) == (
        TargetStatus.BREACHED,
        True,
        T0 + minutes(480),
    )


def test_next_reply_runs_from_the_oldest_unanswered_requester_comment() -> None:
    timeline = [
        *opened(),
        RequesterCommented(T0 + minutes(5)),  # before the first reply: first_reply covers it
        AgentReplied(T0 + minutes(20)),
        RequesterCommented(T0 + minutes(100)),
        RequesterCommented(T0 + minutes(110)),
        AgentReplied(T0 + minutes(145)),
        AgentReplied(T0 + minutes(150)),  # nothing to answer: starts and stops nothing
        RequesterCommented(T0 + minutes(200)),
    ]
    results = evaluate(timeline, T0 + minutes(240))
    assert one(results, Metric.FIRST_REPLY).elapsed_calendar_minutes == 20
    first_next = one(results, Metric.NEXT_REPLY, 1)
    assert first_next.started_at == T0 + minutes(100)
    assert (first_next.status, first_next.breached) == (TargetStatus.FULFILLED, True)
    assert first_next.elapsed_calendar_minutes == 45
    second_next = one(results, Metric.NEXT_REPLY, 2)
    assert (second_next.status, second_next.breached) == (TargetStatus.BREACHED, True)
    assert second_next.due_at == T0 + minutes(230)
    assert [r.metric for r in results].count(Metric.NEXT_REPLY) == 2


def test_solving_without_a_reply_ends_the_reply_metric() -> None:
    results = evaluate([*opened(), StatusSet(T0 + minutes(30), "solved")], T0 + minutes(120))
    reply = one(results, Metric.FIRST_REPLY)
    assert (reply.status, reply.fulfilled_at, reply.breached) == (
        TargetStatus.FULFILLED,
        T0 + minutes(30),
        False,
    )


def test_priority_change_retargets_running_metrics() -> None:
    policy = terms(
        normal={Metric.FIRST_REPLY: 60},
        urgent={Metric.FIRST_REPLY: 15, Metric.RESOLUTION: 120},
    )
    timeline = [*opened(policy), PrioritySet(T0 + minutes(10), "urgent")]
    results = evaluate(timeline, T0 + minutes(20))
    reply = one(results, Metric.FIRST_REPLY)
    assert (reply.priority, reply.due_at, reply.status) == (
        "urgent",
        T0 + minutes(15),
        TargetStatus.BREACHED,
    )
    assert one(results, Metric.RESOLUTION).due_at == T0 + minutes(120)


def test_policy_change_mid_ticket_keeps_fulfilled_targets_as_they_were() -> None:
    old = terms("A", 1)
    new = terms("B", 3, normal={Metric.FIRST_REPLY: 5, Metric.RESOLUTION: 60})
    timeline = [
        *opened(old),
        AgentReplied(T0 + minutes(10)),  # fulfilled under A (60 minutes)
        PolicySet(T0 + minutes(20), new),  # resolution re-targeted to 60 minutes from creation
    ]
    results = evaluate(timeline, T0 + minutes(30))
    reply = one(results, Metric.FIRST_REPLY)
    assert (reply.policy_id, reply.policy_version, reply.breached) == ("A", 1, False)
    resolution = one(results, Metric.RESOLUTION)
    assert (resolution.policy_id, resolution.policy_version) == ("B", 3)
    assert resolution.due_at == T0 + minutes(60)

    # A policy without a target for a running metric takes that metric out of the SLA.
    none = evaluate([*timeline, PolicySet(T0 + minutes(25), None)], T0 + minutes(30))
    assert [r.metric for r in none] == [Metric.FIRST_REPLY]


def test_resolution_in_business_hours_with_a_pause_over_a_holiday() -> None:
    office = berlin_office(holidays=("2026-12-25",))
    policy = terms(schedule=office, business=True)  # resolution: 480 business minutes
    start = local(BERLIN, 2026, 12, 23, 13, 0).astimezone(UTC)  # Wednesday
    timeline = [
        *opened(policy, start),
        StatusSet(local(BERLIN, 2026, 12, 23, 15, 0).astimezone(UTC), "pending"),  # 120 used
        StatusSet(local(BERLIN, 2026, 12, 24, 16, 0).astimezone(UTC), "open"),
    ]
    result = one(evaluate(timeline, local(BERLIN, 2026, 12, 24, 16, 30)), Metric.RESOLUTION)
    # 360 business minutes left from Thursday 16:00: 60 on Thursday, none on Christmas,
    # 300 on Monday from 09:00 -> Monday 14:00.
    assert result.due_at == local(BERLIN, 2026, 12, 28, 14, 0)
    assert result.elapsed_business_minutes == 150
    assert result.status is TargetStatus.ACTIVE


def test_business_targets_need_a_schedule() -> None:
    with pytest.raises(ValueError, match="schedule"):
        terms(business=True)
