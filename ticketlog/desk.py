"""The application service: the help desk's use cases on top of the event store.

Commands load aggregates *sealed* (personal fields left encrypted) because no rule needs
plaintext; only history and export open personal fields, and only when asked.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    ProcessingEvent,
    Repository,
)
from eventsourcing.domain import (
    Aggregate,
    DomainEventProtocol,
    MutableOrImmutableAggregate,
)
from eventsourcing.persistence import EventStore, IntegrityError, JSONTranscoder, Mapper, Recording
from eventsourcing.utils import Environment

from crypto.blind_index import EmailIndex, Reservation
from crypto.errors import HeldByLaw
from crypto.mapper import PersonalDataMapper
from crypto.transcoder import FastJSONTranscoder
from crypto.vault import KeyVault
from domain.access import AccessRecord
from domain.errors import NotFound, RuleViolation, VersionMismatch
from domain.notifications import Preferences
from domain.organization import Organization
from domain.retention import RetentionRule, RetentionSchedule
from domain.sla.policy import (
    CATALOG_ID,
    AppliedPolicy,
    SlaCatalog,
    SlaPolicy,
    SlaSchedule,
    checked_schedule,
)
from domain.ticket import Author, Priority, Status, Ticket
from domain.user import User, UserKind
from ticketlog.group_commit import GroupCommitter
from ticketlog.receipts import CommandAlreadyStored, CommandReceipt, pending_receipt
from ticketlog.sealed_cache import SealedCache

log = logging.getLogger(__name__)

A = TypeVar("A", bound=Aggregate)
Clock = Callable[[], datetime]

# Concurrent commands on one aggregate race for the next version; the loser re-runs against
# the new state after a short random pause (so racing writers spread out).
COMMAND_ATTEMPTS = 30
RETRY_PAUSE = 0.004


class _Unset:
    pass


UNSET: Any = _Unset()


@dataclass(frozen=True)
class ImportStep:
    """One event of an imported ticket's history."""

    kind: str  # comment | assign | status | priority | tags
    occurred_at: datetime
    author_id: UUID | None = None
    body: str | None = None
    public: bool = True
    assignee_id: UUID | None = None
    status: Status | None = None
    priority: Priority | None = None
    tags: list[str] | None = None


@dataclass(frozen=True)
class TicketImport:
    requester_id: UUID
    subject: str
    body: str
    created_at: datetime
    priority: Priority = Priority.NORMAL
    tags: list[str] = field(default_factory=list)
    events: list[ImportStep] = field(default_factory=list)
    source: str = "import"


class ImportRefused(RuleViolation):
    """An imported history breaks a rule at one of its events."""

    def __init__(self, index: int, cause: RuleViolation | NotFound) -> None:
        super().__init__(f"event {index}: {cause.message}", code=cause.code)
        self.index = index


@dataclass(frozen=True)
class ErasureReport:
    subject_id: UUID
    already_erased: bool
    keys_destroyed_now: list[str]
    keys_destroyed: list[str]
    erased_at: datetime
    position: int | None  # notification id of the SubjectErased event (None if already erased)


@dataclass(frozen=True)
class AnonymizationReport:
    subject_id: UUID
    already_anonymized: bool
    key_destroyed: str
    anonymized_at: datetime
    position: int | None


# How old an address reservation whose user was never stored must be before another user may
# take it over: longer than any request runs.
ABANDONED_AFTER = timedelta(minutes=1)

# Set by the API for each request: what this request stored, so that a storage error after a
# command was stored can say so (the client must not repeat it) instead of "nothing stored".
stored_in_request: ContextVar[list[int] | None] = ContextVar("stored_in_request", default=None)


