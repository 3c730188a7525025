"""Row 2: commands over HTTP, `ticketlog serve` vs a bare FastAPI app, under concurrent clients.

Both servers run as their own processes on loopback, one uvicorn worker each with the same
settings; the load generator is a third process (`ticketlog.bench.load`). Ours runs with rate
limiting off and a fresh data directory; every command is a real, durable one.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from api.tokens import Role
from ticketlog.bench import in_process
from ticketlog.bench.fixtures import BODY, COMMENT, SUBJECT, TICKETS_PER_CLIENT
from ticketlog.bench.report import Row
from ticketlog.config import Settings
from ticketlog.loopback import environment, free_port, stop_process, wait_until_answering
from ticketlog.runtime import Runtime

GOAL = 0.50


@dataclass(frozen=True)
class Server:
    base_url: str
    port: int
    token: str
    pid: int  # for attaching a profiler


@dataclass(frozen=True)
class Load:
    per_second: float
    p50_ms: float
    p99_ms: float
    statuses: dict[str, int]
    cpu_share: float  # the load generator's CPU use, in cores
    server_cpu_ms: float  # the server's CPU time per answered request (nan without /proc)

    @property
    def failures(self) -> int:
        return sum(n for status, n in self.statuses.items() if not status.startswith("2"))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, all threads (Linux /proc; nan elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def _process(args: list[str], env: dict[str, str], port: int, token: str) -> Iterator[Server]:
    # Logs go to a file: a pipe nobody reads fills up and then blocks the server.
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=log)  # noqa: S603
        base_url = f"http://127.0.0.1:{port}"

        def log_tail() -> str:
            log.seek(0)
            return log.read().decode(errors="replace")[-2000:]

        try:
            # /openapi.json: the bare app has no /healthz.
            wait_until_answering(proc, f"{base_url}/openapi.json", why_exited=log_tail)
            yield Server(base_url, port, token, proc.pid)
        finally:
            stop_process(proc)


@contextmanager
def ticketlog_server(data_dir: Path) -> Iterator[Server]:
    runtime = Runtime.open(Settings(data_dir=data_dir))
    try:
        token = runtime.tokens.create(Role.SERVICE, "bench")[1]
    finally:
        runtime.close()
    port = free_port()
    env = environment(TICKETLOG_DATA_DIR=str(data_dir), TICKETLOG_RATE_LIMIT="0")
    args = [sys.executable, "-m", "ticketlog.cli", "serve", "--port", str(port)]
    with _process(args, env, port, token) as server:
        yield server


@contextmanager
def bare_server() -> Iterator[Server]:
    port = free_port()
    args = [sys.executable, "-m", "ticketlog.bench.bare_app", str(port)]
    with _process(args, environment(), port, "bare") as server:
        yield server


@dataclass(frozen=True)
class Scene:
    """Per client: its requester and the tickets it comments on."""

    requesters: list[str]
    tickets: list[list[str]]


def seed(server: Server, clients: int) -> Scene:
    headers = {"Authorization": f"Bearer {server.token}"}
    requesters: list[str] = []
    tickets: list[list[str]] = []
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as http:
        for i in range(clients):
            person = {"kind": "customer", "name": f"Bench {i}", "email": f"b{i}@example.com"}
            r = http.post("/v1/users", json=person)
            r.raise_for_status()
            requester = str(r.json()["id"])
            mine = []
            for _ in range(TICKETS_PER_CLIENT):
                t = http.post("/v1/tickets", json=_ticket_body(requester))
                t.raise_for_status()
                mine.append(str(t.json()["id"]))
            requesters.append(requester)
            tickets.append(mine)
    return Scene(requesters, tickets)


def _ticket_body(requester: str) -> dict[str, Any]:
    return {"requester_id": requester, "subject": SUBJECT, "body": BODY, "tags": ["bench"]}


def _plans(scene: Scene) -> dict[str, list[list[tuple[str, str]]]]:
    opens = [[("/v1/tickets", json.dumps(_ticket_body(r)))] for r in scene.requesters]
    comments = [
        [(f"/v1/tickets/{t}/comments", json.dumps({"author_id": r, "body": COMMENT})) for t in mine]
        for r, mine in zip(scene.requesters, scene.tickets, strict=True)
    ]
    return {"POST /v1/tickets": opens, "POST /v1/tickets/{id}/comments": comments}


def drive(
    server: Server, clients: list[list[tuple[str, str]]], warmup: float, seconds: float
) -> Load:
    plan = {
        "host": "127.0.0.1",
        "port": server.port,
        "token": server.token,
        "warmup": warmup,
        "seconds": seconds,
        "clients": clients,
    }
    cpu_before = _cpu_seconds(server.pid)
    done = subprocess.run(
        [sys.executable, "-m", "ticketlog.bench.load"],
        input=json.dumps(plan),
        capture_output=True,
        text=True,
        check=True,
        timeout=warmup + seconds + 120,
    )
    cpu_ms = (_cpu_seconds(server.pid) - cpu_before) * 1000
    out = json.loads(done.stdout)
    answered = sum(out["statuses"].values()) or 1
    # The server's CPU over warm-up and window, per request answered in the window: an
    # estimate that holds when other processes take CPU away from the server.
    window_share = float(out["seconds"]) / (float(out["seconds"]) + warmup)
    return Load(
        out["per_second"],
        out["p50_ms"],
        out["p99_ms"],
        out["statuses"],
        out["cpu_share"],
        cpu_ms * window_share / answered,
    )


def measure(clients: int, warmup: float, seconds: float) -> list[Row]:
    with (
        tempfile.TemporaryDirectory(prefix="bench-http-") as tmp,
        ticketlog_server(Path(tmp) / "data") as server,
    ):
        plans = _plans(seed(server, clients))
        ours = {kind: drive(server, plan, warmup, seconds) for kind, plan in plans.items()}
    with bare_server() as server:
        bare = {kind: drive(server, plan, warmup, seconds) for kind, plan in plans.items()}
    no_http = in_process.measure(clients, warmup, seconds)
    rows: list[Row] = []
    for kind in plans:
        mine, base = ours[kind], bare[kind]
        if mine.failures or base.failures:
            raise RuntimeError(
                f"{kind}: non-2xx answers, ours {mine.statuses}, bare {base.statuses}"
            )
        label = f"HTTP {kind}, {clients} clients"
        rows.append(
            Row(
                what=label,
                ours=mine.per_second,
                baseline=base.per_second,
                unit="requests/s",
                goal=f"ratio >= {GOAL:.2f}",
                met=mine.per_second / base.per_second >= GOAL,
                note=(
                    f"{seconds:g} s after {warmup:g} s warm-up; load generator used "
                    f"{mine.cpu_share:.2f} / {base.cpu_share:.2f} of a core (ours / bare)"
                ),
            )
        )
        for name, a, b in (("p50", mine.p50_ms, base.p50_ms), ("p99", mine.p99_ms, base.p99_ms)):
            rows.append(Row(f"{label}, {name} latency", a, b, f"ms {name}", "info", None))
        if not math.isnan(mine.server_cpu_ms + base.server_cpu_ms):
            rows.append(
                Row(
                    f"{label}, server CPU per request",
                    mine.server_cpu_ms,
                    base.server_cpu_ms,
                    "ms CPU",
                    "info",
                    None,
                    note="user+system time of the server process (all threads) per request",
                )
            )
        for part, calls in (
            ("route", "the same route calls in process, no HTTP"),
            ("command", "the command alone in process, no HTTP"),
        ):
            rate = no_http[kind, part]
            did = (
                "command, view catch-up, read-back and access record, as the route"
                if part == "route"
                else "the help desk's command only: no catch-up, read-back or access record"
            )
            rows.append(
                Row(
                    f"{label}, ceiling: {calls}",
                    rate,
                    base.per_second,
                    "calls/s vs bare requests/s",
                    "info",
                    None,
                    note=(
                        f"{clients} threads, {did}. The server does all the bare app does "
                        "besides, under the same interpreter lock, so the HTTP ratio cannot "
                        f"exceed about {rate / (rate + base.per_second):.2f} "
                        f"(calls/s / (calls/s + bare requests/s); {rate / base.per_second:.2f} "
                        "if HTTP cost nothing)"
                    ),
                )
            )
    return rows
