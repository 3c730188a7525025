"""Row 1: events/s appended through HelpDesk vs a bare library application."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate

from crypto.master import MasterKey
from crypto.vault import KeyVault
from domain.ticket import Author, Ticket
from ticketlog.bench.fixtures import (
    BODY,
    COMMENT,
    NOW,
    SUBJECT,
    PlainTicket,
    bare_application,
    register_customer,
    runtime_in,
)
from ticketlog.bench.report import Row

GOAL = 0.80


def _timed_saves(save: Callable[..., Sequence[object]], batches: list[list[Aggregate]]) -> float:
    events = 0
    start = time.perf_counter()
    for batch in batches:
        events += len(save(*batch))
    return events / (time.perf_counter() - start)


def _batches(
    make: Callable[[], Aggregate], aggregates: int, per_save: int
) -> list[list[Aggregate]]:
    made = [make() for _ in range(aggregates)]
    return [made[i : i + per_save] for i in range(0, aggregates, per_save)]


def _ticket(author: Author) -> Aggregate:
    ticket = Ticket.open(author.id, SUBJECT, BODY, NOW)
    ticket.add_comment(author, COMMENT, True, NOW)
    return ticket


def _plain_ticket(requester: UUID) -> Aggregate:
    ticket = PlainTicket(requester, SUBJECT, BODY, "normal", [], NOW)
    ticket.add_comment(requester, COMMENT, True, NOW)
    return ticket


def measure(aggregates: int, per_save: int, rounds: int) -> Row:
    """Best of `rounds`: the machine is shared and noisy."""
    ours, bare = 0.0, 0.0
    for _ in range(rounds):
        with tempfile.TemporaryDirectory(prefix="bench-append-") as tmp:
            with runtime_in(Path(tmp) / "ours") as runtime:
                desk = runtime.desk
                ticket = partial(_ticket, Author(register_customer(desk), is_agent=False))
                ours = max(ours, _timed_saves(desk.save, _batches(ticket, aggregates, per_save)))
            app = bare_application(Path(tmp) / "bare")
            try:
                plain = partial(_plain_ticket, uuid4())
                bare = max(bare, _timed_saves(app.save, _batches(plain, aggregates, per_save)))
            finally:
                app.close()
    return Row(
        what=f"Append, {per_save} aggregate{'s' if per_save > 1 else ''} per save",
        ours=ours,
        baseline=bare,
        unit="events/s",
        goal=f"ratio >= {GOAL:.2f}",
        met=ours / bare >= GOAL,
        note=(
            f"{aggregates:,} tickets of 2 events, best of {rounds}; ours seals subject and body "
            "under a new per-ticket key and writes a Merkle leaf per event"
        ),
    )


def commit_ceiling(samples: int) -> Row:
    """What one save of one new ticket cannot go below: the vault's durable commit of its key
    beside the bare library's whole save, on the same disk, interleaved. Their ratio
    bare / (bare + vault) bounds the 1-per-save row while keys and events live apart."""
    vault_ms: list[float] = []
    bare_ms: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-ceiling-") as tmp:
        vault = KeyVault.open_sqlite(Path(tmp) / "keys.db", MasterKey.generate())
        app = bare_application(Path(tmp) / "bare")
        try:
            vault.key_for_writing("user:bench", "user:bench")
            for _ in range(samples):
                start = time.perf_counter()
                app.save(_plain_ticket(uuid4()))
                bare_ms.append((time.perf_counter() - start) * 1000)
                start = time.perf_counter()
                vault.key_for_writing(f"ticket:{uuid4()}", "user:bench")
                vault_ms.append((time.perf_counter() - start) * 1000)
        finally:
            app.close()
            vault.close()
    bare, key = statistics.median(bare_ms), statistics.median(vault_ms)
    return Row(
        what="Append ceiling, 1 per save: one key commit vs one bare save",
        ours=key,
        baseline=bare,
        unit="ms p50",
        goal="info",
        met=None,
        note=(
            f"the vault's commit (rollback journal, synchronous=EXTRA) beside a whole bare save "
            f"(WAL, synchronous=FULL); 1-per-save ratio cannot exceed {bare / (bare + key):.2f}"
        ),
    )