class HelpDesk(Application[UUID]):
    """Users and tickets, stored with every personal field sealed under its subjects' keys."""

    name = "ticketlog"

    def __init__(self, vault: KeyVault, env: dict[str, str], clock: Clock | None = None) -> None:
        self.vault = vault
        self.emails = EmailIndex(vault)
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        super().__init__(env)
        self.committer = GroupCommitter(self._record)
        self.sealing_mapper = self.personal_mapper.sealing()
        self.sealed = Repository(
            event_store=EventStore(mapper=self.sealing_mapper, recorder=self.recorder)
        )
        self.loaded = SealedCache(self.sealed.event_store, _project)

    @property
    def personal_mapper(self) -> PersonalDataMapper:
        assert isinstance(self.mapper, PersonalDataMapper)
        return self.mapper

    def construct_env(self, name: str, env: Any = None) -> Environment:
        # Only our own settings: a stray IS_SNAPSHOTTING_ENABLED or AGGREGATE_CACHE_MAXSIZE in
        # the process environment would keep plaintext aggregates in snapshots or memory.
        return Environment(name, dict(env or {}))

    def construct_mapper(self) -> Mapper[UUID]:
        transcoder = self.construct_transcoder()
        assert isinstance(transcoder, JSONTranscoder)
        return PersonalDataMapper(FastJSONTranscoder.like(transcoder), self.vault)

    def save(
        self,
        *objs: MutableOrImmutableAggregate[UUID] | DomainEventProtocol[UUID] | None,
        **kwargs: Any,
    ) -> list[Recording[UUID]]:
        """Store the objects' new events durably, in one transaction with concurrent saves
        (group commit): the same all-or-nothing save for these objects, one fsync for many."""
        if kwargs:
            recordings = super().save(*objs, **kwargs)
        else:
            work = _collected(objs)
            if not work.events:
                return []
            recordings = self._record_with_receipt(work)
            self._take_snapshots(work)
            self._notify(recordings)
        stored = stored_in_request.get()
        if stored is not None:  # what this request stored, whatever fails after (views_lagging)
            stored.extend(r.notification.id for r in recordings)
        return recordings

    def _record_with_receipt(self, work: ProcessingEvent[UUID]) -> list[Recording[UUID]]:
        """Group-commit the work, with the request's command receipt if it still owes one.

        The receipt goes first, so the last recording stays the command's own event."""
        pending = pending_receipt.get()
        if pending is None or pending.stored:
            return self.committer.record(work)
        receipt = CommandReceipt(key=pending.key)
        with_receipt: ProcessingEvent[UUID] = ProcessingEvent()
        with_receipt.collect_events(receipt, *work.events)
        try:
            recordings = self.committer.record(with_receipt)
        except IntegrityError:
            if self.recorder.select_events(receipt.id, limit=1):
                raise CommandAlreadyStored() from None
            raise  # a version conflict of the command's own aggregate: it re-runs
        pending.stored = True
        return recordings[1:]

    def _record(self, processing_event: ProcessingEvent[UUID]) -> list[Recording[UUID]]:
        # Every key the save needs, created in one vault commit before any event is written.
        with self.personal_mapper.keys_prepared(processing_event.events):
            return super()._record(processing_event)

    # Users

    def register_user(
        self,
        kind: UserKind,
        name: str,
        email: str,
        phone: str | None = None,
        organization: str | None = None,
        organization_id: UUID | None = None,
    ) -> UUID:
        if organization_id is not None:
            self.get(Organization, organization_id)
        user = User(
            kind=UserKind(kind).value,
            name=name,
            email=email,
            phone=phone,
            organization=organization,
            organization_id=organization_id,
            occurred_at=self.clock(),
        )
        with self._email_reserved(user.id, email):
            self.save(user)
        return user.id

    def update_user(
        self,
        user_id: UUID,
        changes: dict[str, Any],
        organization_id: Any = UNSET,
        expected_version: int | None = None,
    ) -> None:
        if organization_id is not UNSET and organization_id is not None:
            self.get(Organization, organization_id)

        def command() -> User:
            user = self.get(User, user_id)
            _expect_version(user, expected_version)
            now = self.clock()
            user.update_profile(changes, now)
            if organization_id is not UNSET:
                user.link_organization(organization_id, now)
            return user

        email = changes.get("email")
        if not isinstance(email, str):
            self.run(command)
            return
        # An unknown id (404) or a stale If-Match (412) reserves nothing.
        _expect_version(self.get(User, user_id), expected_version)
        with self._email_reserved(user_id, email) as digest:
            self.run(command)
        try:
            self.emails.keep_only(f"user:{user_id}", digest)
        except Exception as e:  # stored already; `keys index-emails` frees the old address
            log.warning("old email digest of user %s not released: %s", user_id, type(e).__name__)

    @contextmanager
    def _email_reserved(self, user_id: UUID, email: str) -> Iterator[bytes]:
        """Hold the address's blind-index digest for the user while their events are saved.

        Refused (409 email_taken) before anything is stored if another user holds it. If the
        save fails, a reservation made here is released unless the log shows the address
        stored after all, so nothing is lost and nothing stays stuck."""
        owner = f"user:{user_id}"
        digest = self.emails.digest(email)
        reservation = self.emails.reserve(digest, owner)
        if reservation is Reservation.TAKEN:
            if not self._reclaimed(digest, owner):
                raise RuleViolation("another user has this email address", code="email_taken")
            reservation = Reservation.NEW  # taken over here: released too if the save fails
        try:
            yield digest
        except BaseException:
            if reservation is Reservation.NEW and not self._stored_email_is(user_id, digest):
                try:
                    self.emails.release(digest, owner)
                except Exception as e:  # the save's own error matters more; pruned later
                    log.warning("email digest of %s not released: %s", user_id, type(e).__name__)
            raise

    def _reclaimed(self, digest: bytes, owner: str) -> bool:
        """Take over a digest left by a registration or change that never got stored (the
        server died between reserving and saving): its holder's stored address is another.
        Only once its reservation is older than a request can run, so a registration still
        under way keeps its address."""
        holder = self.emails.owner_of(digest)
        if holder is None:  # released meanwhile: reserve again
            return self.emails.reserve(digest, owner) is not Reservation.TAKEN
        try:
            holder_id = UUID(holder.removeprefix("user:"))
        except ValueError:
            return False
        if self._stored_email_is(holder_id, digest):
            return False
        before = datetime.now(UTC) - ABANDONED_AFTER  # the vault keeps wall-clock time
        return self.emails.take_over(digest, holder, owner, before)

    def _stored_email_is(self, user_id: UUID, digest: bytes) -> bool:
        """Whether the user's stored address has this digest; True when the log cannot say
        (keeping a reservation errs on the safe side; `keys index-emails` prunes it later)."""
        try:
            return self.stored_email_digest(user_id) == digest
        except Exception:
            return True

    def stored_email_digest(self, user_id: UUID) -> bytes | None:
        """The blind-index digest of the user's stored address; None for no such user, or one
        erased, anonymized or without an address."""
        try:
            user: Aggregate = self.repository.get(user_id)  # opened: the digest needs it
        except AggregateNotFoundError:
            return None
        if not isinstance(user, User) or user.erased or user.anonymized:
            return None
        # ERASED (a destroyed profile key) is no string: the address is gone.
        return self.emails.digest(user.email) if isinstance(user.email, str) else None

    def set_notification_preferences(self, user_id: UUID, preferences: Preferences) -> None:
        def command() -> User:
            user = self.get(User, user_id)
            user.set_notification_preferences(preferences, self.clock())
            return user

        self.run(command)

    # Tickets

    def open_ticket(
        self,
        requester_id: UUID,
        subject: str,
        body: str,
        priority: Priority = Priority.NORMAL,
        tags: list[str] | None = None,
    ) -> UUID:
        requester = self._actor(requester_id, role="requester")
        ticket = Ticket.open(
            requester_id=requester.id,
            subject=subject,
            body=body,
            priority=priority,
            tags=tags,
            occurred_at=self.clock(),
        )
        ticket.apply_sla_policy(self.sla_policy_for(ticket), ticket.created_at)
        self.save(ticket)
        return ticket.id

    def add_comment(
        self,
        ticket_id: UUID,
        author_id: UUID,
        body: str,
        public: bool,
        expected_version: int | None = None,
    ) -> int:
        author = self._author(author_id, role="author")

        def command() -> Ticket:
            ticket = self._ticket_for_processing(ticket_id, expected_version)
            ticket.add_comment(author, body, public, self.clock())
            return ticket

        ticket = self.run(command)
        return ticket.comments[-1].version

    def check_attachable(self, ticket_id: UUID, expected_version: int | None = None) -> None:
        """Refuse an upload before storing anything: unknown or closed tickets take no files."""
        ticket = self.get(Ticket, ticket_id)
        _expect_version(ticket, expected_version)
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
        expected_version: int | None = None,
    ) -> None:
        uploader = self._author(uploader_id, role="uploader")

        def command() -> Ticket:
            ticket = self.get(Ticket, ticket_id)
            _expect_version(ticket, expected_version)
            ticket.add_attachment(
                attachment_id, uploader, name, size, content_type, sha256, self.clock()
            )
            return ticket

        self.run(command)

    def assign(
        self, ticket_id: UUID, assignee_id: UUID, expected_version: int | None = None
    ) -> None:
        assignee = self._author(assignee_id, role="assignee")

        def command() -> Ticket:
            ticket = self._ticket_for_processing(ticket_id, expected_version)
            ticket.assign(assignee, self.clock())
            return ticket

        self.run(command)

    def change_status(
        self, ticket_id: UUID, status: Status, expected_version: int | None = None
    ) -> None:
        def command() -> Ticket:
            ticket = self._ticket_for_processing(ticket_id, expected_version)
            ticket.change_status(status, self.clock())
            return ticket

        self.run(command)

    def change_priority(
        self, ticket_id: UUID, priority: Priority, expected_version: int | None = None
    ) -> None:
        def command() -> Ticket:
            ticket = self._ticket_for_processing(ticket_id, expected_version)
            ticket.change_priority(priority, self.clock())
            ticket.apply_sla_policy(self.sla_policy_for(ticket), ticket.updated_at)
            return ticket

        self.run(command)

    def change_tags(
        self, ticket_id: UUID, tags: list[str], expected_version: int | None = None
    ) -> None:
        def command() -> Ticket:
            ticket = self._ticket_for_processing(ticket_id, expected_version)
            ticket.change_tags(tags, self.clock())
            ticket.apply_sla_policy(self.sla_policy_for(ticket), ticket.updated_at)
            return ticket

        self.run(command)

    def record_breach(
        self,
        ticket_id: UUID,
        metric: str,
        instance: int,
        due_at: datetime,
        policy_id: UUID,
        policy_version: int,
    ) -> bool:
        """Append `SlaBreached` once per metric instance; False if it was already recorded."""
        recorded = False

        def command() -> Ticket:
            nonlocal recorded
            ticket = self.get(Ticket, ticket_id)
            recorded = ticket.record_breach(
                metric, instance, due_at, policy_id, policy_version, self.clock()
            )
            return ticket

        self.run(command)
        return recorded

    # SLA schedules and policies

    def define_schedule(self, name: str, definition: dict[str, Any]) -> UUID:
        schedule = SlaSchedule.define(name, checked_schedule(definition), self.clock())
        self.save(schedule)
        return schedule.id

    def redefine_schedule(self, schedule_id: UUID, name: str, definition: dict[str, Any]) -> None:
        checked = checked_schedule(definition)

        def command() -> SlaSchedule:
            schedule = self.get(SlaSchedule, schedule_id)
            schedule.redefine(name, checked, self.clock())
            return schedule

        self.run(command)

    def schedule(self, schedule_id: UUID) -> SlaSchedule:
        return self.get(SlaSchedule, schedule_id)

    def define_policy(
        self,
        name: str,
        filter_: dict[str, Any],
        targets: dict[str, Any],
        schedule_id: UUID | None,
    ) -> UUID:
        self._refuse_unknown_schedule(schedule_id)
        for organization_id in filter_.get("organizations") or ():
            self.get(Organization, UUID(str(organization_id)))

        def command() -> Sequence[Aggregate]:
            # A fresh policy per attempt: a failed save has already taken its pending events.
            policy = SlaPolicy.define(name, filter_, targets, schedule_id, self.clock())
            catalog = self._catalog() or SlaCatalog(occurred_at=self.clock())
            catalog.list_policy(policy.id, self.clock())
            return [policy, catalog]

        policy, _ = self._run_together(command)
        return policy.id

    def redefine_policy(
        self,
        policy_id: UUID,
        name: str,
        filter_: dict[str, Any],
        targets: dict[str, Any],
        schedule_id: UUID | None,
    ) -> None:
        self._refuse_unknown_schedule(schedule_id)
        for organization_id in filter_.get("organizations") or ():
            self.get(Organization, UUID(str(organization_id)))

        def command() -> SlaPolicy:
            policy = self.get(SlaPolicy, policy_id)
            policy.redefine(name, filter_, targets, schedule_id, self.clock())
            return policy

        self.run(command)

    def reorder_policies(self, policy_ids: list[UUID]) -> None:
        def command() -> SlaCatalog:
            catalog = self._catalog()
            if catalog is None:
                raise RuleViolation("there are no policies to reorder", code="invalid_policy_order")
            catalog.reorder(policy_ids, self.clock())
            return catalog

        self.run(command)

    def policies(self) -> list[SlaPolicy]:
        """Every policy, in the order they are tried."""
        catalog = self._catalog()
        if catalog is None:
            return []
        return [self.get(SlaPolicy, pid) for pid in catalog.policy_ids]

    def _catalog(self) -> SlaCatalog | None:
        try:
            return self.get(SlaCatalog, CATALOG_ID)
        except NotFound:
            return None

    def _refuse_unknown_schedule(self, schedule_id: UUID | None) -> None:
        if schedule_id is None:
            return
        try:
            self.get(SlaSchedule, schedule_id)
        except NotFound:
            raise RuleViolation(
                f"no schedule with id {schedule_id}", code="unknown_schedule"
            ) from None

    def sla_policy_for(self, ticket: Ticket) -> AppliedPolicy | None:
        """The first policy, by position, whose filter matches the ticket as it is now."""
        policies = self.policies()
        organization = None
        if any(p.policy_filter.organizations for p in policies):
            org_id = self.get(User, ticket.requester_id).organization_id
            organization = str(org_id) if org_id else None
        for policy in policies:
            if policy.policy_filter.matches(ticket.priority.value, ticket.tags, organization):
                schedule_version = (
                    self.get(SlaSchedule, policy.schedule_id).version
                    if policy.schedule_id
                    else None
                )
                return AppliedPolicy(
                    policy.id, policy.version, policy.schedule_id, schedule_version
                )
        return None

    # Import from another help desk

    def import_ticket(self, ticket: TicketImport) -> UUID:
        """A ticket with its whole history, each event at its own `occurred_at`, through the
        same rules as live commands; saved in one transaction, or not at all.

        Raises ImportRefused (with the failing event's index) when a step breaks a rule.
        """
        requester = self._live_user(ticket.requester_id, role="requester")
        aggregate = Ticket.open(
            requester_id=requester.id,
            subject=ticket.subject,
            body=ticket.body,
            priority=ticket.priority,
            tags=ticket.tags,
            occurred_at=ticket.created_at,
        )
        aggregate.apply_sla_policy(self.sla_policy_for(aggregate), ticket.created_at)
        for index, step in enumerate(ticket.events):
            try:
                self._import_step(aggregate, step)
            except (RuleViolation, NotFound) as e:
                raise ImportRefused(index, e) from None
        aggregate.mark_imported(ticket.source, self.clock())
        self.save(aggregate)
        return aggregate.id

    def _import_step(self, ticket: Ticket, step: ImportStep) -> None:
        at = step.occurred_at
        if step.kind == "comment":
            assert step.author_id is not None
            assert step.body is not None
            author = self._author(step.author_id, role="author")
            ticket.add_comment(author, step.body, step.public, at)
        elif step.kind == "assign":
            assert step.assignee_id is not None
            ticket.assign(self._author(step.assignee_id, role="assignee"), at)
        elif step.kind == "status":
            assert step.status is not None
            ticket.change_status(step.status, at)
        elif step.kind == "priority":
            assert step.priority is not None
            ticket.change_priority(step.priority, at)
            ticket.apply_sla_policy(self.sla_policy_for(ticket), at)
        elif step.kind == "tags":
            ticket.change_tags(list(step.tags or []), at)
            ticket.apply_sla_policy(self.sla_policy_for(ticket), at)
        else:
            raise RuleViolation(f"unknown import step {step.kind!r}", code="invalid_import")

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

    # Erasure and anonymization

    def erase_subject(self, user_id: UUID, reason: str = "request") -> ErasureReport:
        """Crypto-shred a person: destroy their keys first, then record it in their stream.

        Keys go first so that a crash in between leaves the data unreadable; repeating the
        erasure then records the event. Cost does not grow with the person's events. A legal
        hold refuses it, checked by the vault in the same transaction as the destruction.
        """
        user = self.get(User, user_id)
        if not user.erased:
            self._refuse_if_held(user, "erasure")
        destruction = self._destroy(
            user_id, "erasure", self.vault.destroy_owned_by, f"user:{user_id}"
        )
        if user.erased:
            return ErasureReport(
                user_id,
                True,
                destruction.destroyed_now,
                destruction.destroyed_total,
                user.erased_at,
                None,
            )

        def command() -> User:
            fresh = self.get(User, user_id)
            if not fresh.erased:
                fresh.erase(len(destruction.destroyed_total), self.clock(), reason)
            return fresh

        erased, position = self.run_recorded(command)
        return ErasureReport(
            user_id,
            False,
            destruction.destroyed_now,
            destruction.destroyed_total,
            erased.erased_at,
            position,
        )

    def anonymize_subject(self, user_id: UUID, reason: str = "request") -> AnonymizationReport:
        """Destroy only the profile key: the person's tickets stay readable, pseudonymously."""
        user = self.get(User, user_id)
        scope = f"user:{user_id}"
        if user.erased:
            raise RuleViolation("this person has already been erased", code="subject_erased")
        if user.anonymized:
            return AnonymizationReport(user_id, True, scope, user.anonymized_at, None)
        self._refuse_if_held(user, "anonymization")
        self._destroy(user_id, "anonymization", self.vault.destroy_scope, scope)

        def command() -> User:
            fresh = self.get(User, user_id)
            fresh.anonymize(reason, self.clock())
            return fresh

        anonymized, position = self.run_recorded(command)
        return AnonymizationReport(user_id, False, scope, anonymized.anonymized_at, position)

    def shred_ticket_content(self, ticket_id: UUID, reason: str) -> bool:
        """Destroy one ticket's content key (retention). False if it was already shredded."""
        ticket = self.get(Ticket, ticket_id)
        requester = self.get(User, ticket.requester_id)
        self._refuse_if_held(requester, f"shredding ticket {ticket_id}")
        destroyed: bool = self._destroy(
            requester.id,
            f"shredding ticket {ticket_id}",
            self.vault.destroy_scope,
            f"ticket:{ticket_id}",
        )
        if ticket.content_shredded:
            return destroyed  # recorded before; True only if a restored vault had the key again

        def command() -> Ticket:
            fresh = self.get(Ticket, ticket_id)
            fresh.record_content_shredded(reason, self.clock())
            return fresh

        self.run(command)
        return True

    def _destroy(self, user_id: UUID, action: str, destroy: Callable[[str], Any], arg: str) -> Any:
        try:
            return destroy(arg)
        except HeldByLaw:
            self._record_blocked(user_id, action)
            raise RuleViolation(
                f"a legal hold forbids {action} until it is released", code="legal_hold"
            ) from None

    def _refuse_if_held(self, user: User, action: str) -> None:
        if user.on_legal_hold:
            self._record_blocked(user.id, action)
            user.ensure_not_held(action)

    def _record_blocked(self, user_id: UUID, action: str) -> None:
        def command() -> User:
            user = self.get(User, user_id)
            user.record_blocked(action, self.clock())
            return user

        self.run(command)

    # Restriction, consent, legal hold

    def restrict(self, user_id: UUID) -> None:
        self._user_command(user_id, lambda u, now: u.restrict(now))

    def unrestrict(self, user_id: UUID) -> None:
        self._user_command(user_id, lambda u, now: u.unrestrict(now))

    def record_consent(
        self, user_id: UUID, purpose: str, policy_version: str, granted: bool
    ) -> None:
        self._user_command(
            user_id, lambda u, now: u.record_consent(purpose, policy_version, granted, now)
        )

    def place_hold(self, user_id: UUID, reason: str) -> None:
        # The vault learns of the hold first: from then on it refuses to destroy their keys.
        user = self.get(User, user_id)
        if user.erased:
            raise RuleViolation("this person has been erased", code="subject_erased")
        self.vault.set_hold(f"user:{user_id}", True)
        self._user_command(user_id, lambda u, now: u.place_hold(reason, now))

    def release_hold(self, user_id: UUID) -> None:
        user = self.get(User, user_id)
        if not user.on_legal_hold:
            raise RuleViolation("there is no legal hold to release", code="not_on_hold")
        self.vault.set_hold(f"user:{user_id}", False)
        self._user_command(user_id, lambda u, now: u.release_hold(now))

    def _user_command(self, user_id: UUID, change: Callable[[User, datetime], None]) -> None:
        def command() -> User:
            user = self.get(User, user_id)
            change(user, self.clock())
            return user

        self.run(command)

    # Organizations and retention

    def register_organization(self, name: str) -> UUID:
        organization = Organization(name=name, occurred_at=self.clock())
        self.save(organization)
        return organization.id

    def end_contract(
        self,
        organization_id: UUID,
        ended_at: datetime | None = None,
        expected_version: int | None = None,
    ) -> None:
        def command() -> Organization:
            organization = self.get(Organization, organization_id)
            _expect_version(organization, expected_version)
            now = self.clock()
            organization.end_contract(ended_at or now, now)
            return organization

        self.run(command)

    def retention_rules(self) -> list[RetentionRule]:
        try:
            schedule = self.get(RetentionSchedule, RetentionSchedule.ID)
        except NotFound:
            return []
        return list(schedule.rules)

    def set_retention_rules(self, rules: list[RetentionRule]) -> None:
        def command() -> RetentionSchedule:
            try:
                schedule = self.get(RetentionSchedule, RetentionSchedule.ID)
            except NotFound:
                schedule = RetentionSchedule(occurred_at=self.clock())
            schedule.replace_rules(rules, self.clock())
            return schedule

        self.run(command)

    # Staff activity

    def record_access(
        self, token_id: str, token_name: str, role: str, endpoint: str, subjects: list[UUID]
    ) -> None:
        record = AccessRecord(
            token_id=token_id,
            token_name=token_name,
            role=role,
            endpoint=endpoint,
            subject_ids=sorted(subjects),
            occurred_at=self.clock(),
        )
        self.save(record)

    # Helpers

    def get(self, cls: type[A], aggregate_id: UUID) -> A:
        """An aggregate with personal fields left sealed; NotFound if absent or not a `cls`."""
        try:
            aggregate = self.loaded.get(aggregate_id)
        except AggregateNotFoundError:
            raise NotFound(f"no {cls.__name__.lower()} with id {aggregate_id}") from None
        if not isinstance(aggregate, cls):
            raise NotFound(f"no {cls.__name__.lower()} with id {aggregate_id}")
        return aggregate

    def _live_user(self, user_id: UUID, role: str) -> User:
        try:
            user = self.get(User, user_id)
        except NotFound:
            raise NotFound(f"{role} {user_id} does not exist") from None
        if user.erased:
            raise RuleViolation(f"{role} {user_id} has been erased", code="subject_erased")
        return user

    def _actor(self, user_id: UUID, role: str) -> User:
        user = self._live_user(user_id, role)
        user.ensure_can_act()
        return user

    def _author(self, user_id: UUID, role: str) -> Author:
        user = self._actor(user_id, role)
        return Author(user.id, user.is_agent)

    def _ticket_for_processing(self, ticket_id: UUID, expected_version: int | None) -> Ticket:
        """A ticket whose requester has not restricted processing, at the version the client
        expects (if it names one)."""
        ticket = self.get(Ticket, ticket_id)
        _expect_version(ticket, expected_version)
        self.get(User, ticket.requester_id).ensure_not_restricted()
        return ticket

    def run(self, command: Callable[[], A]) -> A:
        """Run a load-decide-save command, again on a version conflict.

        A command with an expected version checks it against the aggregate it loads, so a
        re-run after a lost race sees the winner's version and refuses (VersionMismatch)."""
        return self.run_recorded(command)[0]

    def run_recorded(self, command: Callable[[], A]) -> tuple[A, int | None]:
        """Like `run`, also giving the log position of the last event saved (None if none)."""
        for attempt in range(COMMAND_ATTEMPTS):
            aggregate = command()
            try:
                recordings = self.save(aggregate)
            except IntegrityError:
                if attempt == COMMAND_ATTEMPTS - 1:
                    raise
                time.sleep(random.uniform(0, RETRY_PAUSE * (attempt + 1)))  # noqa: S311
                continue
            position = recordings[-1].notification.id if recordings else None
            return aggregate, position
        raise AssertionError("unreachable")

    def _run_together(self, command: Callable[[], Sequence[Aggregate]]) -> Sequence[Aggregate]:
        """Like `_run`, for commands that change several aggregates in one transaction."""
        for attempt in range(COMMAND_ATTEMPTS):
            aggregates = command()
            try:
                self.save(*aggregates)
            except IntegrityError:
                if attempt == COMMAND_ATTEMPTS - 1:
                    raise
                time.sleep(random.uniform(0, RETRY_PAUSE * (attempt + 1)))  # noqa: S311
                continue
            return aggregates
        raise AssertionError("unreachable")


def _collected(objs: Iterable[Any]) -> ProcessingEvent[UUID]:
    """`ProcessingEvent.collect_events` without its two runtime-Protocol `isinstance` checks
    per object (tens of microseconds each) for the aggregates commands save."""
    work: ProcessingEvent[UUID] = ProcessingEvent()
    for obj in objs:
        if isinstance(obj, Aggregate):
            work.events.extend(obj.collect_events())
            work.aggregates[obj.id] = obj
        elif obj is not None:
            work.collect_events(obj)
    return work


def _project(aggregate: Any, events: Iterable[Any]) -> Any:
    """The library's `project_aggregate` without its per-event `isinstance` check against a
    runtime Protocol, which costs as much as decoding the event (half of loading a ticket)."""
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


def _expect_version(aggregate: Aggregate, expected: int | None) -> None:
    """Optimistic concurrency for clients: refuse unless the aggregate is at `expected`."""
    if expected is not None and aggregate.version != expected:
        raise VersionMismatch(expected, aggregate.version)
