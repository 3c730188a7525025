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


def key_ceiling(per_save: int, samples: int) -> Row:
    """What a save of `per_save` new tickets cannot go below: the vault creating their keys
    (one per ticket, in one durable vault transaction) beside the bare library's whole save of
    as many tickets, on the same disk, interleaved. bare / (bare + keys) bounds the append row
    of that size while each ticket has its own key and keys live apart from the events."""
    vault_ms: list[float] = []
    bare_ms: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-ceiling-") as tmp:
        vault = KeyVault.open_sqlite(Path(tmp) / "keys.db", MasterKey.generate())
        app = bare_application(Path(tmp) / "bare")
        try:
            vault.key_for_writing("user:bench", "user:bench")
            for _ in range(samples):
                tickets = [_plain_ticket(uuid4()) for _ in range(per_save)]
                start = time.perf_counter()
                app.save(*tickets)
                bare_ms.append((time.perf_counter() - start) * 1000)
                scopes = [(f"ticket:{uuid4()}", "user:bench") for _ in range(per_save)]
                start = time.perf_counter()
                vault.keys_for_writing(scopes)
                vault_ms.append((time.perf_counter() - start) * 1000)
        finally:
            app.close()
            vault.close()
    bare, keys = statistics.median(bare_ms), statistics.median(vault_ms)
    plural = "s" if per_save > 1 else ""
    return Row(
        what=(
            f"Append ceiling, {per_save} per save: the vault creating {per_save} ticket "
            f"key{plural} vs a bare save of {per_save} ticket{plural}"
        ),
        ours=keys,
        baseline=bare,
        unit="ms p50",
        goal="info",
        met=None,
        note=(
            f"one vault transaction (WAL, synchronous=FULL, secure_delete) beside "
            f"the bare save (WAL, synchronous=FULL), nothing else of ours: the {per_save}-per-"
            f"save append ratio cannot exceed {bare / (bare + keys):.2f} while each ticket has "
            "its own key in the vault"
        ),
    )
