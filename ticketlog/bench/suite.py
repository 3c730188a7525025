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

from ticketlog.bench import GROUPS, append, erase, http_commands, reads, rebuild, relay, sla_report
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
    relay_events: int
    sla_tickets: int
    http_seconds: float  # per command kind and server, after a warm-up of a fifth of it


QUICK = Sizes(200, 1_000, 1, 10, 2_000, 5, 3, 5_000, 20, 2_000, 1_000, 500, 2.0)
FULL = Sizes(1_000, 5_000, 2, 10, 100_000, 7, 2, 1_000_000, 200, 50_000, 20_000, 100_000, 15.0)
HTTP_CLIENTS = 32


def steps(sizes: Sizes) -> dict[str, list[Callable[[], list[Row]]]]:
    """The rows by group (`--only`), in the order they run."""
    groups: dict[str, list[Callable[[], list[Row]]]] = {
        "append": [
            lambda: [append.measure(sizes.append_single, 1, sizes.append_rounds)],
            lambda: [append.measure(sizes.append_batched, 100, sizes.append_rounds)],
            lambda: [append.key_ceiling(1, sizes.append_single // 4)],
            lambda: [append.key_ceiling(100, sizes.append_batched // 100)],
        ],
        "http": [
            lambda: http_commands.measure(HTTP_CLIENTS, sizes.http_seconds / 5, sizes.http_seconds)
        ],
        "rebuild": [lambda: rebuild.measure(sizes.rebuild_events)],
        "erase": [
            lambda: erase.measure(
                sizes.erase_small, sizes.erase_large, sizes.erase_samples, sizes.erase_large_samples
            )
        ],
        "relay": [lambda: [relay.measure(sizes.relay_events)]],
        "sla": [lambda: sla_report.measure(sizes.sla_tickets)],
        "audit": [lambda: [reads.audit_verify(sizes.audit_events)]],
        "keys": [lambda: [reads.key_cache(sizes.hot_tickets)]],
    }
    assert tuple(groups) == GROUPS
    return groups


def run(sizes: Sizes, only: list[str] | None = None) -> list[Row]:
    """Every row, or only the named groups (see `steps`)."""
    groups = steps(sizes)
    unknown = sorted(set(only or []) - set(groups))
    if unknown:
        raise ValueError(f"unknown benchmark rows {unknown}; known: {sorted(groups)}")
    chosen = [step for name, group in groups.items() if not only or name in only for step in group]
    rows: list[Row] = []
    for i, step in enumerate(chosen, 1):
        print(f"bench: step {i}/{len(chosen)}", file=sys.stderr, flush=True)
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


def main(quick: bool, json_path: str | None, only: str | None = None) -> int:
    try:
        rows = run(QUICK if quick else FULL, only.split(",") if only else None)
    except ValueError as e:
        print(f"ticketlog bench: {e}", file=sys.stderr)
        return 2
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
