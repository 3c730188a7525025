"""A blind index of email addresses: one user per address, without storing the address.

The index maps HMAC-SHA256(blind-index key, canonical address) to the owner's profile scope
(`user:<id>`) in the vault database, so reserving an address commits like a key does, and
erasing the person deletes their digest in the transaction that destroys their keys. The
blind-index key lives in vault_meta, wrapped by the master key: without the vault the digests
cannot be recomputed or tested against guessed addresses. Nothing derived from an address is
ever written to the event log, which is never rewritten: a keyed digest of an email is still
personal data, and the index row must be deletable.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from enum import Enum

from crypto.vault import KeyVault

KEY_NAME = "email_blind_index_key"
BACKFILLED = "email_index_backfilled"


def canonical_email(email: str) -> str:
    """The form compared for uniqueness: the whole address casefolded.

    RFC 5321 lets a mailbox's local part be case-sensitive, but no common provider treats it
    so and people type it in any case: "Ada@x" and "ada@x" are one person. The stored profile
    keeps the address as given; only the comparison folds it."""
    return email.strip().casefold()


class Reservation(Enum):
    NEW = "new"  # reserved now for this owner
    HELD = "held"  # this owner held it already
    TAKEN = "taken"  # another owner holds it


class EmailIndex:
    def __init__(self, vault: KeyVault) -> None:
        self._vault = vault
        self._key: bytes | None = None

    def digest(self, email: str) -> bytes:
        if self._key is None:
            self._key = self._vault.meta_secret(KEY_NAME)
        return hmac.new(self._key, canonical_email(email).encode(), hashlib.sha256).digest()

    def reserve(self, digest: bytes, owner: str) -> Reservation:
        """Take the digest for the owner. The primary key decides between concurrent
        reservations (on PostgreSQL the second insert waits for the first to commit)."""
        with self._vault.transaction() as c:
            inserted = c.execute(
                "INSERT INTO email_index (digest, owner, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT (digest) DO NOTHING",
                [digest, owner, _now()],
            ).rowcount
            if inserted:
                return Reservation.NEW
            row = c.execute("SELECT owner FROM email_index WHERE digest=?", [digest]).fetchone()
        if row is None:  # released between the two statements: SQLite cannot; try again
            return self.reserve(digest, owner)
        return Reservation.HELD if row[0] == owner else Reservation.TAKEN

    def release(self, digest: bytes, owner: str) -> None:
        with self._vault.transaction() as c:
            c.execute("DELETE FROM email_index WHERE digest=? AND owner=?", [digest, owner])

    def take_over(self, digest: bytes, holder: str, owner: str, reserved_before: datetime) -> bool:
        """Move a digest from `holder` to `owner` if the holder reserved it before the given
        time and still holds it; True if it moved (only one of concurrent callers wins)."""
        with self._vault.transaction() as c:
            moved = c.execute(
                "UPDATE email_index SET owner = ?, created_at = ?"
                " WHERE digest = ? AND owner = ? AND created_at < ?",
                [owner, _now(), digest, holder, reserved_before.isoformat()],
            ).rowcount
        return bool(moved)

    def keep_only(self, owner: str, digest: bytes) -> None:
        """Release the owner's other digests (their previous address)."""
        with self._vault.transaction() as c:
            c.execute("DELETE FROM email_index WHERE owner=? AND digest<>?", [owner, digest])

    def owner_of(self, digest: bytes) -> str | None:
        with self._vault.transaction() as c:
            row = c.execute("SELECT owner FROM email_index WHERE digest=?", [digest]).fetchone()
        return None if row is None else str(row[0])

    def digests_of(self, owner: str) -> list[bytes]:
        with self._vault.transaction() as c:
            rows = c.execute("SELECT digest FROM email_index WHERE owner=?", [owner]).fetchall()
        return [bytes(r[0]) for r in rows]

    def entries(self) -> list[tuple[bytes, str, datetime]]:
        with self._vault.transaction() as c:
            rows = c.execute("SELECT digest, owner, created_at FROM email_index").fetchall()
        return [(bytes(r[0]), str(r[1]), datetime.fromisoformat(r[2])) for r in rows]

    def backfilled(self) -> bool:
        with self._vault.transaction() as c:
            row = c.execute("SELECT 1 FROM vault_meta WHERE name=?", [BACKFILLED]).fetchone()
        return row is not None

    def mark_backfilled(self) -> None:
        with self._vault.transaction() as c:
            c.execute(
                "INSERT INTO vault_meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                [BACKFILLED, _now().encode()],
            )


def _now() -> str:
    return datetime.now(UTC).isoformat()
