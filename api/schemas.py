"""Request and response bodies. Kept apart from domain objects: this is the wire contract."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StrictBool, StringConstraints

from domain.ticket import Priority, Status
from domain.user import UserKind

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Phone = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=3, max_length=40, pattern=r"^[0-9+()\-. x]+$"
    ),
]
Organization = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)
]
Subject = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=250)]
Body = Annotated[str, StringConstraints(min_length=1, max_length=65_536)]
Tag = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=50, pattern=r"^[\w\-:.]+$"),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserCreate(Strict):
    kind: UserKind
    name: Name
    email: EmailStr
    phone: Phone | None = None
    organization: Organization | None = None


class UserPatch(Strict):
    name: Name | None = None
    email: EmailStr | None = None
    phone: Phone | None = None
    organization: Organization | None = None


class UserOut(BaseModel):
    id: UUID
    kind: UserKind
    name: str | None
    email: str | None
    phone: str | None
    organization: str | None
    erased: bool
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
    author_id: UUID
    body: str | None
    public: bool
    created_at: datetime


class TicketOut(BaseModel):
    id: UUID
    requester_id: UUID
    assignee_id: UUID | None
    status: Status
    priority: Priority
    subject: str | None
    body: str | None
    tags: list[str]
    comments: list[CommentOut]
    created_at: datetime
    updated_at: datetime
    version: int


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


class HistoryEvent(BaseModel):
    type: str
    version: int
    occurred_at: datetime | None
    recorded_at: datetime
    data: dict[str, Any]
    erased_fields: list[str]


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


class ExportComment(BaseModel):
    ticket_id: UUID
    author_id: UUID
    body: str | None
    public: bool
    created_at: datetime


class ExportTicket(TicketOut):
    pass


class Export(BaseModel):
    subject_id: UUID
    exported_at: datetime
    profile: UserOut
    tickets_requested: list[ExportTicket]
    comments_elsewhere: list[ExportComment]


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
    url: Annotated[str, StringConstraints(strip_whitespace=True, min_length=8, max_length=2000)]
    events: list[Annotated[str, StringConstraints(max_length=100)]] = Field(
        min_length=1, max_length=50
    )
    secret: Annotated[str, StringConstraints(min_length=16, max_length=256)]
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
