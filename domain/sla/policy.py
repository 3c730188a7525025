"""SLA policies and business-hours schedules as event-sourced aggregates.

A policy's terms (filter, targets, schedule) change only by new events, so every version stays
readable: a ticket records the policy version (and schedule version) that applied to it, and
reports can show a ticket "as configured then". The order in which policies are tried lives in
one `SlaCatalog` aggregate, so a reorder is a single event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import RuleViolation
from domain.sla.metrics import Metric, PolicyTerms, Target
from domain.sla.schedule import Schedule, ScheduleError

CATALOG_ID = uuid5(NAMESPACE_URL, "ticketlog:sla-catalog")
PRIORITIES = ("low", "normal", "high", "urgent")
MATCH_MODES = ("all", "any")


@dataclass(frozen=True)
class PolicyFilter:
    """Which tickets a policy applies to: all conditions hold, or any one does.

    Conditions: the priority is one of `priorities` (when given), the requester belongs to one
    of `organizations` (when given), and the ticket carries each of `tags`. An empty filter
    matches every ticket.
    """

    match: str = "all"
    priorities: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    organizations: tuple[str, ...] = ()

    @classmethod
    def from_definition(cls, definition: Mapping[str, Any]) -> PolicyFilter:
        return cls(
            match=str(definition.get("match", "all")),
            priorities=tuple(definition.get("priorities") or ()),
            tags=tuple(definition.get("tags") or ()),
            organizations=tuple(str(o) for o in definition.get("organizations") or ()),
        )

    def definition(self) -> dict[str, Any]:
        return {
            "match": self.match,
            "priorities": list(self.priorities),
            "tags": list(self.tags),
            "organizations": list(self.organizations),
        }

    def matches(
        self, priority: str, tags: Sequence[str], organization_id: str | None = None
    ) -> bool:
        conditions = [tag in tags for tag in self.tags]
        if self.organizations:
            conditions.insert(0, organization_id in self.organizations)
        if self.priorities:
            conditions.insert(0, priority in self.priorities)
        if not conditions:
            return True
        return all(conditions) if self.match == "all" else any(conditions)


def check_policy(
    filter_: Mapping[str, Any], targets: Mapping[str, Any], has_schedule: bool
) -> None:
    """Refuse terms that cannot be evaluated (RuleViolation, code `invalid_policy`)."""

    def invalid(message: str) -> RuleViolation:
        return RuleViolation(message, code="invalid_policy")

    if filter_.get("match", "all") not in MATCH_MODES:
        raise invalid("filter match must be 'all' or 'any'")
    if set(filter_.get("priorities") or ()) - set(PRIORITIES):
        raise invalid("filter names an unknown priority")
    if set(targets) - set(PRIORITIES):
        raise invalid("targets name an unknown priority")
    for by_metric in targets.values():
        if set(by_metric) - {m.value for m in Metric}:
            raise invalid("targets name an unknown metric")
        for target in by_metric.values():
            minutes = target.get("minutes")
            if not isinstance(minutes, int) or isinstance(minutes, bool) or minutes <= 0:
                raise invalid("a target is a positive whole number of minutes")
            if target.get("business") and not has_schedule:
                raise invalid("business-hours targets need a schedule")


def policy_terms(
    policy_id: UUID | str,
    version: int,
    name: str,
    targets: Mapping[str, Mapping[str, Mapping[str, Any]]],
    schedule: Schedule | None,
) -> PolicyTerms:
    """A stored policy version as the calculator reads it."""
    return PolicyTerms(
        policy_id=str(policy_id),
        version=version,
        name=name,
        targets={
            priority: {
                Metric(metric): Target(int(t["minutes"]), bool(t.get("business")))
                for metric, t in by_metric.items()
            }
            for priority, by_metric in targets.items()
        },
        schedule=schedule,
    )


@dataclass(frozen=True)
class AppliedPolicy:
    """The policy version, and its schedule's version, that a ticket is measured against."""

    policy_id: UUID
    policy_version: int
    schedule_id: UUID | None
    schedule_version: int | None


class SlaSchedule(Aggregate):
    """Business hours: weekly hours in an IANA time zone, and holidays."""

    class Defined(Aggregate.Created):
        name: str
        definition: dict[str, Any]
        occurred_at: datetime

    class Redefined(Aggregate.Event):
        name: str
        definition: dict[str, Any]
        occurred_at: datetime

    @event(Defined)
    def __init__(self, name: str, definition: dict[str, Any], occurred_at: datetime) -> None:
        self.name = name
        self.definition = definition
        self.updated_at = occurred_at

    @classmethod
    def define(cls, name: str, schedule: Schedule, occurred_at: datetime) -> SlaSchedule:
        return cls(name=name, definition=schedule.definition(), occurred_at=occurred_at)

    @property
    def schedule(self) -> Schedule:
        return Schedule.from_definition(self.definition)

    def redefine(self, name: str, schedule: Schedule, occurred_at: datetime) -> None:
        definition = schedule.definition()
        if name == self.name and definition == self.definition:
            return
        self._redefined(name=name, definition=definition, occurred_at=occurred_at)

    @event(Redefined)
    def _redefined(self, name: str, definition: dict[str, Any], occurred_at: datetime) -> None:
        self.name = name
        self.definition = definition
        self.updated_at = occurred_at


