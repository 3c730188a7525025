"""The benchmark suite keeps working: `ticketlog bench --quick` runs and reports every row.

Speed is not asserted (no timed tests); only that each row is measured and is a number.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROWS = (
    "Append, 1 aggregate per save",
    "Append, 100 aggregates per save",
    "HTTP POST /v1/tickets, 32 clients",
    "HTTP POST /v1/tickets/{id}/comments, 32 clients",
    "Append ceiling, 1 per save",
    "Append ceiling, 100 per save",
    "HTTP POST /v1/tickets, 32 clients, ceiling: the same route calls in process",
    "HTTP POST /v1/tickets, 32 clients, ceiling: the command alone in process",
    "HTTP POST /v1/tickets/{id}/comments, 32 clients, ceiling: the same route calls in process",
    "HTTP POST /v1/tickets/{id}/comments, 32 clients, ceiling: the command alone in process",
    "Rebuild all views",
    "Rebuild peak RSS",
    "Erase (crypto-shred)",
    "Erase with signed certificate",
    "Kafka relay",
    "SLA report, last 30 days",
    "SLA report over all",
    "SLA weekly chart (SVG) over all",
    "Audit verify",
    "Key-vault lookups per 1,000 events read",
)


def test_quick_bench_prints_the_table_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "ticketlog.cli", "bench", "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[0]
    for column in ("what", "ours", "baseline", "ratio", "goal", "met"):
        assert column in header
    data = json.loads(out.read_text())
    assert data["quick"] is True
    assert data["machine"]["python"]
    whats = [row["what"] for row in data["rows"]]
    for name in ROWS:
        assert any(w.startswith(name) for w in whats), name
        assert name in result.stdout
    for row in data["rows"]:
        assert isinstance(row["ours"], float), row
        assert math.isfinite(row["ours"]), row
        assert row["met"] in (True, False, None)
        if row["baseline"] is None:  # an absolute goal (the SLA report's latency), or none
            assert row["ratio"] is None, row
            if row["goal"] == "info":
                assert row["met"] is None, row
            else:
                assert row["goal"].startswith("<"), row
                assert row["met"] in (True, False), row
            continue
        for column in ("baseline", "ratio"):
            assert isinstance(row[column], float), row
            assert math.isfinite(row[column]), row
        assert row["baseline"] > 0, row
    assert list(tmp_path.iterdir()) == [out]  # every store lived in a temporary directory


def test_only_runs_the_named_rows_and_refuses_unknown_names(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    command = [sys.executable, "-m", "ticketlog.cli", "bench", "--quick", "--json", str(out)]
    result = subprocess.run(
        [*command, "--only", "erase"], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    whats = [row["what"] for row in json.loads(out.read_text())["rows"]]
    assert [w.split(",")[0] for w in whats] == [
        "Erase (crypto-shred)",
        "Erase with signed certificate",
    ]

    wrong = subprocess.run(
        [*command, "--only", "erase,nonsense"], capture_output=True, text=True, cwd=tmp_path
    )
    assert wrong.returncode == 2
    assert "nonsense" in wrong.stderr
