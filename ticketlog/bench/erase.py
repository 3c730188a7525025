"""Row 4: crypto-shred latency for a subject with few vs many events, and the certificate."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from uuid import UUID

from ticketlog.bench.fixtures import register_customer, runtime_in, seed_tickets
from ticketlog.bench.report import Row
from ticketlog.certificates import erase_with_certificate
from ticketlog.desk import HelpDesk
from ticketlog.progress import ProgressBar

RATIO_GOAL = 1.5
P50_GOAL_MS = 20.0
EVENTS_PER_TICKET = 100


def _subject(desk: HelpDesk, n: int, events: int, bar: Callable[[int, int], None] | None) -> UUID:
    """A customer with `events` events: registration, then tickets of up to 100 events."""
    user = register_customer(desk, n)
    if events <= EVENTS_PER_TICKET:
        seed_tickets(desk, user, 1, events - 1)
    else:
        seed_tickets(desk, user, events // EVENTS_PER_TICKET, EVENTS_PER_TICKET, bar)
    return user


def _offset(bar: ProgressBar, offset: int, total: int, done: int, _: int) -> None:
    bar(offset + done, total)


def _p50_ms(timings: list[float]) -> float:
    return statistics.median(timings) * 1000


def measure(small: int, large: int, samples: int, large_samples: int) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="bench-erase-") as tmp, runtime_in(Path(tmp)) as rt:
        desk = rt.desk
        bar = ProgressBar("erase: seeding")
        total = large * large_samples
        smalls = [_subject(desk, i, small, None) for i in range(samples)]
        larges = [
            _subject(desk, 1000 + i, large, partial(_offset, bar, i * large, total))
            for i in range(large_samples)
        ]
        bar.finish()
        certified = [_subject(desk, 2000 + i, small, None) for i in range(samples)]

        def timed(users: list[UUID], erase: Callable[[UUID], object]) -> dict[UUID, float]:
            out = {}
            for user in users:
                start = time.perf_counter()
                erase(user)
                out[user] = time.perf_counter() - start
                # The rows the destroyed KEK wrapped are emptied in the background; let that
                # finish untimed, so it does not slow the next sample.
                rt.vault.wait_purged()
            return out

        # Interleaved, so warm-up and drift fall on both sizes alike; each subject erased once
        # (erasing an erased subject again writes nothing and would flatter the baseline).
        step = max(len(smalls) // max(len(larges), 1), 1)
        order: list[UUID] = []
        for i, subject in enumerate(smalls):
            order.append(subject)
            if i % step == step - 1 and i // step < len(larges):
                order.append(larges[i // step])
        order += [u for u in larges if u not in order]
        took = timed(order, desk.erase_subject)
        small_ms = _p50_ms([took[u] for u in smalls])
        large_ms = _p50_ms([took[u] for u in larges])
        rt.runner.catch_up()  # the certificate catches views up itself; start level
        cert_ms = _p50_ms(list(timed(certified, lambda u: erase_with_certificate(rt, u)).values()))
    ratio_ok = large_ms / small_ms <= RATIO_GOAL
    return [
        Row(
            what=f"Erase (crypto-shred), {large:,} vs {small} events",
            ours=large_ms,
            baseline=small_ms,
            unit="ms p50",
            goal=f"ratio <= {RATIO_GOAL}, p50 < {P50_GOAL_MS:.0f} ms",
            met=ratio_ok and large_ms < P50_GOAL_MS and small_ms < P50_GOAL_MS,
            note=(
                f"desk.erase_subject; p50 of {large_samples} large and {samples} small subjects; "
                f"large subjects own {large // EVENTS_PER_TICKET} ticket keys (under one KEK; "
                "their rows are emptied by a background purge after the call, untimed)"
            ),
        ),
        Row(
            what=f"Erase with signed certificate, {small} events",
            ours=cert_ms,
            baseline=small_ms,
            unit="ms p50",
            goal="info",
            met=None,
            note=(
                "residue scan of every store before and after, signing, views caught up; "
                "baseline: the same erasure without a certificate"
            ),
        ),
    ]