class SlaPolicy(Aggregate):
    """Name, filter, per-priority targets and the schedule business time counts on."""

    class Defined(Aggregate.Created):
        name: str
        filter: dict[str, Any]
        targets: dict[str, Any]
        schedule_id: UUID | None
        occurred_at: datetime

    class Redefined(Aggregate.Event):
        name: str
        filter: dict[str, Any]
        targets: dict[str, Any]
        schedule_id: UUID | None
        occurred_at: datetime

    @event(Defined)
    def __init__(
        self,
        name: str,
        filter: dict[str, Any],
        targets: dict[str, Any],
        schedule_id: UUID | None,
        occurred_at: datetime,
    ) -> None:
        self._set(name, filter, targets, schedule_id, occurred_at)

    @classmethod
    def define(
        cls,
        name: str,
        filter_: dict[str, Any],
        targets: dict[str, Any],
        schedule_id: UUID | None,
        occurred_at: datetime,
    ) -> SlaPolicy:
        check_policy(filter_, targets, schedule_id is not None)
        return cls(
            name=name,
            filter=filter_,
            targets=targets,
            schedule_id=schedule_id,
            occurred_at=occurred_at,
        )

    @property
    def policy_filter(self) -> PolicyFilter:
        return PolicyFilter.from_definition(self.filter)

    def redefine(
        self,
        name: str,
        filter_: dict[str, Any],
        targets: dict[str, Any],
        schedule_id: UUID | None,
        occurred_at: datetime,
    ) -> None:
        check_policy(filter_, targets, schedule_id is not None)
        if (name, filter_, targets, schedule_id) == (
            self.name,
            self.filter,
            self.targets,
            self.schedule_id,
        ):
            return
        self._redefined(
            name=name,
            filter=filter_,
            targets=targets,
            schedule_id=schedule_id,
            occurred_at=occurred_at,
        )

    @event(Redefined)
    def _redefined(
        self,
        name: str,
        filter: dict[str, Any],
        targets: dict[str, Any],
        schedule_id: UUID | None,
        occurred_at: datetime,
    ) -> None:
        self._set(name, filter, targets, schedule_id, occurred_at)

    def _set(
        self,
        name: str,
        filter_: dict[str, Any],
        targets: dict[str, Any],
        schedule_id: UUID | None,
        occurred_at: datetime,
    ) -> None:
        self.name = name
        self.filter = filter_
        self.targets = targets
        self.schedule_id = schedule_id
        self.updated_at = occurred_at


class SlaCatalog(Aggregate):
    """The order in which policies are tried (first match applies); one per help desk."""

    class Started(Aggregate.Created):
        occurred_at: datetime

    class PolicyListed(Aggregate.Event):
        policy_id: UUID
        occurred_at: datetime

    class Reordered(Aggregate.Event):
        policy_ids: list[UUID]
        occurred_at: datetime

    @classmethod
    def create_id(cls, *args: Any, **kwargs: Any) -> UUID:
        return CATALOG_ID

    @event(Started)
    def __init__(self, occurred_at: datetime) -> None:
        self.policy_ids: list[UUID] = []

    def list_policy(self, policy_id: UUID, occurred_at: datetime) -> None:
        if policy_id not in self.policy_ids:
            self._policy_listed(policy_id=policy_id, occurred_at=occurred_at)

    @event(PolicyListed)
    def _policy_listed(self, policy_id: UUID, occurred_at: datetime) -> None:
        self.policy_ids.append(policy_id)

    def reorder(self, policy_ids: list[UUID], occurred_at: datetime) -> None:
        if sorted(policy_ids) != sorted(self.policy_ids) or len(set(policy_ids)) != len(policy_ids):
            raise RuleViolation(
                "a reorder lists every policy exactly once", code="invalid_policy_order"
            )
        if policy_ids != self.policy_ids:
            self._reordered(policy_ids=list(policy_ids), occurred_at=occurred_at)

    @event(Reordered)
    def _reordered(self, policy_ids: list[UUID], occurred_at: datetime) -> None:
        self.policy_ids = list(policy_ids)


def checked_schedule(definition: Mapping[str, Any]) -> Schedule:
    """A schedule from its wire form, or RuleViolation `invalid_schedule`."""
    try:
        return Schedule.from_definition(definition)
    except (ScheduleError, ValueError) as e:
        raise RuleViolation(str(e), code="invalid_schedule") from None
