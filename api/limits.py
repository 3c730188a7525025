"""Request body limit: a pure-ASGI middleware that buffers a bounded body or answers 413.

Buffering (at most the limit) lets the commands downstream read the body as usual and lets the
idempotency layer hash it. Streaming routes with their own limit pass through untouched."""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response

# (method, path) of routes that stream their body and enforce their own limit.
STREAMING_ROUTES = ((re.compile(r"^/v1/tickets/[^/]+/attachments$"), "POST"),)
BIGINT_MAX = 2**63 - 1  # positions and ids are BIGINT columns: larger never matches, only overflows
DRAIN_BYTES = 16 * 1024 * 1024  # read this much past the limit so the client sees the 413


def is_streaming(scope: Scope) -> bool:
    return any(p.match(scope["path"]) and scope["method"] == m for p, m in STREAMING_ROUTES)


class BodyTooLarge(Exception):
    pass


async def read_body(receive: Receive, max_bytes: int) -> bytes:
    """The whole body, or BodyTooLarge once it passes max_bytes (after draining a bound more)."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        size += len(chunk)
        if size > max_bytes:
            while more and size <= max_bytes + DRAIN_BYTES:
                message = await receive()
                size += len(message.get("body", b""))
                more = message.get("more_body", False) and message["type"] != "http.disconnect"
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands over the buffered body once, then waits on the real channel."""
    sent = False

    async def receive_again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return receive_again


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_streaming(scope):
            await self.app(scope, receive, send)
            return
        try:
            declared = _declared_length(scope)
            if declared is not None and declared > self.max_bytes + DRAIN_BYTES:
                raise BodyTooLarge  # not worth draining; the server closes the connection
            body = await read_body(receive, self.max_bytes)
        except BodyTooLarge:
            response = error_response(
                413,
                "payload_too_large",
                f"the request body is larger than {self.max_bytes} bytes",
                headers={"Connection": "close"},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, replay(body, receive), send)
