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
    "Rebuild all views",
    "Rebuild peak RSS",
    "Erase (crypto-shred)",
    "Erase with signed certificate",
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
        for column in ("ours", "baseline", "ratio"):
            assert isinstance(row[column], float), row
            assert math.isfinite(row[column]), row
        assert row["baseline"] > 0, row
        assert row["met"] in (True, False, None)
    assert list(tmp_path.iterdir()) == [out]  # every store lived in a temporary directory
