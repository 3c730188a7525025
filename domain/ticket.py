"""The Ticket aggregate and its status rules (Zendesk's, which support teams already know)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import RuleViolation
from domain.personal import DataSubject, PersonalFields
from domain.sla.policy import AppliedPolicy

# Ticket content (subject, body, comments) is the requester's personal data, under a key of
# its own so that one ticket can be shredded alone; the requester owns that key.
TICKET_CONTENT = DataSubject("ticket", id_attr="originator_id", owner_attr="requester_id")
# A comment is also its author's data: erasing the author must make it unreadable too. It goes
# under the author's "authored content" key rather than their profile key, so anonymizing the
# author (destroying only the profile key) keeps what they wrote readable for the archive.
COMMENT_AUTHOR = DataSubject("authored", id_attr="author_id", owner_attr="author_id")


class Status(StrEnum):
    NEW = "new"
    OPEN = "open"
    PENDING = "pending"
    ON_HOLD = "on_hold"
    SOLVED = "solved"
    CLOSED = "closed"


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


# Statuses a requester's public comment takes back to open.
REOPENED_BY_REQUESTER = frozenset({Status.PENDING, Status.ON_HOLD, Status.SOLVED})


@dataclass(frozen=True)
class Comment:
    author_id: UUID
    body: Any
    public: bool
    created_at: datetime
    version: int


@dataclass(frozen=True)
class Author:
    """Who writes a comment, as the ticket needs to know them."""

    id: UUID
    is_agent: bool


class Ticket(Aggregate):
    class Opened(Aggregate.Created):
        requester_id: UUID
        subject: Any
        body: Any
        priority: str
        tags: list[str]
        occurred_at: datetime
        personal_fields: ClassVar[PersonalFields] = {
            "subject": (TICKET_CONTENT,),
            "body": (TICKET_CONTENT,),
        }

    class CommentAdded(Aggregate.Event):
        author_id: UUID
        body: Any
        public: bool
        occurred_at: datetime
        personal_fields: ClassVar[PersonalFields] = {"body": (TICKET_CONTENT, COMMENT_AUTHOR)}

    class Assigned(Aggregate.Event):
        assignee_id: UUID
        occurred_at: datetime

    class AttachmentAdded(Aggregate.Event):
        """A file was stored (encrypted under the ticket's key); its name is personal."""

        attachment_id: UUID
        uploader_id: UUID
        name: Any
        size: int
        content_type: str
        sha256: str
        occurred_at: datetime
        personal_fields: ClassVar[PersonalFields] = {"name": (TICKET_CONTENT,)}

    class StatusChanged(Aggregate.Event):
        status: str
        reason: str
        occurred_at: datetime

    class ContentShredded(Aggregate.Event):
        """The ticket's content key was destroyed (retention); carries no personal data."""

        reason: str
        occurred_at: datetime

    class PriorityChanged(Aggregate.Event):
        priority: str
        occurred_at: datetime

    class TagsChanged(Aggregate.Event):
        tags: list[str]
        occurred_at: datetime

    class SlaPolicyApplied(Aggregate.Event):
        """The SLA policy version (None: no policy matches) the ticket is measured against."""

        policy_id: UUID | None
        policy_version: int | None
        schedule_id: UUID | None
        schedule_version: int | None
        occurred_at: datetime

    class HistoryImported(Aggregate.Event):
        """Events up to `through_version` came from another help desk, with their own
        occurred_at; this event's occurred_at is when the import happened."""

        through_version: int
        source: str
        occurred_at: datetime

    class SlaBreached(Aggregate.Event):
        """A target's due time passed; PII-free, so consumers can alert on it."""

        metric: str
        instance: int
        due_at: datetime
        policy_id: UUID
        policy_version: int
        occurred_at: datetime

    @event(Opened)
    def __init__(
        self,
        requester_id: UUID,
        subject: Any,
        body: Any,
        priority: str,
        tags: list[str],
        occurred_at: datetime,
    ) -> None:
        self.requester_id = requester_id
        self.assignee_id: UUID | None = None
        self.subject = subject
        self.body = body
        self.priority = Priority(priority)
        self.tags = list(tags)
        self.status = Status.NEW
        self.content_shredded = False
        self.closed_at: datetime | None = None
        self.comments: list[Comment] = []
        self.created_at = occurred_at
        self.updated_at = occurred_at
        self.sla_policy: AppliedPolicy | None = None
        self.sla_breaches: set[tuple[str, int]] = set()
        self.imported_through = 0

    @classmethod
    def open(
        cls,
        requester_id: UUID,
        subject: str,
        body: str,
        occurred_at: datetime,
        priority: Priority = Priority.NORMAL,
        tags: list[str] | None = None,
    ) -> Ticket:
        return cls(
            requester_id=requester_id,
            subject=subject,
            body=body,
            priority=Priority(priority).value,
            tags=normalize_tags(tags or []),
            occurred_at=occurred_at,
        )

    # Commands

    def add_comment(self, author: Author, body: str, public: bool, occurred_at: datetime) -> None:
        self._refuse_if_closed()
        if not public and not author.is_agent:
            raise RuleViolation("only agents can write internal notes", code="internal_note")
        self._comment_added(author_id=author.id, body=body, public=public, occurred_at=occurred_at)
        if public and author.id == self.requester_id and self.status in REOPENED_BY_REQUESTER:
            self._status_changed(
                status=Status.OPEN.value, reason="requester_replied", occurred_at=occurred_at
            )

    def add_attachment(
        self,
        attachment_id: UUID,
        uploader: Author,
        name: str,
        size: int,
        content_type: str,
        sha256: str,
        occurred_at: datetime,
    ) -> None:
        self._refuse_if_closed()
        self._attachment_added(
            attachment_id=attachment_id,
            uploader_id=uploader.id,
            name=name,
            size=size,
            content_type=content_type,
            sha256=sha256,
            occurred_at=occurred_at,
        )

    def assign(self, assignee: Author, occurred_at: datetime) -> None:
        self._refuse_if_closed()
        if not assignee.is_agent:
            raise RuleViolation("tickets can only be assigned to agents", code="not_an_agent")
        if assignee.id == self.assignee_id:
            return
        self._assigned(assignee_id=assignee.id, occurred_at=occurred_at)
        if self.status is Status.NEW:
            self._status_changed(
                status=Status.OPEN.value, reason="assigned", occurred_at=occurred_at
            )

    def change_status(self, status: Status, occurred_at: datetime) -> None:
        self._refuse_if_closed()
        status = Status(status)
        if status is self.status:
            return
        if status is Status.NEW:
            raise RuleViolation("a ticket never goes back to new", code="invalid_transition")
        if status is Status.SOLVED and self.assignee_id is None:
            raise RuleViolation("a ticket needs an assignee to be solved", code="needs_assignee")
        if status is Status.CLOSED and self.status is not Status.SOLVED:
            raise RuleViolation("only a solved ticket can be closed", code="invalid_transition")
        self._status_changed(status=status.value, reason="requested", occurred_at=occurred_at)

    def record_content_shredded(self, reason: str, occurred_at: datetime) -> None:
        """Record that the vault destroyed this ticket's content key (retention)."""
        if not self.content_shredded:
            self._content_shredded(reason=reason, occurred_at=occurred_at)

    def change_priority(self, priority: Priority, occurred_at: datetime) -> None:
        self._refuse_if_closed()
        priority = Priority(priority)
        if priority is not self.priority:
            self._priority_changed(priority=priority.value, occurred_at=occurred_at)

    def change_tags(self, tags: list[str], occurred_at: datetime) -> None:
        self._refuse_if_closed()
        tags = normalize_tags(tags)
        if tags != self.tags:
            self._tags_changed(tags=tags, occurred_at=occurred_at)

    def apply_sla_policy(self, applied: AppliedPolicy | None, occurred_at: datetime) -> None:
        """Record the policy that now applies; nothing if it is the one already recorded."""
        if applied == self.sla_policy:
            return
        self._sla_policy_applied(
            policy_id=applied.policy_id if applied else None,
            policy_version=applied.policy_version if applied else None,
            schedule_id=applied.schedule_id if applied else None,
            schedule_version=applied.schedule_version if applied else None,
            occurred_at=occurred_at,
        )

    def mark_imported(self, source: str, occurred_at: datetime) -> None:
        """Close an import: every event so far came from `source`."""
        self._history_imported(through_version=self.version, source=source, occurred_at=occurred_at)

    def record_breach(
        self,
        metric: str,
        instance: int,
        due_at: datetime,
        policy_id: UUID,
        policy_version: int,
        occurred_at: datetime,
    ) -> bool:
        """Record a breach once per metric instance (closed tickets too: it is a fact)."""
        if (metric, instance) in self.sla_breaches:
            return False
        self._sla_breached(
            metric=metric,
            instance=instance,
            due_at=due_at,
            policy_id=policy_id,
            policy_version=policy_version,
            occurred_at=occurred_at,
        )
        return True

    # Events: they only set state.

    @event(CommentAdded)
    def _comment_added(
        self, author_id: UUID, body: Any, public: bool, occurred_at: datetime
    ) -> None:
        # The library bumps self.version after this method runs: the event's version is +1.
        self.comments.append(Comment(author_id, body, public, occurred_at, self.version + 1))
        self.updated_at = occurred_at

    @event(AttachmentAdded)
    def _attachment_added(
        self,
        attachment_id: UUID,
        uploader_id: UUID,
        name: Any,
        size: int,
        content_type: str,
        sha256: str,
        occurred_at: datetime,
    ) -> None:
        self.updated_at = occurred_at

    @event(Assigned)
    def _assigned(self, assignee_id: UUID, occurred_at: datetime) -> None:
        self.assignee_id = assignee_id
        self.updated_at = occurred_at

    @event(StatusChanged)
    def _status_changed(self, status: str, reason: str, occurred_at: datetime) -> None:
        self.status = Status(status)
        self.updated_at = occurred_at
        if self.status is Status.CLOSED:
            self.closed_at = occurred_at

    @event(ContentShredded)
    def _content_shredded(self, reason: str, occurred_at: datetime) -> None:
        self.content_shredded = True

    @event(PriorityChanged)
    def _priority_changed(self, priority: str, occurred_at: datetime) -> None:
        self.priority = Priority(priority)
        self.updated_at = occurred_at

    @event(TagsChanged)
    def _tags_changed(self, tags: list[str], occurred_at: datetime) -> None:
        self.tags = list(tags)
        self.updated_at = occurred_at

    @event(SlaPolicyApplied)
    def _sla_policy_applied(
        self,
        policy_id: UUID | None,
        policy_version: int | None,
        schedule_id: UUID | None,
        schedule_version: int | None,
        occurred_at: datetime,
    ) -> None:
        if policy_id is None or policy_version is None:
            self.sla_policy = None
        else:
            self.sla_policy = AppliedPolicy(
                policy_id, policy_version, schedule_id, schedule_version
            )

    @event(HistoryImported)
    def _history_imported(self, through_version: int, source: str, occurred_at: datetime) -> None:
        self.imported_through = through_version

    @event(SlaBreached)
    def _sla_breached(
        self,
        metric: str,
        instance: int,
        due_at: datetime,
        policy_id: UUID,
        policy_version: int,
        occurred_at: datetime,
    ) -> None:
        self.sla_breaches.add((metric, instance))

    def _refuse_if_closed(self) -> None:
        if self.status is Status.CLOSED:
            raise RuleViolation("a closed ticket is final", code="ticket_closed")


def normalize_tags(tags: list[str]) -> list[str]:
    """Tags are lower-case, stripped and unique, in the order first given."""
    seen: dict[str, None] = {}
    for tag in tags:
        cleaned = tag.strip().lower()
        if cleaned:
            seen.setdefault(cleaned, None)
    return list(seen)
