"""Rows 7 and 8: audit verification vs raw SHA-256, and key-vault lookups on the read path."""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path
from uuid import UUID

from domain.ticket import Priority, Ticket
from ticketlog.audit.leaves import leaf_data
from ticketlog.audit.signing import load_signer
from ticketlog.audit.verify import verify_log
from ticketlog.bench.fixtures import BODY, NOW, SUBJECT, register_customer, runtime_in
from ticketlog.bench.report import Row
from ticketlog.runtime import Runtime

LOOKUP_GOAL = 5.0
COMMENTS = 9


def _hot_set(rt: Runtime, tickets: int) -> list[UUID]:
    customers = [register_customer(rt.desk, i) for i in range(max(tickets // 5, 1))]
    ids = []
    for i in range(tickets):
        customer = customers[i % len(customers)]
        ids.append(rt.desk.open_ticket(customer, SUBJECT, BODY))
        for _ in range(COMMENTS):
            rt.desk.add_comment(ids[-1], customer, "It happened again this morning.", True)
    return ids


def _lookups_per_1000(rt: Runtime, ticket_ids: list[UUID]) -> float:
    before, events = rt.vault.lookups, 0
    for ticket_id in ticket_ids:
        events += len(rt.desk.ticket_history(ticket_id))
    return (rt.vault.lookups - before) * 1000 / events


def key_cache(tickets: int) -> Row:
    with tempfile.TemporaryDirectory(prefix="bench-keys-") as tmp:
        with runtime_in(Path(tmp)) as rt:
            ids = _hot_set(rt, tickets)
        with runtime_in(Path(tmp)) as rt:  # a new process's vault: an empty key cache
            cold = _lookups_per_1000(rt, ids)
            hot = min(_lookups_per_1000(rt, ids) for _ in range(3))
    return Row(
        what=f"Key-vault lookups per 1,000 events read, {tickets} hot tickets",
        ours=hot,
        baseline=cold,
        unit="lookups",
        goal=f"< {LOOKUP_GOAL:.0f} (hot)",
        met=hot < LOOKUP_GOAL,
        note="desk.ticket_history opens every personal field; baseline is the first, cold pass",
    )


def audit_verify(events: int) -> Row:
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp, runtime_in(Path(tmp)) as rt:
        requester = register_customer(rt.desk)
        batch = []
        for _ in range(events // 2):
            ticket = Ticket.open(requester, SUBJECT, BODY, NOW)
            ticket.change_priority(Priority.HIGH, NOW)
            batch.append(ticket)
        for i in range(0, len(batch), 100):
            rt.desk.save(*batch[i : i + 100])
        rt.checkpointer().make()
        assert rt.audit is not None
        verifier = load_signer(rt.settings, may_create=False).verifier
        start = time.perf_counter()
        report = verify_log(rt.audit, verifier, rt.settings.log_origin, [])
        ours = report.events / (time.perf_counter() - start)
        if not report.ok:
            raise RuntimeError("audit verify failed on a fresh store")
        start = time.perf_counter()
        hashed = 0
        for row in rt.audit.events():
            hashlib.sha256(
                leaf_data(row.notification_id, row.originator_id, row.version, row.topic, row.state)
            ).digest()
            hashed += 1
        baseline = hashed / (time.perf_counter() - start)
    return Row(
        what=f"Audit verify, {hashed:,} events",
        ours=ours,
        baseline=baseline,
        unit="events/s",
        goal="info",
        met=None,
        note="baseline reads the same rows and SHA-256es the same leaf bytes, no tree",
    )
