"""Child server processes on loopback (the soak, benchmarks, the Kafka broker): a free port,
waiting until one answers, and stopping one."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def environment(**extra: str) -> dict[str, str]:
    """This process's environment without its TICKETLOG_ settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETLOG_")}
    return {**env, **extra}


def wait_until_answering(
    proc: subprocess.Popen[Any],
    url: str,
    *,
    timeout: float = 60,
    interval: float = 0.1,
    why_exited: Callable[[], str] = lambda: "",
    verify: ssl.SSLContext | bool = True,
) -> None:
    """Poll `url` until it answers 200; RuntimeError if the process exits first (with
    `why_exited()` in the message) or `timeout` seconds pass. `verify` as httpx takes it."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited early ({proc.returncode}): {why_exited()}")
        try:
            if httpx.get(url, timeout=2, verify=verify).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not answer {url} within {timeout:.0f} s")
        time.sleep(interval)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 20) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
