"""Runs every row at a chosen size and prints one table (or writes it as JSON)."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ticketlog.bench import append, erase, reads, rebuild
from ticketlog.bench.report import Row, render


@dataclass(frozen=True)
class Sizes:
    append_single: int  # tickets saved one per save
    append_batched: int  # tickets saved 100 per save
    append_rounds: int
    erase_small: int
    erase_large: int
    erase_samples: int
    erase_large_samples: int
    rebuild_events: int
    hot_tickets: int
    audit_events: int


QUICK = Sizes(200, 1_000, 1, 10, 2_000, 5, 3, 5_000, 20, 2_000)
FULL = Sizes(1_000, 5_000, 2, 10, 100_000, 7, 2, 100_000, 200, 50_000)


def run(sizes: Sizes) -> list[Row]:
    rows: list[Row] = []
    steps: list[Callable[[], list[Row]]] = [
        lambda: [append.measure(sizes.append_single, 1, sizes.append_rounds)],
        lambda: [append.measure(sizes.append_batched, 100, sizes.append_rounds)],
        lambda: rebuild.measure(sizes.rebuild_events),
        lambda: erase.measure(
            sizes.erase_small, sizes.erase_large, sizes.erase_samples, sizes.erase_large_samples
        ),
        lambda: [reads.audit_verify(sizes.audit_events)],
        lambda: [reads.key_cache(sizes.hot_tickets)],
    ]
    for i, step in enumerate(steps, 1):
        print(f"bench: step {i}/{len(steps)}", file=sys.stderr, flush=True)
        rows += step()
    return rows


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def main(quick: bool, json_path: str | None) -> int:
    rows = run(QUICK if quick else FULL)
    about = machine()
    print(render(rows))
    print(
        f"\n{about['cpus']} CPUs, {about['cpu']}, Python {about['python']}, {about['date']}"
        + (" (--quick: sizes too small for the goals to mean much)" if quick else "")
    )
    if json_path:
        data = {"quick": quick, "machine": about, "rows": [r.to_dict() for r in rows]}
        Path(json_path).write_text(json.dumps(data, indent=2) + "\n")
    return 0
