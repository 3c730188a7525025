"""Idempotency-Key on POST commands: a retry gets the first response and runs nothing again.

Keys live per token in the auth database (`idempotency_keys`), so a retry after a restart
still finds its answer. Responses carry personal data, so the stored copy is sealed (AES-GCM)
under a key derived from the caller's bearer token and the Idempotency-Key; the server keeps
neither, only their HMACs. Without the token, rows are ciphertext; they expire after a day.

Only answers for commands that were stored are kept: successes (2xx), and 503 `views_lagging`
(stored, but the views are behind), whose retry replays the 503 rather than storing the command
twice. A command that failed otherwise appended nothing, so its retry simply runs again. A key
sent while its first request is still running answers 409.

If the server dies after storing a command but before remembering its answer, the reservation
goes stale and a retry runs the command again; the command's receipt, saved in the log in the
same transaction as its events, then refuses it (409 `idempotency_key_stored`), so it is never
stored twice.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import authenticate
from api.errors import error_response, storage_fault_response
from api.limits import BodyTooLarge, is_streaming, read_body, replay
from api.tokens import TokenStore
from projections.sql import Database
from ticketlog.receipts import PendingReceipt, pending_receipt

HEADER = b"idempotency-key"
REPLAYED = "Idempotent-Replayed"
KEEP_FOR = timedelta(hours=24)
# A reservation whose request never finished (the server died, or it outlived this). Running
# its retry then is safe: the command's receipt in the log refuses to store it twice
# (ticketlog/receipts.py), and the first request can no longer touch the retry's reservation.
STALE_AFTER = timedelta(minutes=1)
MAX_KEY_LENGTH = 255
log = logging.getLogger("ticketlog.api")


@dataclass(frozen=True)
class Secrets:
    """What the caller's token and key derive; nothing here is stored as is."""

    token_id: str
    key_id: str
    sealing_key: bytes

    @classmethod
    def derive(cls, token_id: str, token: str, key: str) -> Secrets:
        def mac(label: bytes) -> bytes:
            return hmac.new(token.encode(), label + b"\0" + key.encode(), hashlib.sha256).digest()

        return cls(token_id, mac(b"ticketlog/idempotency/id").hex(), mac(b"ticketlog/idempotency"))

    def request_mac(self, method: str, path: str, query: bytes, body: bytes) -> str:
        message = b"\0".join([method.encode(), path.encode(), query, body])
        return hmac.new(self.sealing_key, message, hashlib.sha256).hexdigest()

    def _aad(self) -> bytes:
        return f"{self.token_id}/{self.key_id}".encode()

    def seal(self, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
        nonce = os.urandom(12)
        names = orjson.dumps([[n.decode("latin-1"), v.decode("latin-1")] for n, v in headers])
        plain = _HEADERS_V2 + b"\n" + names + b"\n" + body  # JSON holds no raw line break
        return nonce + AESGCM(self.sealing_key).encrypt(nonce, plain, self._aad())

    def open(self, sealed: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
        plain = AESGCM(self.sealing_key).decrypt(sealed[:12], sealed[12:], self._aad())
        first, _, rest = plain.partition(b"\n")
        if first != _HEADERS_V2:  # kept before headers were: the content type, then the body
            return [(b"content-type", first)], rest
        names, _, body = rest.partition(b"\n")
        return [(n.encode("latin-1"), v.encode("latin-1")) for n, v in orjson.loads(names)], body


@dataclass(frozen=True)
class Stored:
    request_mac: str
    status: int | None  # None while the first request is still running
    response: bytes | None


class IdempotencyStore:
    schema = (
        "CREATE TABLE IF NOT EXISTS idempotency_keys ("
        " token_id TEXT NOT NULL, key_id TEXT NOT NULL, request_mac TEXT NOT NULL,"
        " status INTEGER, response BYTEA, created_at TEXT NOT NULL,"
        " PRIMARY KEY (token_id, key_id))",
    )

    def __init__(self, db: Database) -> None:
        self.db = db
        db.execute_script(self.schema)

    def reserve(self, who: Secrets, request_mac: str, now: datetime) -> Stored | None:
        """None if this request may run (the key is now reserved, at `now`); else what is
        stored. `complete` and `release` name the same time: a reservation taken over after
        going stale is then the retry's alone."""
        with self.db.transaction() as c:
            c.execute(
                "DELETE FROM idempotency_keys WHERE created_at < ?"
                " OR (status IS NULL AND created_at < ?)",
                [(now - KEEP_FOR).isoformat(), (now - STALE_AFTER).isoformat()],
            )
            reserved = c.execute(
                "INSERT INTO idempotency_keys (token_id, key_id, request_mac, created_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING key_id",
                [who.token_id, who.key_id, request_mac, now.isoformat()],
            ).fetchone()
            if reserved is not None:
                return None
            row = c.execute(
                "SELECT request_mac, status, response FROM idempotency_keys"
                " WHERE token_id = ? AND key_id = ?",
                [who.token_id, who.key_id],
            ).fetchone()
        response = row["response"]
        return Stored(row["request_mac"], row["status"], bytes(response) if response else None)

    def complete(self, who: Secrets, at: datetime, status: int, response: bytes) -> None:
        with self.db.transaction() as c:
            c.execute(
                "UPDATE idempotency_keys SET status = ?, response = ?"
                " WHERE token_id = ? AND key_id = ? AND created_at = ?",
                [status, response, who.token_id, who.key_id, at.isoformat()],
            )

    def release(self, who: Secrets, at: datetime) -> None:
        with self.db.transaction() as c:
            c.execute(
                "DELETE FROM idempotency_keys WHERE token_id = ? AND key_id = ?"
                " AND created_at = ? AND status IS NULL",
                [who.token_id, who.key_id, at.isoformat()],
            )


# What a replay repeats besides the body: its type, the ticket version (ETag), where the new
# resource is, and when to come back. Never the request id, which belongs to each request.
REPLAYED_HEADERS = frozenset({b"content-type", b"etag", b"location", b"retry-after"})
_HEADERS_V2 = b"ticketlog-headers/2"


def _stored_anyway(status: int, body: bytes) -> bool:
    """A 503 `views_lagging` means the command was stored: its retry must not store it again."""
    if status != 503:
        return False
    try:
        return bool(orjson.loads(body)["error"]["code"] == "views_lagging")
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return False


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _valid_key(key: str) -> bool:
    return 0 < len(key) <= MAX_KEY_LENGTH and all(32 < ord(ch) < 127 for ch in key)


class Idempotency:
    """Pure ASGI: sits inside the body limit, so the body it reads is already bounded."""

    def __init__(self, app: ASGIApp, tokens: TokenStore, max_bytes: int) -> None:
        self.app = app
        self.tokens = tokens
        self.store = IdempotencyStore(tokens.db)
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = _header(scope, HEADER) if scope["type"] == "http" else None
        if key is None or scope["method"] != "POST" or is_streaming(scope):
            await self.app(scope, receive, send)
            return
        if not _valid_key(key):
            message = f"Idempotency-Key is 1 to {MAX_KEY_LENGTH} printable ASCII characters"
            await error_response(422, "invalid_idempotency_key", message)(scope, receive, send)
            return
        who = await self._caller(scope, key)
        if who is None:  # no valid token: the route answers 401 as usual
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(receive, self.max_bytes)
        except BodyTooLarge:
            message = f"the request body is larger than {self.max_bytes} bytes"
            await error_response(413, "payload_too_large", message)(scope, receive, send)
            return
        request_mac = who.request_mac(scope["method"], scope["path"], scope["query_string"], body)
        try:
            reserved_at = datetime.now(UTC)
            stored = await run_in_threadpool(self.store.reserve, who, request_mac, reserved_at)
        except OperationalError as e:
            response = storage_fault_response(e, scope["method"])
            await response(scope, receive, send)
            return
        if stored is not None:
            await self._answer(stored, who, request_mac, scope, receive, send)
            return
        await self._run(who, reserved_at, scope, replay(body, receive), send)

    async def _caller(self, scope: Scope, key: str) -> Secrets | None:
        scheme, _, token = (_header(scope, b"authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        principal = await authenticate(self.tokens, token.strip())
        if principal is None:
            return None
        return Secrets.derive(principal.token_id, token.strip(), key)

    async def _answer(
        self,
        stored: Stored,
        who: Secrets,
        request_mac: str,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        if not hmac.compare_digest(stored.request_mac, request_mac):
            response = error_response(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request",
            )
        elif stored.status is None or stored.response is None:
            response = error_response(
                409,
                "idempotency_key_in_flight",
                "the first request with this Idempotency-Key is still running",
                headers={"Retry-After": "1"},
            )
        else:
            headers, body = who.open(stored.response)
            await send(
                {
                    "type": "http.response.start",
                    "status": stored.status,
                    "headers": [
                        *headers,
                        (b"content-length", str(len(body)).encode()),
                        (REPLAYED.lower().encode(), b"true"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await response(scope, receive, send)

    async def _run(
        self, who: Secrets, reserved_at: datetime, scope: Scope, receive: Receive, send: Send
    ) -> None:
        status = 0
        kept: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                kept.extend(
                    (name.lower(), value)
                    for name, value in message.get("headers", [])
                    if name.lower() in REPLAYED_HEADERS
                )
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        receipt = pending_receipt.set(PendingReceipt(f"{who.token_id}/{who.key_id}"))
        try:
            await self.app(scope, receive, capture)
        except BaseException:
            await run_in_threadpool(self.store.release, who, reserved_at)
            raise
        finally:
            pending_receipt.reset(receipt)
        try:
            body = b"".join(chunks)
            if 200 <= status < 300 or _stored_anyway(status, body):
                sealed = who.seal(kept, body)
                await run_in_threadpool(self.store.complete, who, reserved_at, status, sealed)
            else:
                await run_in_threadpool(self.store.release, who, reserved_at)
        except OperationalError:
            # The response is already sent; the reservation goes stale and is dropped later.
            log.error("idempotency store unavailable; response not remembered")
