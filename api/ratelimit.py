"""Rate limiting per token: a token bucket per bearer token (per client address without one).

Pure ASGI and in memory, outermost, so a flood is turned away before any body is read or any
database is asked. Buckets are keyed by a hash of the token, never the token itself."""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import error_response

UNLIMITED_PATHS = frozenset({"/healthz"})
MAX_BUCKETS = 10_000  # past this, buckets that have refilled are forgotten


@dataclass
class Bucket:
    tokens: float
    updated: float


class RateLimit:
    def __init__(self, app: ASGIApp, rate: float, burst: int) -> None:
        self.app = app
        self.rate = rate
        self.burst = max(burst, 1)
        self.buckets: dict[str, Bucket] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.rate <= 0 or scope["path"] in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        wait = self.take(_caller(scope), time.monotonic())
        if wait is None:
            await self.app(scope, receive, send)
            return
        response = error_response(
            429,
            "rate_limited",
            f"too many requests; at most {self.rate:g}/s with bursts of {self.burst}",
            headers={"Retry-After": str(wait)},
        )
        await response(scope, receive, send)

    def take(self, caller: str, now: float) -> int | None:
        """None if a request may pass now; else the whole seconds until one may."""
        bucket = self.buckets.get(caller)
        if bucket is None:
            if len(self.buckets) >= MAX_BUCKETS:
                self._forget_full(now)
            bucket = self.buckets[caller] = Bucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return None
        return max(1, math.ceil((1 - bucket.tokens) / self.rate))

    def _forget_full(self, now: float) -> None:
        full = [
            k
            for k, b in self.buckets.items()
            if b.tokens + (now - b.updated) * self.rate >= self.burst
        ]
        for key in full:
            del self.buckets[key]


def _caller(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return "token:" + hashlib.sha256(value).hexdigest()
    client = scope.get("client")
    return "address:" + (client[0] if client else "unknown")
