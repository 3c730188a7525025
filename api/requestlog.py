"""Request ids, the access line (one log line per request, with no values in it) and the record
of what each request stored (`stored_in_request`, so a storage fault after a command was stored
answers `views_lagging`).

Pure ASGI and outermost, so every response (a 429, a 413, an idempotent replay) carries
`X-Request-ID` and every line logged while handling the request names it. The access line holds
the method, the route's path template (never the raw path or the query string: both may carry
values a client typed), the status, the duration and the calling token's id and role."""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.tokens import Principal
from ticketlog.desk import stored_in_request
from ticketlog.logs import REQUEST_ID_HEADER, accept_request_id, request_id

log = logging.getLogger("ticketlog.http")

_HEADER = REQUEST_ID_HEADER.lower().encode()


@dataclass
class Caller:
    """Who called, filled in by the auth dependency (in a worker thread: hence a shared object)."""

    token_id: str | None = None
    role: str | None = None


_caller: ContextVar[Caller | None] = ContextVar("ticketlog_caller", default=None)


def note_caller(who: Principal) -> None:
    """Called once the token is known, so the access line can say who made the request."""
    caller = _caller.get()
    if caller is not None:
        caller.token_id, caller.role = who.token_id, who.role.value


def _route_template(scope: Scope) -> str | None:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else None


class RequestLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v.decode("latin-1") for k, v in scope["headers"] if k == _HEADER), None)
        rid = accept_request_id(incoming)
        # Not reset afterwards: the server's own error line for a crashed request comes after
        # this returns, in the same task, and should carry the id too. Each request is a task.
        request_id.set(rid)
        caller = Caller()
        _caller.set(caller)
        stored_in_request.set([])
        started = time.perf_counter()
        status = 500

        async def tagged(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [h for h in message.get("headers", []) if h[0].lower() != _HEADER]
                message = {**message, "headers": [*headers, (_HEADER, rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, tagged)
        finally:
            self._access_line(scope, status, started, caller)

    def _access_line(self, scope: Scope, status: int, started: float, caller: Caller) -> None:
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        route = _route_template(scope)
        fields: dict[str, Any] = {
            "method": scope["method"],
            "route": route,
            "status": status,
            "duration_ms": elapsed_ms,
            "token_id": caller.token_id,
            "role": caller.role,
        }
        log.info(
            "%s %s %d %.1f ms token=%s",
            scope["method"],
            route or "(no route)",
            status,
            elapsed_ms,
            caller.token_id or "-",
            extra={"fields": fields},
        )
