"""Row 2's ceilings: the HTTP rows' commands run in process, with no HTTP at all.

Two rates, each with as many threads as the load generator has clients, on a data directory of
its own: the route functions the server calls (command, view catch-up, read-back, access
record) called directly, and the command alone. HTTP, FastAPI and the middleware can only add
to these costs, so each rate over the bare app's HTTP rate bounds the HTTP row's ratio.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import UUID

from fastapi import Request, Response

from api.routers import tickets
from api.schemas import CommentCreate, TicketCreate
from api.tokens import Principal, Role
from domain.user import UserKind
from ticketlog.bench.fixtures import BODY, COMMENT, SUBJECT, TICKETS_PER_CLIENT
from ticketlog.config import Settings
from ticketlog.runtime import Runtime

WHO = Principal("bench", "bench", Role.SERVICE)


def _request(route_path: str, path: str) -> Request:
    """What the routes read of a request: the route's path, for the access record."""
    return Request(
        {
            "type": "http",
            "method": "POST",
            "path": path,
            "query_string": b"",
            "headers": [],
            "scheme": "http",
            "server": ("127.0.0.1", 80),
            "root_path": "",
            "route": SimpleNamespace(path=route_path),
        }
    )


Calls = list[list[Callable[[], Any]]]  # per client: the calls it repeats, in turn


def _plans(runtime: Runtime, clients: int) -> dict[tuple[str, str], Calls]:
    """By (command kind, "route" or "command"): each client's calls."""
    open_route = tickets.open_ticket.__wrapped__  # type: ignore[attr-defined]
    comment_route = tickets.comment.__wrapped__  # type: ignore[attr-defined]
    desk = runtime.desk
    opens: Calls = []
    comments: Calls = []
    bare_opens: Calls = []
    bare_comments: Calls = []
    for i in range(clients):
        requester = desk.register_user(UserKind.CUSTOMER, f"Bench {i}", f"inproc{i}@example.com")
        body = TicketCreate(requester_id=requester, subject=SUBJECT, body=BODY, tags=["bench"])
        mine: list[UUID] = [
            desk.open_ticket(requester_id=requester, subject=SUBJECT, body=BODY)
            for _ in range(TICKETS_PER_CLIENT)
        ]

        def open_one(body: TicketCreate = body) -> Any:
            return open_route(
                body=body,
                runtime=runtime,
                request=_request("/v1/tickets", "/v1/tickets"),
                response=Response(),
                who=WHO,
            )

        def comment_on(ticket: UUID, requester: UUID = requester) -> Callable[[], Any]:
            path = f"/v1/tickets/{ticket}/comments"
            note = CommentCreate(author_id=requester, body=COMMENT)
            return lambda: comment_route(
                ticket_id=str(ticket),
                body=note,
                runtime=runtime,
                request=_request("/v1/tickets/{ticket_id}/comments", path),
                response=Response(),
                if_match=None,
                who=WHO,
            )

        def open_alone(requester: UUID = requester) -> Any:
            return desk.open_ticket(requester, SUBJECT, BODY, tags=["bench"])

        def comment_alone(ticket: UUID, requester: UUID = requester) -> Callable[[], Any]:
            return lambda: desk.add_comment(ticket, requester, COMMENT, True)

        opens.append([open_one])
        comments.append([comment_on(t) for t in mine])
        bare_opens.append([open_alone])
        bare_comments.append([comment_alone(t) for t in mine])
    runtime.runner.catch_up()
    return {
        ("POST /v1/tickets", "route"): opens,
        ("POST /v1/tickets", "command"): bare_opens,
        ("POST /v1/tickets/{id}/comments", "route"): comments,
        ("POST /v1/tickets/{id}/comments", "command"): bare_comments,
    }


def _drive(clients: Calls, warmup: float, seconds: float) -> float:
    """Calls completed per second in the window after the warm-up, all clients together."""
    done = [0] * len(clients)
    failures: list[BaseException] = []
    stop = threading.Event()

    def client(i: int) -> None:
        calls, turn = clients[i], 0
        try:
            while not stop.is_set():
                calls[turn % len(calls)]()
                turn += 1
                done[i] += 1
        except BaseException as e:  # raised again in the caller, after every thread stops
            failures.append(e)
            stop.set()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    time.sleep(warmup)
    before, start = sum(done), time.perf_counter()
    time.sleep(seconds)
    after, elapsed = sum(done), time.perf_counter() - start
    stop.set()
    for t in threads:
        t.join()
    if failures:
        raise RuntimeError(f"an in-process command failed: {failures[0]!r}") from failures[0]
    return (after - before) / elapsed


def measure(clients: int, warmup: float, seconds: float) -> dict[tuple[str, str], float]:
    """Calls per second by (kind as the HTTP row names it, "route" or "command")."""
    with tempfile.TemporaryDirectory(prefix="bench-in-process-") as tmp:
        runtime = Runtime.open(Settings(data_dir=Path(tmp) / "data"))
        try:
            plans = _plans(runtime, clients)
            return {kind: _drive(plan, warmup, seconds) for kind, plan in plans.items()}
        finally:
            runtime.close()
