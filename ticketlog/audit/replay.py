"""Point in time: rebuild tickets from the event store as they stood at T.

By recorded time (`as_of`: the event's `timestamp`, when the system stored it) or by business
time (`as_of_occurred`: the event's `occurred_at`, which imports set to when it happened).
Events are applied in version order up to the first one after T; personal fields stay sealed
until a response opens them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol

from domain.ticket import Ticket
from ticketlog.desk import HelpDesk


@dataclass(frozen=True)
class PointInTime:
    at: datetime
    business: bool = False  # occurred_at instead of the recorded timestamp

    @classmethod
    def of(cls, at: datetime, business: bool = False) -> PointInTime:
        return cls(at if at.tzinfo else at.replace(tzinfo=UTC), business)

    def includes(self, event: Any) -> bool:
        when = getattr(event, "occurred_at", None) if self.business else event.timestamp
        return when is not None and when <= self.at


def fold(events: Iterable[DomainEventProtocol[UUID]], when: PointInTime) -> Ticket | None:
    aggregate: Any = None
    for event in events:
        if not isinstance(event, Ticket.Event | Ticket.Created):
            return None  # the id names something other than a ticket
        if not when.includes(event):
            break
        aggregate = event.mutate(aggregate)
    return aggregate if isinstance(aggregate, Ticket) else None


def ticket_as_of(desk: HelpDesk, ticket_id: UUID, when: PointInTime) -> Ticket | None:
    """The ticket as it stood at `when`; None if it did not exist yet (or is no ticket)."""
    return fold(desk.sealed.event_store.get(ticket_id), when)


def ticket_row(ticket: Ticket) -> dict[str, Any]:
    """The shape the ticket view has (personal fields still sealed), for `api.present`."""
    return {
        "id": ticket.id,
        "requester_id": ticket.requester_id,
        "assignee_id": ticket.assignee_id,
        "status": ticket.status.value,
        "priority": ticket.priority.value,
        "subject": ticket.subject,
        "body": ticket.body,
        "tags": list(ticket.tags),
        "comments": [
            {
                "version": c.version,
                "author_id": c.author_id,
                "body": c.body,
                "public": c.public,
                "created_at": c.created_at,
            }
            for c in ticket.comments
        ],
        "created_at": ticket.created_at,
        "updated_at": ticket.updated_at,
        "version": ticket.version,
    }


def summary_row(ticket: Ticket) -> dict[str, Any]:
    return {
        "id": str(ticket.id),
        "status": ticket.status.value,
        "priority": ticket.priority.value,
        "assignee_id": str(ticket.assignee_id) if ticket.assignee_id else None,
        "comments": len(ticket.comments),
        "version": ticket.version,
        "updated_at": ticket.updated_at.isoformat(),
    }


def all_tickets_as_of(desk: HelpDesk, when: PointInTime) -> list[Ticket]:
    """Every ticket at `when`, replayed from the whole log (sealed: no key is used)."""
    tickets: dict[UUID | str, Any] = {}
    stopped: set[UUID | str] = set()
    position = 0
    while True:
        batch = desk.recorder.select_notifications(
            start=position, limit=1000, inclusive_of_start=False
        )
        if not batch:
            break
        position = batch[-1].id
        for notification in batch:
            if not notification.topic.startswith("domain.ticket:"):
                continue
            tid = notification.originator_id
            if tid in stopped:
                continue
            event = desk.sealing_mapper.to_domain_event(notification)
            if not when.includes(event):
                stopped.add(tid)  # later versions come after T too
                continue
            assert isinstance(event, Ticket.Event | Ticket.Created)
            tickets[tid] = event.mutate(tickets.get(tid))
    return sorted(
        (t for t in tickets.values() if isinstance(t, Ticket)), key=lambda t: t.created_at
    )


def status_counts(tickets: Iterable[Ticket]) -> dict[str, int]:
    return dict(Counter(t.status.value for t in tickets))
