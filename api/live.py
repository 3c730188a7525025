"""The API served by uvicorn in a thread of this process, on a loopback port (tests, bench)."""

from __future__ import annotations

import threading
import time

import uvicorn

from api.app import create_app
from ticketlog.runtime import Runtime


class LiveServer:
    """`with LiveServer(runtime) as base_url:` serves the real app until the block ends."""

    def __init__(self, runtime: Runtime) -> None:
        config = uvicorn.Config(
            create_app(runtime), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the API server did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
