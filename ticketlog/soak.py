"""`ticketlog soak`: a bounded load run against a real `serve` on loopback, then a verdict.

It starts its own server on 127.0.0.1 with a fresh data directory, drives a mixed workload
from several clients for a few minutes, samples the server's memory, and after the load
compares the live views with views rebuilt from the log into a fresh store."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from api.tokens import Role
from projections.runner import ProjectionRunner
from projections.sql import Database
from projections.store import ViewStore
from ticketlog.config import Settings
from ticketlog.loopback import environment, free_port, stop_process, wait_until_answering
from ticketlog.progress import ProgressBar
from ticketlog.relay import event_log
from ticketlog.runtime import Runtime, all_views
from ticketlog.soak_workload import Client, Stats
from ticketlog.stream import SealedReader

MAX_MINUTES = 60.0
MAX_CLIENTS = 64
FLAT_WITHIN = 0.25  # last RSS within 25% of the value after warm-up counts as flat


@dataclass
class RssSamples:
    pid: int
    interval: float
    samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds, kB)

    def take(self, started: float) -> None:
        kb = _vm_rss_kb(self.pid)
        if kb is not None:
            self.samples.append((round(time.monotonic() - started, 1), kb))

    def run(self, started: float, stop: threading.Event) -> None:
        while not stop.wait(self.interval):
            self.take(started)

    def report(self, warm_up_s: float) -> dict[str, Any]:
        if not self.samples:
            return {"samples": [], "verdict": "unknown"}
        values = [kb for _, kb in self.samples]
        warm = next((kb for t, kb in self.samples if t >= warm_up_s), values[-1])
        flat = values[-1] <= warm * (1 + FLAT_WITHIN)
        return {
            "samples": [{"t_s": t, "rss_kb": kb} for t, kb in self.samples],
            "first_kb": values[0],
            "after_warm_up_kb": warm,
            "last_kb": values[-1],
            "max_kb": max(values),
            "verdict": "flat" if flat else "growing",
        }


def _vm_rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class Server:
    """`ticketlog serve` in a child process, on loopback, its log in a file."""

    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        env = environment(
            TICKETLOG_DATA_DIR=str(data_dir),
            TICKETLOG_RATE_LIMIT="0",  # the soak measures the service, not the limiter
            TICKETLOG_RETENTION_INTERVAL="0",
            TICKETLOG_LOG_FORMAT="json",
        )
        self.log_path = log_path
        self._log = log_path.open("wb")
        command = [sys.executable, "-m", "ticketlog.cli", "serve", "--host", "127.0.0.1"]
        self.proc = subprocess.Popen(  # noqa: S603 (our own module, fixed arguments)
            [*command, "--port", str(self.port)], env=env, stdout=self._log, stderr=self._log
        )

    def wait_ready(self) -> None:
        wait_until_answering(
            self.proc,
            f"{self.base_url}/healthz",
            interval=0.2,
            why_exited=lambda: f"see {self.log_path}",
        )

    def wait_views_caught_up(self, timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            health = httpx.get(f"{self.base_url}/healthz", timeout=10).json()
            if all(v["lag"] == 0 for v in health["views"]):
                return True
            time.sleep(0.5)
        return False

    def stop(self) -> None:
        stop_process(self.proc, timeout=30)
        self._log.close()


def _tokens(settings: Settings) -> dict[str, str]:
    runtime = Runtime.open(settings)
    try:
        return {
            role.value: runtime.tokens.create(role, f"soak {role.value}")[1]
            for role in (Role.SERVICE, Role.COMPLIANCE)
        }
    finally:
        runtime.close()


def _dump(db: Database) -> dict[str, list[bytes]]:
    tables = [t for view in all_views() for t in view.tables]
    with db.transaction(commit=False) as c:
        return {
            table: sorted(
                orjson.dumps(sorted(dict(row).items()), default=str)
                for row in c.execute(f"SELECT * FROM {table}").fetchall()
            )
            for table in tables
        }


def compare_views(settings: Settings, scratch: Path) -> dict[str, Any]:
    """The live views against the whole log applied once into a fresh store."""
    live = Database.sqlite(settings.views_path)
    try:
        live_rows = _dump(live)
    finally:
        live.close()
    store = ViewStore(Database.sqlite(scratch / "rebuilt-views.db"), all_views())
    try:
        with event_log(settings) as (recorder, _):
            runner = ProjectionRunner(recorder, SealedReader(), store)
            events = runner.rebuild()
        rebuilt_rows = _dump(store.db)
    finally:
        store.close()
    tables, differences = {}, []
    for table, rows in live_rows.items():
        rebuilt = rebuilt_rows[table]
        tables[table] = {"live": len(rows), "rebuilt": len(rebuilt)}
        if rows != rebuilt:
            only_live = len(set(rows) - set(rebuilt))
            only_rebuilt = len(set(rebuilt) - set(rows))
            differences.append(
                {"table": table, "only_live": only_live, "only_rebuilt": only_rebuilt}
            )
    return {
        "verdict": "identical" if not differences else "different",
        "events": events,
        "tables": tables,
        "differences": differences,
    }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1) if ordered else 0.0


def _requests_report(stats: Stats) -> dict[str, Any]:
    kinds = {
        kind: {
            "count": len(k.latencies_ms),
            "ok": k.ok,
            "expected_4xx": k.expected_4xx,
            "unexpected_4xx": k.unexpected_4xx,
            "server_errors": k.server_errors,
            "p50_ms": _percentile(k.latencies_ms, 0.50),
            "p99_ms": _percentile(k.latencies_ms, 0.99),
        }
        for kind, k in sorted(stats.kinds.items())
    }
    return {"total": sum(k["count"] for k in kinds.values()), "by_kind": kinds}


def _drive(server: Server, tokens: dict[str, str], clients: int, seconds: float) -> Stats:
    stats = Stats()
    gate = threading.Semaphore(1)
    deadline = time.monotonic() + seconds
    workers = [
        threading.Thread(
            target=Client(i, server.base_url, tokens, stats, gate).run,
            args=(deadline,),
            name=f"soak-client-{i}",
        )
        for i in range(clients)
    ]
    for w in workers:
        w.start()
    bar = ProgressBar("soak", unit="s")
    started = time.monotonic()
    while any(w.is_alive() for w in workers):
        requests, errors = stats.totals()
        bar.label = f"soak: {requests:,} requests, {errors:,} errors"
        bar(min(int(time.monotonic() - started), int(seconds)), int(seconds))
        time.sleep(0.5)
    bar(int(seconds), int(seconds))
    bar.finish()
    for w in workers:
        w.join()
    return stats


def run_soak(minutes: float, clients: int, data_dir: Path | None) -> dict[str, Any]:
    seconds = minutes * 60
    with tempfile.TemporaryDirectory(prefix="ticketlog-soak-") as tmp:
        scratch = Path(tmp)
        settings = Settings(data_dir=data_dir or scratch / "data")
        tokens = _tokens(settings)
        server = Server(settings.data_dir, scratch / "serve.log")
        try:
            server.wait_ready()
            rss = RssSamples(server.proc.pid, interval=min(5.0, max(1.0, seconds / 20)))
            started = time.monotonic()
            rss.take(started)
            stop = threading.Event()
            sampler = threading.Thread(target=rss.run, args=(started, stop), daemon=True)
            sampler.start()
            try:
                stats = _drive(server, tokens, clients, seconds)
            finally:
                stop.set()
                sampler.join()
            rss.take(started)
            caught_up = server.wait_views_caught_up()
        finally:
            server.stop()
        consistency = compare_views(settings, scratch)
        consistency["live_views_caught_up"] = caught_up
    requests = _requests_report(stats)
    by_kind = requests["by_kind"].values()
    errors = {
        "total": sum(k["unexpected_4xx"] + k["server_errors"] for k in by_kind),
        "server": sum(k["server_errors"] for k in by_kind),
        "unexpected_4xx": sum(k["unexpected_4xx"] for k in by_kind),
        "samples": stats.samples,
    }
    return {
        "minutes": minutes,
        "clients": clients,
        "requests": requests,
        "expected_4xx": sum(k["expected_4xx"] for k in by_kind),
        "errors": errors,
        "rss": rss.report(warm_up_s=seconds * 0.2),
        "consistency": consistency,
        "ok": errors["total"] == 0 and consistency["verdict"] == "identical" and caught_up,
    }


def render(report: dict[str, Any]) -> str:
    lines = [
        f"soak: {report['minutes']:g} min, {report['clients']} clients, "
        f"{report['requests']['total']:,} requests",
        "",
        f"{'kind':<16}{'count':>8}{'ok':>8}{'exp 4xx':>9}{'unexp 4xx':>10}{'5xx':>6}"
        f"{'p50 ms':>9}{'p99 ms':>9}",
    ]
    for kind, k in report["requests"]["by_kind"].items():
        lines.append(
            f"{kind:<16}{k['count']:>8,}{k['ok']:>8,}{k['expected_4xx']:>9,}"
            f"{k['unexpected_4xx']:>10,}{k['server_errors']:>6,}{k['p50_ms']:>9.1f}"
            f"{k['p99_ms']:>9.1f}"
        )
    errors, rss, views = report["errors"], report["rss"], report["consistency"]
    lines += [
        "",
        f"errors: {errors['total']} ({errors['server']} server, "
        f"{errors['unexpected_4xx']} unexpected 4xx); expected 4xx: {report['expected_4xx']}",
    ]
    for sample in errors["samples"]:
        lines.append(f"  {sample['kind']}: {sample['status']} {sample['code']}")
    if rss["samples"]:
        lines.append(
            f"server RSS: first {rss['first_kb'] / 1024:.0f} MB, after warm-up "
            f"{rss['after_warm_up_kb'] / 1024:.0f} MB, last {rss['last_kb'] / 1024:.0f} MB, "
            f"max {rss['max_kb'] / 1024:.0f} MB ({len(rss['samples'])} samples): {rss['verdict']}"
        )
    lines.append(
        f"views after the load vs rebuilt from {views['events']:,} events: {views['verdict']}"
    )
    for d in views["differences"]:
        lines.append(
            f"  {d['table']}: {d['only_live']} rows only live, {d['only_rebuilt']} only rebuilt"
        )
    lines.append("OK" if report["ok"] else "FAILED")
    return "\n".join(lines)


def _minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a number of minutes") from None
    if not 0 < value <= MAX_MINUTES:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most {MAX_MINUTES:g}")
    return value


def _clients(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_CLIENTS:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_CLIENTS}")
    return int(text)


def cmd_soak(args: argparse.Namespace, _: Settings) -> int:
    report = run_soak(args.minutes, args.clients, Path(args.data_dir) if args.data_dir else None)
    if args.json:
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(render(report))
    return 0 if report["ok"] else 1


def register(sub: Any) -> None:
    soak = sub.add_parser(
        "soak", help="load a private loopback server for N minutes; report errors, memory, views"
    )
    soak.add_argument("--minutes", type=_minutes, required=True, help="0.1 to 60, fractions ok")
    soak.add_argument("--clients", type=_clients, default=4, help="concurrent clients (1-64)")
    soak.add_argument("--data-dir", help="keep the data here (default: a temporary directory)")
    soak.add_argument("--json", action="store_true")
    soak.set_defaults(func=cmd_soak)
