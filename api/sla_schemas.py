"""Wire contract of the SLA admin API, ticket priority/tags commands and SLA reads."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, Field, StringConstraints, model_validator

from api.schemas import ONE_LINE, Body, Name, Strict, Subject, Tag
from domain.sla.metrics import Metric
from domain.sla.schedule import Schedule
from domain.ticket import Priority, Status
from ticketlog.desk import ImportStep, TicketImport

Clock = Annotated[str, StringConstraints(pattern=r"^\d{2}:\d{2}$")]
MAX_SPANS_PER_DAY = 48  # every SLA evaluation walks them


class ScheduleIn(Strict):
    name: Name
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=ONE_LINE)]
    hours: dict[
        Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        Annotated[list[tuple[Clock, Clock]], Field(max_length=MAX_SPANS_PER_DAY)],
    ]
    holidays: list[Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}$")]] = Field(
        default_factory=list, max_length=2000
    )

    def definition(self) -> dict[str, Any]:
        return {
            "timezone": self.timezone,
            "hours": {day: [list(span) for span in spans] for day, spans in self.hours.items()},
            "holidays": list(self.holidays),
        }

    @model_validator(mode="after")
    def _workable(self) -> ScheduleIn:
        try:
            Schedule.from_definition(self.definition())  # bad zone, hours or dates -> 422
        except ValueError as e:
            raise ValueError(str(e)) from None
        return self


class ScheduleOut(BaseModel):
    id: UUID
    name: str
    version: int
    timezone: str
    hours: dict[str, list[list[str]]]
    holidays: list[str]
    updated_at: datetime


class TargetIn(Strict):
    minutes: int = Field(gt=0, le=60 * 24 * 366)
    business: bool = False


class FilterIn(Strict):
    match: Literal["all", "any"] = "all"
    priorities: list[Priority] = Field(default_factory=list, max_length=4)
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    organizations: list[UUID] = Field(default_factory=list, max_length=100)


class PolicyIn(Strict):
    name: Name
    filter: FilterIn = Field(default_factory=FilterIn)
    targets: dict[Priority, dict[Metric, TargetIn]]
    schedule_id: UUID | None = None

    @model_validator(mode="after")
    def _schedule_for_business_time(self) -> PolicyIn:
        business = any(t.business for by in self.targets.values() for t in by.values())
        if business and self.schedule_id is None:
            raise ValueError("business-hours targets need a schedule_id")
        return self

    def filter_definition(self) -> dict[str, Any]:
        return {
            "match": self.filter.match,
            "priorities": [p.value for p in self.filter.priorities],
            "tags": sorted({t.strip().lower() for t in self.filter.tags}),
            "organizations": sorted({str(o) for o in self.filter.organizations}),
        }

    def targets_definition(self) -> dict[str, Any]:
        return {
            priority.value: {
                metric.value: {"minutes": t.minutes, "business": t.business}
                for metric, t in by_metric.items()
            }
            for priority, by_metric in self.targets.items()
        }


class PolicyOut(BaseModel):
    id: UUID
    name: str
    position: int
    version: int
    filter: dict[str, Any]
    targets: dict[str, dict[str, dict[str, Any]]]
    schedule_id: UUID | None
    updated_at: datetime


class PolicyOrder(Strict):
    policy_ids: list[UUID] = Field(max_length=1000)


class PriorityRequest(Strict):
    priority: Priority


class TagsRequest(Strict):
    tags: list[Tag] = Field(max_length=50)


class SlaTargetOut(BaseModel):
    metric: Metric
    instance: int
    status: str
    breached: bool
    breach_recorded: bool
    policy_id: UUID
    policy_version: int
    policy_name: str
    priority: str
    target_minutes: int
    business: bool
    started_at: datetime
    due_at: datetime | None
    fulfilled_at: datetime | None
    elapsed_calendar_minutes: float
    elapsed_business_minutes: float | None


class AppliedPolicyOut(BaseModel):
    policy_id: UUID
    policy_version: int
    schedule_id: UUID | None
    schedule_version: int | None


class TicketSlaOut(BaseModel):
    ticket_id: UUID
    as_of: datetime
    configured: Literal["then", "now"]
    applied_policy: AppliedPolicyOut | None
    targets: list[SlaTargetOut]


class ImportedComment(Strict):
    type: Literal["comment"]
    occurred_at: AwareDatetime
    author_id: UUID
    body: Body
    public: bool = True


class ImportedAssign(Strict):
    type: Literal["assign"]
    occurred_at: AwareDatetime
    assignee_id: UUID


class ImportedStatus(Strict):
    type: Literal["status"]
    occurred_at: AwareDatetime
    status: Status


class ImportedPriority(Strict):
    type: Literal["priority"]
    occurred_at: AwareDatetime
    priority: Priority


class ImportedTags(Strict):
    type: Literal["tags"]
    occurred_at: AwareDatetime
    tags: list[Tag] = Field(max_length=50)


ImportedEvent = Annotated[
    ImportedComment | ImportedAssign | ImportedStatus | ImportedPriority | ImportedTags,
    Field(discriminator="type"),
]


class TicketImportIn(Strict):
    """A ticket from another help desk, with its history in the order it happened."""

    requester_id: UUID
    subject: Subject
    body: Body
    priority: Priority = Priority.NORMAL
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    created_at: AwareDatetime
    events: list[ImportedEvent] = Field(default_factory=list, max_length=10_000)
    source: Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=ONE_LINE)] = (
        "import"
    )

    @model_validator(mode="after")
    def _in_order(self) -> TicketImportIn:
        times = [self.created_at, *(e.occurred_at for e in self.events)]
        if any(later < earlier for earlier, later in itertools.pairwise(times)):
            raise ValueError("events must be in the order they happened, after created_at")
        return self

    def to_domain(self) -> TicketImport:
        return TicketImport(
            requester_id=self.requester_id,
            subject=self.subject,
            body=self.body,
            created_at=self.created_at,
            priority=self.priority,
            tags=list(self.tags),
            source=self.source,
            events=[
                ImportStep(
                    kind=e.type,
                    occurred_at=e.occurred_at,
                    author_id=getattr(e, "author_id", None),
                    body=getattr(e, "body", None),
                    public=getattr(e, "public", True),
                    assignee_id=getattr(e, "assignee_id", None),
                    status=getattr(e, "status", None),
                    priority=getattr(e, "priority", None),
                    tags=getattr(e, "tags", None),
                )
                for e in self.events
            ],
        )
