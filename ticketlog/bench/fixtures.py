"""Throwaway stores for the benchmarks: a real runtime, a bare library app, seeded tickets."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from domain.ticket import Author, Ticket
from domain.user import UserKind
from ticketlog.config import Settings
from ticketlog.desk import HelpDesk
from ticketlog.runtime import Runtime

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SUBJECT = "Printer on floor 3 prints only blank pages"
BODY = "Since this morning every job comes out blank; I tried two drivers. " * 3
# HTTP commands: each client comments on this many tickets in turn, so clients rarely race.
TICKETS_PER_CLIENT = 4
COMMENT = "Thanks, I restarted it and it still does the same thing after the update."


@contextmanager
def runtime_in(directory: Path) -> Iterator[Runtime]:
    runtime = Runtime.open(Settings(data_dir=directory), clock=lambda: NOW)
    try:
        yield runtime
    finally:
        runtime.close()


class PlainTicket(Aggregate):
    """The Ticket's shape without personal-field sealing: the baseline's aggregate."""

    class Opened(Aggregate.Created):
        requester_id: UUID
        subject: Any
        body: Any
        priority: str
        tags: list[str]
        occurred_at: datetime

    class CommentAdded(Aggregate.Event):
        author_id: UUID
        body: Any
        public: bool
        occurred_at: datetime

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
        self.subject = subject
        self.body = body
        self.priority = priority
        self.tags = tags
        self.comments: list[Any] = []

    @event(CommentAdded)
    def add_comment(self, author_id: UUID, body: Any, public: bool, occurred_at: datetime) -> None:
        self.comments.append(body)


def bare_application(directory: Path) -> Application[UUID]:
    """The library alone on the same kind of SQLite file store: no sealing, no leaves."""
    directory.mkdir(parents=True, exist_ok=True)
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(directory / "events.db"),
        "SQLITE_LOCK_TIMEOUT": "10",
    }
    return Application[UUID](env)


def register_customer(desk: HelpDesk, n: int = 0) -> UUID:
    return desk.register_user(UserKind.CUSTOMER, f"Customer {n}", f"customer{n}@example.com")


def seed_tickets(
    desk: HelpDesk,
    requester_id: UUID,
    tickets: int,
    events_per_ticket: int,
    progress: Callable[[int, int], None] | None = None,
    per_save: int = 50,
) -> int:
    """Tickets of `events_per_ticket` events each (opened + comments); returns events saved."""
    author = Author(requester_id, is_agent=False)
    saved = 0
    batch: list[Ticket] = []
    total = tickets * events_per_ticket
    for i in range(tickets):
        ticket = Ticket.open(requester_id, SUBJECT, BODY, NOW)
        for _ in range(events_per_ticket - 1):
            ticket.add_comment(author, COMMENT, True, NOW)
        batch.append(ticket)
        if len(batch) == per_save or i == tickets - 1:
            saved += len(desk.save(*batch))
            batch = []
            if progress:
                progress(saved, total)
    return saved


def per_second(count: int, run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return count / (time.perf_counter() - start)
