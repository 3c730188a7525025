"""The application service: the help desk's use cases on top of the event store.

Commands load aggregates *sealed* (personal fields left encrypted) because no rule needs
plaintext; only history and export open personal fields, and only when asked.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, Repository
from eventsourcing.domain import Aggregate, DomainEventProtocol
from eventsourcing.persistence import EventStore, IntegrityError, Mapper
from eventsourcing.utils import Environment

from crypto.mapper import PersonalDataMapper
from crypto.vault import KeyVault
from domain.errors import NotFound, RuleViolation
from domain.notifications import Preferences
from domain.ticket import Author, Priority, Status, Ticket
from domain.user import User, UserKind

A = TypeVar("A", bound=Aggregate)
Clock = Callable[[], datetime]

# Concurrent commands on one aggregate race for the next version; the loser re-runs against
# the new state after a short random pause (so racing writers spread out).
COMMAND_ATTEMPTS = 30
RETRY_PAUSE = 0.004


@dataclass(frozen=True)
class ErasureReport:
    subject_id: UUID
    already_erased: bool
    keys_destroyed_now: list[str]
    keys_destroyed: list[str]
    erased_at: datetime


class HelpDesk(Application[UUID]):
    """Users and tickets, stored with every personal field sealed under its subjects' keys."""

    name = "ticketlog"

    def __init__(self, vault: KeyVault, env: dict[str, str], clock: Clock | None = None) -> None:
        self.vault = vault
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        super().__init__(env)
        self.sealing_mapper = self.personal_mapper.sealing()
        self.sealed = Repository(
            event_store=EventStore(mapper=self.sealing_mapper, recorder=self.recorder)
        )

    @property
    def personal_mapper(self) -> PersonalDataMapper:
        assert isinstance(self.mapper, PersonalDataMapper)
        return self.mapper

    def construct_env(self, name: str, env: Any = None) -> Environment:
        # Only our own settings: a stray IS_SNAPSHOTTING_ENABLED or AGGREGATE_CACHE_MAXSIZE in
        # the process environment would keep plaintext aggregates in snapshots or memory.
        return Environment(name, dict(env or {}))

    def construct_mapper(self) -> Mapper[UUID]:
        return PersonalDataMapper(self.construct_transcoder(), self.vault)

    # Users

    def register_user(
        self,
        kind: UserKind,
        name: str,
        email: str,
        phone: str | None = None,
        organization: str | None = None,
    ) -> UUID:
        user = User(
            kind=UserKind(kind).value,
            name=name,
            email=email,
            phone=phone,
            organization=organization,
            occurred_at=self.clock(),
        )
        self.save(user)
        return user.id

    def update_user(self, user_id: UUID, changes: dict[str, Any]) -> None:
        def command() -> User:
            user = self._get(User, user_id)
            user.update_profile(changes, self.clock())
            return user

        self._run(command)

    def set_notification_preferences(self, user_id: UUID, preferences: Preferences) -> None:
        def command() -> User:
            user = self._get(User, user_id)
            user.set_notification_preferences(preferences, self.clock())
            return user

        self._run(command)

    def erase_subject(self, user_id: UUID) -> ErasureReport:
        """Crypto-shred a person: destroy their keys first, then record it in their stream.

        Keys go first so that a crash in between leaves the data unreadable; repeating the
        erasure then records the event. Cost does not grow with the person's events.
        """
        user = self._get(User, user_id)
        scope = f"user:{user_id}"
        destruction = self.vault.destroy_owned_by(scope)
        if user.erased:
            return ErasureReport(
                user_id,
                True,
                destruction.destroyed_now,
                destruction.destroyed_total,
                user.erased_at,
            )

        def command() -> User:
            fresh = self._get(User, user_id)
            if not fresh.erased:
                fresh.erase(len(destruction.destroyed_total), self.clock())
            return fresh

        erased = self._run(command)
        return ErasureReport(
            user_id,
            False,
            destruction.destroyed_now,
            destruction.destroyed_total,
            erased.erased_at,
        )

    # Tickets

    def open_ticket(
        self,
        requester_id: UUID,
        subject: str,
        body: str,
        priority: Priority = Priority.NORMAL,
        tags: list[str] | None = None,
    ) -> UUID:
        requester = self._live_user(requester_id, role="requester")
        ticket = Ticket.open(
            requester_id=requester.id,
            subject=subject,
            body=body,
            priority=priority,
            tags=tags,
            occurred_at=self.clock(),
        )
        self.save(ticket)
        return ticket.id

    def add_comment(self, ticket_id: UUID, author_id: UUID, body: str, public: bool) -> int:
        author = self._author(author_id, role="author")

        def command() -> Ticket:
            ticket = self._get(Ticket, ticket_id)
            ticket.add_comment(author, body, public, self.clock())
            return ticket

        ticket = self._run(command)
        return ticket.comments[-1].version

    def check_attachable(self, ticket_id: UUID) -> None:
        """Refuse an upload before storing anything: unknown or closed tickets take no files."""
        ticket = self._get(Ticket, ticket_id)
        if ticket.status is Status.CLOSED:
            raise RuleViolation("a closed ticket is final", code="ticket_closed")

    def add_attachment(
        self,
        ticket_id: UUID,
        attachment_id: UUID,
        uploader_id: UUID,
        name: str,
        size: int,
        content_type: str,
        sha256: str,
    ) -> None:
        uploader = self._author(uploader_id, role="uploader")

        def command() -> Ticket:
            ticket = self._get(Ticket, ticket_id)
            ticket.add_attachment(
                attachment_id, uploader, name, size, content_type, sha256, self.clock()
            )
            return ticket

        self._run(command)

    def assign(self, ticket_id: UUID, assignee_id: UUID) -> None:
        assignee = self._author(assignee_id, role="assignee")

        def command() -> Ticket:
            ticket = self._get(Ticket, ticket_id)
            ticket.assign(assignee, self.clock())
            return ticket

        self._run(command)

    def change_status(self, ticket_id: UUID, status: Status) -> None:
        def command() -> Ticket:
            ticket = self._get(Ticket, ticket_id)
            ticket.change_status(status, self.clock())
            return ticket

        self._run(command)

    def history(self, aggregate_id: UUID) -> list[DomainEventProtocol[UUID]]:
        """Every event of one aggregate, personal fields opened (or ERASED)."""
        events = list(self.events.get(aggregate_id))
        if not events:
            raise NotFound(f"nothing with id {aggregate_id}")
        return events

    def ticket_history(self, ticket_id: UUID) -> list[DomainEventProtocol[UUID]]:
        events = self.history(ticket_id)
        if not isinstance(events[0], Ticket.Opened):
            raise NotFound(f"no ticket with id {ticket_id}")
        return events

    # Helpers

    def _get(self, cls: type[A], aggregate_id: UUID) -> A:
        try:
            aggregate: Aggregate = self.sealed.get(aggregate_id)
        except AggregateNotFoundError:
            raise NotFound(f"no {cls.__name__.lower()} with id {aggregate_id}") from None
        if not isinstance(aggregate, cls):
            raise NotFound(f"no {cls.__name__.lower()} with id {aggregate_id}")
        return aggregate

    def _live_user(self, user_id: UUID, role: str) -> User:
        try:
            user = self._get(User, user_id)
        except NotFound:
            raise NotFound(f"{role} {user_id} does not exist") from None
        if user.erased:
            raise RuleViolation(f"{role} {user_id} has been erased", code="subject_erased")
        return user

    def _author(self, user_id: UUID, role: str) -> Author:
        user = self._live_user(user_id, role)
        return Author(user.id, user.is_agent)

    def _run(self, command: Callable[[], A]) -> A:
        """Run a load-decide-save command, again on a version conflict."""
        for attempt in range(COMMAND_ATTEMPTS):
            aggregate = command()
            try:
                self.save(aggregate)
            except IntegrityError:
                if attempt == COMMAND_ATTEMPTS - 1:
                    raise
                time.sleep(random.uniform(0, RETRY_PAUSE * (attempt + 1)))  # noqa: S311
                continue
            return aggregate
        raise AssertionError("unreachable")
