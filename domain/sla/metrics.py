"""SLA metrics of one ticket, computed from its timeline (Zendesk's semantics).

- first_reply: from creation to the first public comment by an agent.
- next_reply: from the oldest public requester comment not yet answered to the next public
  agent comment (one instance per exchange, after the first reply).
- resolution: from creation to solved; the clock stops while pending or on_hold and while
  solved; a reopen resumes it and the next solve fulfils it again.

Solving a ticket also ends an unanswered reply metric (there is nothing left to reply to).
A target's terms come from the policy in force when the metric was fulfilled, or from the
current policy while it runs: a policy change re-targets running metrics from their start and
leaves fulfilled ones alone. Everything here is a pure function of the timeline and `now`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from domain.sla.schedule import Schedule


class Metric(StrEnum):
    FIRST_REPLY = "first_reply"
    NEXT_REPLY = "next_reply"
    RESOLUTION = "resolution"


class TargetStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    FULFILLED = "fulfilled"
    BREACHED = "breached"


PAUSING = frozenset({"pending", "on_hold"})
RUNNING = frozenset({"new", "open"})
FINISHED = frozenset({"solved", "closed"})


@dataclass(frozen=True)
class Target:
    minutes: int
    business: bool


@dataclass(frozen=True)
class PolicyTerms:
    """One version of a policy, with the schedule version it counts business time on."""

    policy_id: str
    version: int
    name: str
    targets: Mapping[str, Mapping[Metric, Target]]  # priority -> metric -> target
    schedule: Schedule | None = None

    def __post_init__(self) -> None:
        business = any(t.business for by in self.targets.values() for t in by.values())
        if business and self.schedule is None:
            raise ValueError("business-hours targets need a schedule")

    def target(self, priority: str, metric: Metric) -> Target | None:
        return self.targets.get(priority, {}).get(metric)


# Timeline facts, in the order they happened.


@dataclass(frozen=True)
class Opened:
    at: datetime
    priority: str


@dataclass(frozen=True)
class AgentReplied:
    """A public comment by an agent other than the requester."""

    at: datetime


@dataclass(frozen=True)
class RequesterCommented:
    """A public comment by the requester."""

    at: datetime


@dataclass(frozen=True)
class StatusSet:
    at: datetime
    status: str


@dataclass(frozen=True)
class PrioritySet:
    at: datetime
    priority: str


@dataclass(frozen=True)
class PolicySet:
    at: datetime
    terms: PolicyTerms | None


Fact = Opened | AgentReplied | RequesterCommented | StatusSet | PrioritySet | PolicySet


@dataclass
class _Instance:
    metric: Metric
    number: int
    started_at: datetime
    segments: list[list[datetime | None]]  # running spans: [start, end or None if running]
    stopped_at: datetime | None = None
    stopped_under: tuple[PolicyTerms | None, str] | None = None
    closed: bool = False

    @property
    def running(self) -> bool:
        return self.stopped_at is None and self.segments[-1][1] is None

    def pause(self, at: datetime) -> None:
        if self.running:
            self.segments[-1][1] = at

    def resume(self, at: datetime) -> None:
        if self.stopped_at is None and self.segments[-1][1] is not None:
            self.segments.append([at, None])

    def stop(self, at: datetime, terms: PolicyTerms | None, priority: str) -> None:
        self.pause(at)
        self.stopped_at = at
        self.stopped_under = (terms, priority)

    def reopen(self, at: datetime) -> None:
        self.stopped_at = None
        self.stopped_under = None
        self.segments.append([at, None])


@dataclass(frozen=True)
class TargetResult:
    metric: Metric
    instance: int
    policy_id: str
    policy_version: int
    policy_name: str
    priority: str
    target_minutes: int
    business: bool
    status: TargetStatus
    breached: bool  # also true for a target fulfilled late
    started_at: datetime
    due_at: datetime | None  # None while paused before the target was reached
    fulfilled_at: datetime | None
    elapsed_calendar_minutes: float
    elapsed_business_minutes: float | None  # None without a schedule


@dataclass
class _State:
    priority: str = "normal"
    terms: PolicyTerms | None = None
    instances: list[_Instance] = field(default_factory=list)

    def open_reply(self) -> _Instance | None:
        for inst in self.instances:
            if inst.metric is not Metric.RESOLUTION and inst.stopped_at is None:
                return inst
        return None

    def resolution(self) -> _Instance | None:
        for inst in self.instances:
            if inst.metric is Metric.RESOLUTION:
                return inst
        return None


def evaluate(timeline: Iterable[Fact], now: datetime) -> list[TargetResult]:
    """Every metric instance of the ticket that has a target, as it stands at `now`."""
    state = _State()
    for fact in timeline:
        _apply(state, fact)
    results = []
    for inst in state.instances:
        terms, priority = inst.stopped_under or (state.terms, state.priority)
        target = terms.target(priority, inst.metric) if terms else None
        if terms is None or target is None:
            continue
        results.append(_result(inst, terms, priority, target, now))
    return results


def _apply(state: _State, fact: Fact) -> None:
    if isinstance(fact, Opened):
        state.priority = fact.priority
        for metric in (Metric.FIRST_REPLY, Metric.RESOLUTION):
            state.instances.append(_Instance(metric, 1, fact.at, [[fact.at, None]]))
    elif isinstance(fact, AgentReplied):
        reply = state.open_reply()
        if reply is not None:
            reply.stop(fact.at, state.terms, state.priority)
    elif isinstance(fact, RequesterCommented):
        if state.open_reply() is None and _resolution_running_or_reopening(state):
            number = sum(1 for i in state.instances if i.metric is Metric.NEXT_REPLY) + 1
            state.instances.append(_Instance(Metric.NEXT_REPLY, number, fact.at, [[fact.at, None]]))
    elif isinstance(fact, StatusSet):
        _status_set(state, fact)
    elif isinstance(fact, PrioritySet):
        state.priority = fact.priority
    elif isinstance(fact, PolicySet):
        state.terms = fact.terms


def _resolution_running_or_reopening(state: _State) -> bool:
    # A requester comment on a closed ticket starts nothing (closed is final); on a solved,
    # pending or on-hold ticket it reopens the ticket, so it does start a next reply.
    resolution = state.resolution()
    return resolution is not None and not resolution.closed


def _status_set(state: _State, fact: StatusSet) -> None:
    resolution = state.resolution()
    if resolution is None:
        return
    if fact.status in PAUSING:
        resolution.pause(fact.at)
    elif fact.status in RUNNING:
        if resolution.stopped_at is not None:
            resolution.reopen(fact.at)
        else:
            resolution.resume(fact.at)
    elif fact.status in FINISHED:
        if resolution.stopped_at is None:
            resolution.stop(fact.at, state.terms, state.priority)
        reply = state.open_reply()
        if reply is not None:
            reply.stop(fact.at, state.terms, state.priority)
        if fact.status == "closed":
            resolution.closed = True


def _result(
    inst: _Instance, terms: PolicyTerms, priority: str, target: Target, now: datetime
) -> TargetResult:
    schedule = terms.schedule
    end_of = [min(e or now, now) for _, e in inst.segments]
    spans = [(s, e) for (s, _), e in zip(inst.segments, end_of, strict=True) if s is not None]
    calendar = sum(max((e - s).total_seconds(), 0.0) for s, e in spans)
    business = None if schedule is None else sum(schedule.business_seconds(s, e) for s, e in spans)
    due = _due(inst, target, schedule)
    end_point = inst.stopped_at or now
    breached = due is not None and due < end_point
    if inst.stopped_at is not None:
        status = TargetStatus.FULFILLED
    elif breached:
        status = TargetStatus.BREACHED
    elif not inst.running:
        status = TargetStatus.PAUSED
    else:
        status = TargetStatus.ACTIVE
    return TargetResult(
        metric=inst.metric,
        instance=inst.number,
        policy_id=terms.policy_id,
        policy_version=terms.version,
        policy_name=terms.name,
        priority=priority,
        target_minutes=target.minutes,
        business=target.business,
        status=status,
        breached=breached,
        started_at=inst.started_at,
        due_at=due,
        fulfilled_at=inst.stopped_at,
        elapsed_calendar_minutes=calendar / 60,
        elapsed_business_minutes=None if business is None else business / 60,
    )


def _due(inst: _Instance, target: Target, schedule: Schedule | None) -> datetime | None:
    """When the running time reaches the target, if the clock keeps running from now on."""
    budget = target.minutes * 60.0
    spent = 0.0
    for index, (start, end) in enumerate(inst.segments):
        assert start is not None
        last = index == len(inst.segments) - 1
        if end is None or (last and inst.stopped_at is not None):
            return _advance(start, budget - spent, target, schedule)
        span = _measure(start, end, target, schedule)
        if spent + span >= budget:
            return _advance(start, budget - spent, target, schedule)
        spent += span
    return None  # paused before the target was reached


def _measure(start: datetime, end: datetime, target: Target, schedule: Schedule | None) -> float:
    if target.business:
        assert schedule is not None  # PolicyTerms refuses business targets without one
        return schedule.business_seconds(start, end)
    return max((end - start).total_seconds(), 0.0)


def _advance(
    start: datetime, seconds: float, target: Target, schedule: Schedule | None
) -> datetime:
    if target.business:
        assert schedule is not None
        return schedule.add_business_seconds(start, seconds)
    return start + timedelta(seconds=seconds)
