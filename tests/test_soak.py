"""`ticketlog soak` as an operator runs it: a real server, real clients, a JSON verdict."""

from __future__ import annotations

import json
import subprocess

from tests.test_cli import CLI


def test_a_short_soak_has_no_errors_and_views_match_a_rebuild() -> None:
    result = subprocess.run(
        [*CLI, "soak", "--minutes", "0.1", "--clients", "4", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["errors"]["total"] == 0
    assert report["requests"]["total"] > 0
    kinds = report["requests"]["by_kind"]
    assert {"register", "open"} <= kinds.keys()
    assert all(k["p99_ms"] >= k["p50_ms"] > 0 for k in kinds.values())
    assert report["consistency"]["verdict"] == "identical"
    assert report["consistency"]["tables"]["view_tickets"]["live"] > 0
    rss = report["rss"]
    assert len(rss["samples"]) >= 2
    assert rss["max_kb"] >= rss["last_kb"] > 0
    assert rss["verdict"] in ("flat", "growing")
    assert "soak:" in result.stderr  # progress while it ran


def test_soak_refuses_unbounded_runs() -> None:
    for args in (["--minutes", "0"], ["--minutes", "61"], ["--minutes", "1", "--clients", "0"]):
        result = subprocess.run(
            [*CLI, "soak", *args], capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 2
        assert "must be" in result.stderr
