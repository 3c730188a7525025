"""Row 3: rebuilding every view vs reading and decoding the same log with the bare library.

Each size is measured in a child process of its own, so its peak RSS (ru_maxrss) is the
rebuild's alone, not the seeding's or another size's.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from uuid import UUID

from eventsourcing.persistence import Mapper

from ticketlog.bench.fixtures import register_customer, runtime_in, seed_tickets
from ticketlog.bench.report import Row
from ticketlog.progress import ProgressBar
from ticketlog.runtime import Runtime

GOAL = 0.40
RSS_GOAL = 1.25  # peak memory at the larger size over the smaller: flat means close to 1
EVENTS_PER_TICKET = 10
PAGE = 500


def _offset(bar: ProgressBar, offset: int, total: int, done: int, _: int) -> None:
    bar(offset + done, total)


def seed(directory: Path, events: int) -> None:
    with runtime_in(directory) as rt:
        bar = ProgressBar(f"rebuild: seeding {events:,} events")
        customers = [register_customer(rt.desk, i) for i in range(20)]
        tickets = max(events // EVENTS_PER_TICKET, 1)
        done = 0
        for i, customer in enumerate(customers):
            share = tickets // len(customers) + (1 if i < tickets % len(customers) else 0)
            start = done
            done += seed_tickets(
                rt.desk, customer, share, EVENTS_PER_TICKET, partial(_offset, bar, start, events)
            )
        bar.finish()


def _decode_bare(rt: Runtime) -> tuple[int, float]:
    """Read and decode the whole log with the library's own Mapper: (events, seconds)."""
    bare: Mapper[UUID] = Mapper(transcoder=rt.desk.construct_transcoder())
    recorder = rt.desk.recorder
    start = time.perf_counter()
    position, decoded = 0, 0
    while batch := recorder.select_notifications(position, PAGE, inclusive_of_start=False):
        for notification in batch:
            bare.to_domain_event(notification)
        decoded += len(batch)
        position = batch[-1].id
    return decoded, time.perf_counter() - start


def _child(directory: Path) -> dict[str, float]:
    """In the child: a bare read and a rebuild of the same log, twice, interleaved.

    The faster of each counts, so a noisy neighbour slowing one pass flatters neither side
    (one pass each moved the ratio between 0.36 and 0.47 on the same code).
    """
    with runtime_in(directory) as rt:
        bare, ours, events = [], [], 0
        for _ in range(2):
            decoded, seconds = _decode_bare(rt)
            bare.append(seconds)
            start = time.perf_counter()
            events = rt.runner.rebuild()
            ours.append(time.perf_counter() - start)
        rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "events": events,
        "ours": events / min(ours),
        "baseline": decoded / min(bare),
        "rss_mb": rss_kb / 1024,
    }


def _in_child(directory: Path) -> dict[str, float]:
    out = subprocess.run(  # noqa: S603 (our own module, our own temp dir)
        [sys.executable, "-m", "ticketlog.bench.rebuild", str(directory)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


def measure(events: int) -> list[Row]:
    small_events = max(events // 4, 1)
    with tempfile.TemporaryDirectory(prefix="bench-rebuild-") as tmp:
        small_dir, large_dir = Path(tmp) / "small", Path(tmp) / "large"
        seed(small_dir, small_events)
        seed(large_dir, events)
        small = _in_child(small_dir)
        large = _in_child(large_dir)
    return [
        Row(
            what=f"Rebuild all views, {int(large['events']):,} events",
            ours=large["ours"],
            baseline=large["baseline"],
            unit="events/s",
            goal=f"ratio >= {GOAL:.2f}",
            met=large["ours"] / large["baseline"] >= GOAL,
            note="baseline: select_notifications pages decoded by the library's own Mapper",
        ),
        Row(
            what=f"Rebuild peak RSS, {int(large['events']):,} vs {int(small['events']):,} events",
            ours=large["rss_mb"],
            baseline=small["rss_mb"],
            unit="MB",
            goal=f"ratio <= {RSS_GOAL}",
            met=large["rss_mb"] / small["rss_mb"] <= RSS_GOAL,
            note="ru_maxrss of a child process that reads the log bare and rebuilds, nothing else",
        ),
    ]


if __name__ == "__main__":
    print(json.dumps(_child(Path(sys.argv[1]))))
