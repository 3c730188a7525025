"""The key vault: one AES-256 data key per scope, wrapped by the master key.

Scopes are `user:<id>` (a person's profile) and `ticket:<id>` (one ticket's content, owned by
its requester). A key row is never deleted, only emptied: the tombstone remembers that the
scope was erased, so nothing new is ever written under a fresh key for an erased person.

Destroyed key material must not linger in any file: the SQLite vault runs with `secure_delete`,
which zeroes freed bytes, and with a rollback journal rather than a WAL, since a WAL keeps old
page images (holding the key) for as long as any reader blocks its checkpoint. A destruction
therefore waits for readers of the vault to finish, then leaves nothing behind.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crypto.errors import HeldByLaw, KeyVaultError, ScopeErased, UnknownKey, WrongMasterKey
from crypto.master import KEY_BYTES, MasterKey

KEY_ID_BYTES = 16
_CHECK_PLAINTEXT = b"ticketlog master key check v1"
_CHECK_CONTEXT = b"ticketlog/master-check"

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS vault_meta (name TEXT PRIMARY KEY, value BYTEA NOT NULL)",
    "CREATE TABLE IF NOT EXISTS data_keys ("
    " key_id BYTEA PRIMARY KEY,"
    " scope TEXT NOT NULL UNIQUE,"
    " owner TEXT,"
    " wrapped BYTEA,"
    " created_at TEXT NOT NULL,"
    " destroyed_at TEXT)",
    "CREATE INDEX IF NOT EXISTS data_keys_owner ON data_keys (owner)",
    "CREATE TABLE IF NOT EXISTS legal_holds (owner TEXT PRIMARY KEY, since TEXT NOT NULL)",
)


@dataclass(frozen=True)
class DataKey:
    key_id: bytes
    scope: str
    owner: str | None
    aead: AESGCM | None  # None once destroyed

    @property
    def destroyed(self) -> bool:
        return self.aead is None


@dataclass(frozen=True)
class Destruction:
    """What an erasure destroyed: the scopes destroyed now, and all destroyed for the owner."""

    destroyed_now: list[str]
    destroyed_total: list[str]


class _Store(Protocol):
    @contextmanager
    def transaction(self) -> Iterator[Any]: ...

    def after_destroy(self) -> None: ...

    def close(self) -> None: ...


class _SQLiteStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._conn = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None, timeout=30
        )
        self._lock = threading.RLock()
        try:
            self._conn.execute("PRAGMA secure_delete=ON")
            self._conn.execute("PRAGMA journal_mode=DELETE")
            self._conn.execute("PRAGMA temp_store=MEMORY")
            self._conn.execute("PRAGMA synchronous=FULL")
            for statement in SCHEMA:
                self._conn.execute(statement)
        except sqlite3.DatabaseError as e:
            self._conn.close()
            raise KeyVaultError(f"key vault {path} is unreadable or corrupt: {e}") from e

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self._lock:
            cursor = self._conn.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield _QmarkCursor(cursor)
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            cursor.execute("COMMIT")

    def after_destroy(self) -> None:
        # secure_delete zeroed the freed bytes and the rollback journal is gone at commit.
        pass

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class _PostgresStore:
    """A vault in PostgreSQL, for several API processes sharing one vault.

    PostgreSQL keeps dead row versions until VACUUM reuses their space, so destroyed key
    material may persist on its disk (and in its WAL archive) for a while; the SQLite vault
    does not have this weakness. Each destruction is followed by a VACUUM of the table.
    """

    def __init__(self, conninfo: str, schema: str) -> None:
        import psycopg
        from psycopg.sql import SQL, Identifier

        try:
            self._conn = psycopg.connect(conninfo, autocommit=True)
            self._conn.execute(SQL("CREATE SCHEMA IF NOT EXISTS {0}").format(Identifier(schema)))
            self._conn.execute(SQL("SET search_path TO {0}").format(Identifier(schema)))
            for statement in SCHEMA:
                self._conn.execute(statement.encode())
        except psycopg.Error as e:
            raise KeyVaultError(f"the key vault database cannot be used: {e}") from e
        self._lock = threading.RLock()

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self._lock, self._conn.transaction():
            yield _QmarkCursor(self._conn.cursor(), placeholder="%s")

    def after_destroy(self) -> None:
        with self._lock:
            self._conn.execute("VACUUM data_keys")

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class _QmarkCursor:
    """Lets one set of `?`-style statements run on sqlite3 and psycopg alike."""

    def __init__(self, cursor: Any, placeholder: str = "?") -> None:
        self._cursor = cursor
        self._placeholder = placeholder

    def execute(self, sql: str, params: Iterable[Any] = ()) -> Any:
        if self._placeholder != "?":
            sql = sql.replace("?", self._placeholder)
        self._cursor.execute(sql, tuple(params))
        return self._cursor

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return list(self._cursor.fetchall())


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _wrap_context(key_id: bytes, scope: str) -> bytes:
    return b"ticketlog/data-key|" + key_id + b"|" + scope.encode()


class KeyVault:
    """Creates, finds and destroys data keys; caches unwrapped keys for a short while."""

    def __init__(
        self, store: _Store, master: MasterKey, cache_ttl: float = 60.0, cache_size: int = 50_000
    ) -> None:
        self._store = store
        self._master = master
        self._cache: dict[bytes, tuple[float, DataKey]] = {}
        self._scope_cache: dict[str, bytes] = {}
        self._cache_ttl = cache_ttl
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.lookups = 0  # how often the vault database was asked (for benchmarks)
        try:
            self._check_master_key()
        except BaseException:
            store.close()
            raise

    @classmethod
    def open_sqlite(cls, path: Path, master: MasterKey, **kwargs: Any) -> KeyVault:
        return cls(_SQLiteStore(path), master, **kwargs)

    @classmethod
    def open_postgres(
        cls, conninfo: str, schema: str, master: MasterKey, **kwargs: Any
    ) -> KeyVault:
        return cls(_PostgresStore(conninfo, schema), master, **kwargs)

    @staticmethod
    def sqlite_holds_keys(path: Path) -> bool:
        """Whether a vault file already exists with a master key bound to it."""
        if not path.exists():
            return False
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                row = conn.execute("SELECT 1 FROM vault_meta WHERE name='master_check'").fetchone()
            finally:
                conn.close()
        except sqlite3.DatabaseError:
            return True  # unreadable: never treat it as empty
        return row is not None

    def close(self) -> None:
        self._store.close()

    def _check_master_key(self) -> None:
        with self._store.transaction() as c:
            row = c.execute("SELECT value FROM vault_meta WHERE name='master_check'").fetchone()
            if row is None:
                check = self._master.wrap(_CHECK_PLAINTEXT, _CHECK_CONTEXT)
                c.execute(
                    "INSERT INTO vault_meta (name, value) VALUES ('master_check', ?)", [check]
                )
                return
        try:
            ok = self._master.unwrap(bytes(row[0]), _CHECK_CONTEXT) == _CHECK_PLAINTEXT
        except InvalidTag:
            ok = False
        if not ok:
            raise WrongMasterKey(
                "the master key does not open this key vault (wrong TICKETLOG_MASTER_KEY or key "
                "file?); refusing to start rather than serve unreadable data"
            )

    # Reading

    def key_by_id(self, key_id: bytes) -> DataKey:
        """The key with this id, destroyed or not; UnknownKey if the vault never had it."""
        cached = self._cached(key_id)
        if cached is not None:
            return cached
        with self._store.transaction() as c:
            row = c.execute(
                "SELECT key_id, scope, owner, wrapped FROM data_keys WHERE key_id=?", [key_id]
            ).fetchone()
        self.lookups += 1
        if row is None:
            raise UnknownKey(
                f"key {key_id.hex()} is not in this key vault: the vault does not match the log"
            )
        return self._remember(self._data_key(row))

    def key_for_writing(self, scope: str, owner: str | None) -> DataKey:
        """The live key of a scope, created on first use; ScopeErased if it was destroyed."""
        key_id = self._scope_cache.get(scope)
        key = self._cached(key_id) if key_id is not None else None
        if key is None:
            key = self._load_or_create(scope, owner)
        if key.destroyed:
            raise ScopeErased(scope)
        return key

    def _load_or_create(self, scope: str, owner: str | None) -> DataKey:
        with self._store.transaction() as c:
            row = c.execute(
                "SELECT key_id, scope, owner, wrapped FROM data_keys WHERE scope=?", [scope]
            ).fetchone()
            self.lookups += 1
            if row is None:
                if owner is None and scope.startswith("ticket:"):
                    raise KeyVaultError(f"{scope} has no key and no owner to create one for")
                if owner is not None and owner != scope:
                    # The log may not know the owner was erased (a restored backup): the
                    # vault's tombstone is what counts, so never hand an erased person a key.
                    owner_row = c.execute(
                        "SELECT wrapped IS NULL FROM data_keys WHERE scope=?", [owner]
                    ).fetchone()
                    if owner_row is not None and owner_row[0]:
                        raise ScopeErased(owner)
                key_id = secrets.token_bytes(KEY_ID_BYTES)
                raw = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
                wrapped = self._master.wrap(raw, _wrap_context(key_id, scope))
                c.execute(
                    "INSERT INTO data_keys (key_id, scope, owner, wrapped, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [key_id, scope, owner, wrapped, _now()],
                )
                return self._remember(DataKey(key_id, scope, owner, AESGCM(raw)))
        return self._remember(self._data_key(row))

    def owned_scopes(self, owner: str) -> list[tuple[str, bool]]:
        """Every scope the owner has, with whether it is destroyed."""
        with self._store.transaction() as c:
            rows = c.execute(
                "SELECT scope, wrapped IS NULL FROM data_keys WHERE owner=? ORDER BY scope",
                [owner],
            ).fetchall()
        return [(r[0], bool(r[1])) for r in rows]

    def is_destroyed(self, scope: str) -> bool:
        with self._store.transaction() as c:
            row = c.execute(
                "SELECT wrapped IS NULL FROM data_keys WHERE scope=?", [scope]
            ).fetchone()
        return bool(row and row[0])

    # Legal holds: checked in the same transaction as every destruction, so no race between a
    # hold being placed and an erasure can destroy a held person's keys.

    def set_hold(self, owner: str, held: bool) -> None:
        with self._store.transaction() as c:
            if held:
                exists = c.execute("SELECT 1 FROM legal_holds WHERE owner=?", [owner]).fetchone()
                if exists is None:
                    c.execute(
                        "INSERT INTO legal_holds (owner, since) VALUES (?, ?)", [owner, _now()]
                    )
            else:
                c.execute("DELETE FROM legal_holds WHERE owner=?", [owner])

    def held_owners(self) -> set[str]:
        with self._store.transaction() as c:
            return {r[0] for r in c.execute("SELECT owner FROM legal_holds").fetchall()}

    @staticmethod
    def _refuse_if_held(c: Any, owner: str | None) -> None:
        if owner and c.execute("SELECT 1 FROM legal_holds WHERE owner=?", [owner]).fetchone():
            raise HeldByLaw(owner)

    # Destroying

    def destroy_owned_by(self, owner: str) -> Destruction:
        """Crypto-shred a person: their own key and every key they own, in one statement."""
        now = _now()
        with self._store.transaction() as c:
            self._refuse_if_held(c, owner)
            # Pin the owner's own scope first, so even a person with no key yet has a tombstone
            # and no key can be created for them afterwards.
            if c.execute("SELECT 1 FROM data_keys WHERE scope=?", [owner]).fetchone() is None:
                c.execute(
                    "INSERT INTO data_keys"
                    " (key_id, scope, owner, wrapped, created_at, destroyed_at)"
                    " VALUES (?, ?, ?, NULL, ?, ?)",
                    [secrets.token_bytes(KEY_ID_BYTES), owner, owner, now, now],
                )
            live = c.execute(
                "SELECT key_id, scope FROM data_keys WHERE owner=? AND wrapped IS NOT NULL", [owner]
            ).fetchall()
            c.execute(
                "UPDATE data_keys SET wrapped=NULL, destroyed_at=?"
                " WHERE owner=? AND wrapped IS NOT NULL",
                [now, owner],
            )
            total = c.execute(
                "SELECT scope FROM data_keys WHERE owner=? ORDER BY scope", [owner]
            ).fetchall()
        self._forget(bytes(r[0]) for r in live)
        self._store.after_destroy()
        return Destruction(sorted(r[1] for r in live), [r[0] for r in total])

    def destroy_scope(self, scope: str) -> bool:
        """Crypto-shred one scope (a ticket's content, a profile); True if a key was destroyed."""
        with self._store.transaction() as c:
            row = c.execute(
                "SELECT key_id, owner FROM data_keys WHERE scope=? AND wrapped IS NOT NULL", [scope]
            ).fetchone()
            if row is None:
                return False
            self._refuse_if_held(c, row[1])
            c.execute(
                "UPDATE data_keys SET wrapped=NULL, destroyed_at=? WHERE key_id=?", [_now(), row[0]]
            )
        self._forget([bytes(row[0])])
        self._store.after_destroy()
        return True

    # Cache

    def _data_key(self, row: Any) -> DataKey:
        key_id, scope, owner, wrapped = bytes(row[0]), row[1], row[2], row[3]
        if wrapped is None:
            return DataKey(key_id, scope, owner, None)
        try:
            raw = self._master.unwrap(bytes(wrapped), _wrap_context(key_id, scope))
        except InvalidTag as e:
            raise KeyVaultError(f"key {key_id.hex()} of {scope} cannot be unwrapped") from e
        return DataKey(key_id, scope, owner, AESGCM(raw))

    def _cached(self, key_id: bytes) -> DataKey | None:
        entry = self._cache.get(key_id)
        if entry is None:
            return None
        expires, key = entry
        # Destroyed keys stay destroyed; live ones are re-read now and then so that another
        # process's erasure reaches this one within the TTL.
        if not key.destroyed and expires < time.monotonic():
            with self._lock:
                self._cache.pop(key_id, None)
            return None
        return key

    def _remember(self, key: DataKey) -> DataKey:
        with self._lock:
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
                self._scope_cache.clear()
            self._cache[key.key_id] = (time.monotonic() + self._cache_ttl, key)
            self._scope_cache[key.scope] = key.key_id
        return key

    def _forget(self, key_ids: Iterable[bytes]) -> None:
        with self._lock:
            for key_id in key_ids:
                entry = self._cache.pop(key_id, None)
                if entry is not None:
                    self._scope_cache.pop(entry[1].scope, None)

    def forget_owned_by(self, owner: str) -> int:
        """Drop cached keys of a person (their own and those they own): another process erased
        them, and the next read must see the tombstones. Returns how many were dropped."""
        with self._lock:
            gone = [
                key_id
                for key_id, (_, key) in self._cache.items()
                if owner in (key.owner, key.scope)
            ]
            for key_id in gone:
                _, key = self._cache.pop(key_id)
                self._scope_cache.pop(key.scope, None)
        return len(gone)

    def forget_cached(self) -> None:
        """Drop every cached key (another process erased someone)."""
        with self._lock:
            self._cache.clear()
            self._scope_cache.clear()
