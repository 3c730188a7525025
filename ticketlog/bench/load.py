"""A small HTTP/1.1 load generator, run as its own process: `python -m ticketlog.bench.load`.

Reads a JSON plan on stdin, drives N keep-alive connections (each one request at a time, a
closed loop) for a fixed time and prints one JSON result on stdout. Requests are prepared as
bytes up front and responses parsed only as far as Content-Length, so one core pushes several
times what a Python server answers; `cpu` in the result lets the caller check that.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)


def request_bytes(host: str, port: int, path: str, body: bytes, token: str) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise ValueError("the response has no Content-Length")


async def _client(
    host: str, port: int, requests: list[bytes], start: float, stop: float, tally: Tally
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        i = 0
        while time.perf_counter() < stop:
            sent = time.perf_counter()
            writer.write(requests[i % len(requests)])
            i += 1
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(_content_length(head))
            done = time.perf_counter()
            if sent >= start and done <= stop:  # only requests wholly inside the window
                status = int(head[9:12])
                tally.statuses[status] = tally.statuses.get(status, 0) + 1
                tally.latencies.append(done - sent)
    finally:
        writer.close()


def _quantile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def drive(plan: dict[str, Any]) -> dict[str, Any]:
    """plan: host, port, token, warmup, seconds, clients: [[[path, body-json], ...], ...]."""
    host, port, token = plan["host"], int(plan["port"]), plan["token"]
    per_client = [
        [request_bytes(host, port, path, body.encode(), token) for path, body in requests]
        for requests in plan["clients"]
    ]
    tally = Tally()
    start = time.perf_counter() + float(plan["warmup"])
    stop = start + float(plan["seconds"])
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.gather(*(_client(host, port, r, start, stop, tally) for r in per_client))
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    elapsed = time.perf_counter() - (start - float(plan["warmup"]))
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    ordered = sorted(tally.latencies)
    return {
        "requests": len(ordered),
        "per_second": len(ordered) / float(plan["seconds"]),
        "p50_ms": _quantile(ordered, 0.50) * 1000,
        "p99_ms": _quantile(ordered, 0.99) * 1000,
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "seconds": float(plan["seconds"]),
        "cpu_share": cpu / elapsed,  # of one core, over warm-up and window
    }


def main() -> int:
    plan = json.load(sys.stdin)
    json.dump(asyncio.run(drive(plan)), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
