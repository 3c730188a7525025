"""Request and response bodies. Kept apart from domain objects: this is the wire contract."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StrictBool, StringConstraints

from domain.retention import RetentionKind
from domain.ticket import Priority, Status
from domain.user import UserKind

# Text reaches PostgreSQL TEXT columns, log lines and email headers: no NUL anywhere, and no
# control characters in one-line fields (tab, line feed and carriage return only in texts).
ONE_LINE = r"^[^\x00-\x1f\x7f]*$"
MULTI_LINE = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
MAX_EMAIL = 254  # RFC 5321's path limit less the brackets; email-validator enforces it too

Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=ONE_LINE),
]
Email = Annotated[EmailStr, Field(max_length=MAX_EMAIL)]  # stripped, domain lowercased
Phone = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=3, max_length=40, pattern=r"^[0-9+()\-. x]+$"
    ),
]
Organization = Name
Subject = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=250, pattern=ONE_LINE),
]
Body = Annotated[str, StringConstraints(min_length=1, max_length=65_536, pattern=MULTI_LINE)]
Tag = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=50, pattern=r"^[\w\-:.]+$"),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserCreate(Strict):
    kind: UserKind
    name: Name
    email: Email
    phone: Phone | None = None
    organization: Organization | None = None
    organization_id: UUID | None = None


class UserPatch(Strict):
    name: Name | None = None
    email: Email | None = None
    phone: Phone | None = None
    organization: Organization | None = None
    organization_id: UUID | None = None


class UserOut(BaseModel):
    id: UUID
    kind: UserKind
    name: str | None
    email: str | None
    phone: str | None
    organization: str | None
    organization_id: UUID | None
    erased: bool
    anonymized: bool
    restricted: bool
    on_legal_hold: bool
    created_at: datetime
    updated_at: datetime
    version: int


class TicketCreate(Strict):
    requester_id: UUID
    subject: Subject
    body: Body
    priority: Priority = Priority.NORMAL
    tags: list[Tag] = Field(default_factory=list, max_length=50)


class CommentCreate(Strict):
    author_id: UUID
    body: Body
    public: bool = True


class AssignRequest(Strict):
    assignee_id: UUID


class StatusRequest(Strict):
    status: Status


class CommentOut(BaseModel):
    version: int = Field(description="the ticket's version that recorded it; identifies it")
    author_id: UUID
    body: str | None
    public: bool
    created_at: datetime


class TicketState(BaseModel):
    """A ticket without its conversation: what a command on it answers."""

    id: UUID
    requester_id: UUID
    assignee_id: UUID | None
    status: Status
    priority: Priority
    subject: str | None
    body: str | None
    tags: list[str]
    created_at: datetime
    updated_at: datetime
    version: int


class TicketOut(TicketState):
    comments: list[CommentOut]


class TicketSummary(BaseModel):
    id: UUID
    requester_id: UUID
    assignee_id: UUID | None
    status: Status
    priority: Priority
    subject: str | None
    tags: list[str]
    created_at: datetime
    updated_at: datetime
    version: int


class TicketPage(BaseModel):
    items: list[TicketSummary]
    next_cursor: str | None


class CommentAdded(BaseModel):
    """A comment command's answer: the comment and the ticket it changed, without the
    ticket's other comments, so its cost does not grow with the conversation."""

    comment: CommentOut
    ticket: TicketSummary


class CommentPage(BaseModel):
    items: list[CommentOut]
    next_after: int | None


class HistoryEvent(BaseModel):
    type: str
    version: int
    occurred_at: datetime | None
    recorded_at: datetime
    data: dict[str, Any]
    erased_fields: list[str]
    imported: bool = False


class History(BaseModel):
    ticket_id: UUID
    events: list[HistoryEvent]


class Erasure(BaseModel):
    subject_id: UUID
    erased: bool
    already_erased: bool
    erased_at: datetime
    keys_destroyed: list[str]
    keys_destroyed_now: list[str]
    certificate: str | None = Field(
        description="signed erasure certificate (C2SP signed note); "
        "check it with `ticketlog compliance verify-certificate`"
    )


class Certificate(BaseModel):
    subject_id: UUID
    certificate: str


class Anonymization(BaseModel):
    subject_id: UUID
    anonymized: bool
    already_anonymized: bool
    anonymized_at: datetime
    key_destroyed: str


