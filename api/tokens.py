"""API tokens: random bearer secrets, stored only as SHA-256 hashes, each with a role."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from uuid import uuid4

from projections.sql import Database

TOKEN_PREFIX = "tl_"  # noqa: S105 (a marker, not a secret)
# A token authenticated this recently is trusted without asking the database again. Revoking
# in this process takes effect at once; a revocation by another process (`ticketlog keys
# revoke` beside a running server) within this many seconds.
RECENT_SECONDS = 1.0
MAX_RECENT = 1024


class Role(StrEnum):
    SERVICE = "service"
    AUDITOR = "auditor"
    COMPLIANCE = "compliance"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    token_id: str
    name: str
    role: Role


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _digest(token: str) -> str | None:
    """The stored form of a token that has ours' shape; None (nothing hashed) for any other."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    return _hash(token)


class TokenStore:
    """Tokens are high-entropy secrets, so a plain SHA-256 suffices to store them safely."""

    schema = (
        "CREATE TABLE IF NOT EXISTS api_tokens ("
        " id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL,"
        " token_hash TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL, revoked_at TEXT)",
    )

    def __init__(self, db: Database) -> None:
        self.db = db
        db.execute_script(self.schema)
        self._recent: dict[str, tuple[float, Principal]] = {}  # by token hash: (until, who)
        # Bumped by each revocation: a lookup that read the row before it must not remember it.
        self._revocations = 0
        self._recent_lock = threading.Lock()

    def create(self, role: Role, name: str) -> tuple[Principal, str]:
        """A new token; the secret is returned once and never stored."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        principal = Principal(uuid4().hex, name, Role(role))
        with self.db.transaction() as c:
            c.execute(
                "INSERT INTO api_tokens (id, name, role, token_hash, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                [
                    principal.token_id,
                    name,
                    principal.role.value,
                    _hash(token),
                    datetime.now(UTC).isoformat(),
                ],
            )
        return principal, token

    def authenticate(self, token: str) -> Principal | None:
        digest = _digest(token)
        if digest is None:
            return None
        revocations = self._revocations
        with self.db.transaction(commit=False) as c:
            row = c.execute(
                "SELECT id, name, role, token_hash FROM api_tokens"
                " WHERE token_hash = ? AND revoked_at IS NULL",
                [digest],
            ).fetchone()
        if row is None or not hmac.compare_digest(row["token_hash"], digest):
            return None
        who = Principal(row["id"], row["name"], Role(row["role"]))
        with self._recent_lock:
            if revocations == self._revocations:  # else answered as read, not remembered
                if len(self._recent) >= MAX_RECENT:
                    self._recent.clear()
                self._recent[digest] = (time.monotonic() + RECENT_SECONDS, who)
        return who

    def recently_authenticated(self, token: str) -> Principal | None:
        """The token's principal if `authenticate` accepted it within RECENT_SECONDS: no
        database access, so the API can check a busy token on its event loop."""
        digest = _digest(token)
        entry = None if digest is None else self._recent.get(digest)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def list(self) -> list[dict[str, str | None]]:
        with self.db.transaction(commit=False) as c:
            rows = c.execute(
                "SELECT id, name, role, created_at, revoked_at FROM api_tokens ORDER BY created_at"
            ).fetchall()
        return [dict(row) for row in rows]

    def revoke(self, token_id: str) -> bool:
        with self.db.transaction() as c:
            row = c.execute(
                "SELECT id FROM api_tokens WHERE id = ? AND revoked_at IS NULL", [token_id]
            ).fetchone()
            if row is None:
                return False
            c.execute(
                "UPDATE api_tokens SET revoked_at = ? WHERE id = ?",
                [datetime.now(UTC).isoformat(), token_id],
            )
        # After the commit: a lookup that read the row before it is then not remembered.
        with self._recent_lock:
            self._revocations += 1
            self._recent.clear()
        return True