Purpose = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_.:-]*$")
]
PolicyVersion = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=ONE_LINE),
]
Reason = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=1000, pattern=MULTI_LINE),
]


class ConsentIn(Strict):
    purpose: Purpose
    policy_version: PolicyVersion
    granted: bool


class ConsentOut(BaseModel):
    purpose: str
    policy_version: str
    granted: bool
    at: datetime


class Consents(BaseModel):
    subject_id: UUID
    current: list[ConsentOut]
    history: list[ConsentOut]


class HoldIn(Strict):
    reason: Reason


class SubjectState(BaseModel):
    subject_id: UUID
    restricted: bool
    on_legal_hold: bool


class OrganizationIn(Strict):
    name: Name


class ContractEndIn(Strict):
    ended_at: datetime | None = None


class OrganizationOut(BaseModel):
    id: UUID
    name: str
    contract_ended_at: datetime | None
    members: int
    created_at: datetime
    version: int


class RetentionRuleIn(Strict):
    kind: RetentionKind
    after_days: int = Field(ge=0, le=36_500)


class RetentionRules(Strict):
    rules: list[RetentionRuleIn] = Field(max_length=20)


class RetentionActionOut(BaseModel):
    action: str
    target_id: UUID
    rule: str
    reason: str
    blocked_by_legal_hold: bool
    done: bool


class RetentionRun(BaseModel):
    dry_run: bool
    ran_at: datetime
    actions: list[RetentionActionOut]


class ExportComment(BaseModel):
    ticket_id: UUID
    author_id: UUID
    body: str | None
    public: bool
    created_at: datetime


class ExportTicket(TicketOut):
    pass


class RestrictionChange(BaseModel):
    restricted: bool
    at: datetime


class LegalHoldPeriod(BaseModel):
    reason: str | None
    placed_at: datetime
    released_at: datetime | None


class AccessEntry(BaseModel):
    at: datetime
    token_name: str
    role: str
    endpoint: str


class Export(BaseModel):
    """Everything ticketlog holds about one person (rights of access and portability)."""

    subject_id: UUID
    exported_at: datetime
    profile: UserOut
    tickets_requested: list[ExportTicket]
    comments_elsewhere: list[ExportComment]
    consents: list[ConsentOut]
    restrictions: list[RestrictionChange]
    legal_holds: list[LegalHoldPeriod]
    access_log: list[AccessEntry]


class AttachmentOut(BaseModel):
    id: UUID
    ticket_id: UUID
    uploader_id: UUID
    name: str | None
    size: int
    content_type: str
    sha256: str
    created_at: datetime


class AttachmentList(BaseModel):
    items: list[AttachmentOut]


class ChannelSwitches(Strict):
    email: StrictBool = True


class NotificationPreferencesIn(Strict):
    agent_reply: ChannelSwitches | None = None
    ticket_solved: ChannelSwitches | None = None
    ticket_assigned: ChannelSwitches | None = None
    requester_reply: ChannelSwitches | None = None


class NotificationPreferencesOut(BaseModel):
    user_id: UUID
    preferences: dict[str, dict[str, bool]]


class WebhookCreate(Strict):
    url: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=8, max_length=2000, pattern=ONE_LINE),
    ]
    events: list[Annotated[str, StringConstraints(max_length=100, pattern=ONE_LINE)]] = Field(
        min_length=1, max_length=50
    )
    secret: Annotated[str, StringConstraints(min_length=16, max_length=256, pattern=ONE_LINE)]
    include_personal_data: bool = False


class WebhookOut(BaseModel):
    id: UUID
    url: str
    events: list[str]
    include_personal_data: bool
    position: int
    created_at: datetime


class WebhookAttempt(BaseModel):
    attempt: int
    at: datetime
    status: int | None
    error: str | None


class WebhookDelivery(BaseModel):
    id: UUID
    position: int
    generation: int
    event_type: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    personal_data: bool
    created_at: datetime
    delivered_at: datetime | None
    log: list[WebhookAttempt]


class WebhookDeliveries(BaseModel):
    webhook_id: UUID
    items: list[WebhookDelivery]


class WebhookReplay(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    webhook_id: UUID
    from_: int = Field(alias="from")
    queued: int


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorOut(BaseModel):
    error: ErrorBody


class Health(BaseModel):
    status: str
    views: list[dict[str, Any]]
    follower: dict[str, Any] | None = None
