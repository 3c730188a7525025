"""The key vault: one AES-256 data key per scope, wrapped by the master key or an owner's key.

Scopes are `user:<id>` (a person's profile), `ticket:<id>` (one ticket's content, owned by its
requester) and `authored:<id>` (a person's comments on others' tickets). Each owner has a
key-encryption key (KEK, a row in `owner_keys`, wrapped by the master key), and the data keys
they own are wrapped by that KEK: erasing a person destroys that one row, which makes every key
they own unrecoverable at once, however many they have. The owned rows, now useless
ciphertext, are emptied afterwards by a background purge. Keys without an owner (webhooks) and
keys of vaults written before KEKs existed (`wrapped_by` NULL) are wrapped by the master key and
destroyed row by row. A key row is never deleted, only emptied: the tombstone remembers that
the scope was erased, so nothing new is ever written under a fresh key for an erased person.

Destroyed key material must not linger in any file: the SQLite vault runs with `secure_delete`,
which zeroes freed bytes, and in WAL mode, where a destroyed key's old page images stay in the
WAL and in the database file until a checkpoint copies the new ones over them. So every
destruction ends with a checkpoint that waits for readers of the vault to finish, copies the
WAL into the database file and truncates the WAL (then syncs it); only then is the erasure
done, and no file holds the key. If a reader holds the checkpoint off past the busy timeout,
the destruction stands but reports an error, so the erasure is not recorded until a repeat
finishes the job (as it does after a crash between the two).

Ordering: a key is committed (durably) before any event sealed under it is written, so a crash
can never leave events sealed under a key the vault lost; a destruction is committed before the
erasure is recorded in the log.
"""

from __future__ import annotations

import logging
import os
import queue
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

from crypto.errors import (
    DestructionUnfinished,
    HeldByLaw,
    KeyVaultError,
    ScopeErased,
    UnknownKey,
    WrongMasterKey,
)
from crypto.master import KEY_BYTES, NONCE_BYTES, MasterKey

log = logging.getLogger(__name__)

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
    # One key-encryption key per owner; `wrapped` NULL is the owner's tombstone.
    "CREATE TABLE IF NOT EXISTS owner_keys ("
    " owner TEXT PRIMARY KEY,"
    " wrapped BYTEA,"
    " created_at TEXT NOT NULL,"
    " destroyed_at TEXT)",
    # The blind index of email addresses (crypto/blind_index.py): a keyed digest per address
    # in use, owned by the person's profile scope. Rows are deleted, never tombstoned: with
    # the person's keys they go in the same transaction, and the address is free again.
    "CREATE TABLE IF NOT EXISTS email_index ("
    " digest BYTEA PRIMARY KEY,"
    " owner TEXT NOT NULL,"
    " created_at TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS email_index_owner ON email_index (owner)",
)
# Added after the first release: what wraps a data key. NULL (every row of an older vault) is
# the master key; BY_OWNER is the owner's KEK.
WRAPPED_BY_COLUMN = "wrapped_by"
BY_OWNER = "owner"
# Finds an owner's master-wrapped live keys without visiting their KEK-wrapped ones, so erasing
# a person costs the same however many tickets they have.
MASTER_WRAPPED_INDEX = (
    "CREATE INDEX IF NOT EXISTS data_keys_master_wrapped ON data_keys (owner)"
    " WHERE wrapped_by IS NULL AND wrapped IS NOT NULL"
)
# A key's row, with its owner's KEK (NULL: no KEK row, or a destroyed one).
_KEY_COLUMNS = (
    "SELECT d.key_id, d.scope, d.owner, d.wrapped, d.wrapped_by, o.wrapped"
    " FROM data_keys d LEFT JOIN owner_keys o ON o.owner = d.owner"
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
    where: str  # for messages: the file or schema, never credentials
    scope_list: str  # SQL joining a text column ({0}) of the rows into one, newline-separated

    @contextmanager
    def transaction(self) -> Iterator[Any]: ...

    def after_destroy(self) -> None: ...

    def close(self) -> None: ...


class _SQLiteStore:
    scope_list = "group_concat({0}, char(10))"

    def __init__(self, path: Path, busy_timeout: float = 30) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.where = str(path)
        try:
            self._conn = sqlite3.connect(
                path, check_same_thread=False, isolation_level=None, timeout=busy_timeout
            )
        except sqlite3.Error as e:
            raise KeyVaultError(f"key vault {path} cannot be opened: {e}") from None
        self._lock = threading.RLock()
        try:
            self._conn.execute("PRAGMA secure_delete=ON")
            # A WAL commit is one sync; a rollback journal's, three or four (the vault's key
            # for each new ticket is on the path of every ticket opened). A filesystem without
            # shared memory keeps the rollback journal.
            mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            self.wal = str(mode).lower() == "wal"
            self._conn.execute("PRAGMA temp_store=MEMORY")
            # Each vault commit must be durable on return: a new key lost while the events
            # sealed under it (committed after) survive, or a destroyed key restored after the
            # SubjectErased event was recorded, would break a promise. In WAL mode FULL syncs
            # the WAL at each commit. With a rollback journal only EXTRA does: a commit is the
            # journal's unlink, and only EXTRA syncs the directory after it.
            self._conn.execute(f"PRAGMA synchronous={'FULL' if self.wal else 'EXTRA'}")
            for statement in SCHEMA:
                self._conn.execute(statement)
            columns = {r[1] for r in self._conn.execute("PRAGMA table_info(data_keys)")}
            if WRAPPED_BY_COLUMN not in columns:
                self._conn.execute(f"ALTER TABLE data_keys ADD COLUMN {WRAPPED_BY_COLUMN} TEXT")
            self._conn.execute(MASTER_WRAPPED_INDEX)
        except sqlite3.DatabaseError as e:
            self._conn.close()
            raise _corrupt(path, str(e)) from None
        try:  # a crash may have come between a destruction and its checkpoint
            self.after_destroy()
        except KeyVaultError as e:
            log.warning("%s", e)

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
        """Leave no old page image of a destroyed key in any file of the vault."""
        if not self.wal:
            return  # secure_delete zeroed the freed bytes; the journal is gone at commit
        with self._lock:
            # Waits (busy timeout) until no reader holds an older snapshot, copies the WAL
            # over the database file, syncs it, and cuts the WAL to nothing.
            busy = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            if busy:
                raise DestructionUnfinished(
                    f"key vault {self.where}: a reader of the vault held off the checkpoint "
                    "that removes destroyed keys' old pages from disk; the keys are destroyed, "
                    "repeat the erasure to finish"
                )
            _sync_file(Path(f"{self.path}-wal"))  # SQLite does not sync the truncation

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _sync_file(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _PostgresStore:
    """A vault in PostgreSQL, for several API processes sharing one vault.

    PostgreSQL keeps dead row versions until VACUUM reuses their space, so destroyed key
    material may persist on its disk (and in its WAL archive) for a while; the SQLite vault
    does not have this weakness. Each destruction is followed by a VACUUM of the table.
    """

    scope_list = "string_agg({0}, chr(10))"

    def __init__(self, conninfo: str, schema: str) -> None:
        import psycopg
        from psycopg.sql import SQL, Identifier

        self.where = f"PostgreSQL schema {schema}"
        try:
            self._conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=10)
            self._conn.execute(SQL("CREATE SCHEMA IF NOT EXISTS {0}").format(Identifier(schema)))
            self._conn.execute(SQL("SET search_path TO {0}").format(Identifier(schema)))
            for statement in SCHEMA:
                self._conn.execute(statement.encode())
            self._conn.execute(
                f"ALTER TABLE data_keys ADD COLUMN IF NOT EXISTS {WRAPPED_BY_COLUMN} TEXT".encode()
            )
            self._conn.execute(MASTER_WRAPPED_INDEX.encode())
        except psycopg.Error as e:
            raise unreachable_postgres_vault(e) from None
        self._lock = threading.RLock()

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self._lock, self._conn.transaction():
            yield _QmarkCursor(self._conn.cursor(), placeholder="%s")

    def after_destroy(self) -> None:
        with self._lock:
            self._conn.execute("VACUUM owner_keys")
            self._conn.execute("VACUUM data_keys")
            self._conn.execute("VACUUM email_index")

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def unreachable_postgres_vault(e: Exception) -> KeyVaultError:
    reason = " ".join(str(e).split())  # psycopg's messages span lines; the refusal is one
    return KeyVaultError(
        f"the PostgreSQL key vault (TICKETLOG_KEYVAULT_URL) cannot be used: {reason}; check the "
        "URL and that the server is up — refusing to start without the keys"
    )


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

    def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        if self._placeholder != "?":
            sql = sql.replace("?", self._placeholder)
        self._cursor.executemany(sql, [tuple(r) for r in rows])

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return list(self._cursor.fetchall())


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _wrap_context(key_id: bytes, scope: str) -> bytes:
    return b"ticketlog/data-key|" + key_id + b"|" + scope.encode()


_SQLITE_HEADER = b"SQLite format 3\x00"


def _corrupt(path: Path, why: str) -> KeyVaultError:
    why = " ".join(why.split())  # SQLite's integrity report spans lines; the refusal is one
    return KeyVaultError(
        f"key vault {path} is corrupt ({why}); restore keys.db from backup (with its master "
        "key) — refusing to start rather than create new keys for stored data"
    )


def _inspect_vault(conn: sqlite3.Connection, path: Path) -> bool:
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not tables:
        return False  # an empty database: nothing was ever stored in it
    if not {"vault_meta", "data_keys"} <= tables:
        raise KeyVaultError(
            f"key vault {path} is a SQLite database but not a ticketlog key vault (no vault "
            "tables); point TICKETLOG_KEYVAULT_URL at the vault or restore keys.db from backup"
        )
    problems = [r[0] for r in conn.execute("PRAGMA quick_check(3)")]
    if problems != ["ok"]:
        raise _corrupt(path, " ".join(problems))
    if conn.execute("SELECT 1 FROM vault_meta WHERE name='master_check'").fetchone():
        return True
    if conn.execute("SELECT 1 FROM data_keys LIMIT 1").fetchone():
        raise _corrupt(path, "it holds keys but no master key check")
    return False


def _kek_context(owner: str) -> bytes:
    return b"ticketlog/owner-key|" + owner.encode()


def _seal_key(kek: AESGCM, raw: bytes, context: bytes) -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + kek.encrypt(nonce, raw, context)


# Whether a data_keys row `d` (joined with its owner's KEK row `o`) is destroyed.
_DESTROYED = "(d.wrapped IS NULL OR (d.wrapped_by = 'owner' AND o.wrapped IS NULL))"
PURGE_DELAY = 2.0  # seconds between an erasure and the purge of the rows its KEK wrapped
_PURGE_ALL = "*"  # purge queue item: every owner whose KEK is destroyed (crash leftovers)
_SCOPES_PER_QUERY = 500  # under SQLite's oldest limit of 999 parameters


class KeyVault:
    """Creates, finds and destroys data keys; caches unwrapped keys for a short while."""

    def __init__(
        self, store: _Store, master: MasterKey, cache_ttl: float = 60.0, cache_size: int = 50_000
    ) -> None:
        self._store = store
        self._master = master
        self._cache: dict[bytes, tuple[float, DataKey]] = {}
        self._scope_cache: dict[str, bytes] = {}
        # Cached key ids by owner (and by scope), so an erasure evicts without a full scan;
        # ids no longer cached are skipped.
        self._owned_cache: dict[str, set[bytes]] = {}
        # Owners erased by this process whose cached keys the purge thread has yet to evict:
        # until then `_cached` treats their keys as absent, so they are re-read as destroyed.
        self._erased_here: set[str] = set()
        self._cache_ttl = cache_ttl
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._purges: queue.Queue[str | None] = queue.Queue()
        self._purger: threading.Thread | None = None
        self._hurry = threading.Event()  # set: purge without waiting for PURGE_DELAY
        self.lookups = 0  # how often the vault database was asked (for benchmarks)
        try:
            self._check_master_key()
        except BaseException:
            store.close()
            raise
        self._schedule_purge(_PURGE_ALL)  # rows a crash left behind after an erasure

    @classmethod
    def open_sqlite(
        cls, path: Path, master: MasterKey, busy_timeout: float = 30, **kwargs: Any
    ) -> KeyVault:
        return cls(_SQLiteStore(path, busy_timeout), master, **kwargs)

    @classmethod
    def open_postgres(
        cls, conninfo: str, schema: str, master: MasterKey, **kwargs: Any
    ) -> KeyVault:
        return cls(_PostgresStore(conninfo, schema), master, **kwargs)

    @staticmethod
    def sqlite_holds_keys(path: Path) -> bool:
        """Whether a vault file already exists with a master key bound to it.

        False for no file, an empty file, or a vault a crash left before its first write;
        KeyVaultError when the file cannot be read or is not a sound key vault. Creates and
        changes nothing (only a crash's hot journal is rolled back, as SQLite always does)."""
        if not path.exists() or (path.is_file() and path.stat().st_size == 0):
            return False
        try:
            with path.open("rb") as f:
                header = f.read(len(_SQLITE_HEADER))
        except OSError as e:
            raise KeyVaultError(
                f"key vault {path} cannot be read ({e.strerror}); fix its owner or permissions "
                "for the user running ticketlog, or restore it from backup"
            ) from None
        if header != _SQLITE_HEADER:
            raise _corrupt(path, "not a SQLite database: overwritten or damaged")
        try:
            conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True)
            try:
                return _inspect_vault(conn, path)
            finally:
                conn.close()
        except sqlite3.DatabaseError as e:
            raise _corrupt(path, str(e)) from None

    @staticmethod
    def postgres_holds_keys(conninfo: str, schema: str) -> bool:
        """Whether the schema already holds a vault bound to a master key (creates nothing)."""
        import psycopg

        try:
            with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
                row = conn.execute("SELECT to_regclass(%s)", [f'"{schema}".vault_meta']).fetchone()
                if row is None or row[0] is None:
                    return False
                check = conn.execute(
                    f"SELECT 1 FROM \"{schema}\".vault_meta WHERE name='master_check'"
                ).fetchone()
        except psycopg.Error as e:
            raise unreachable_postgres_vault(e) from None
        return check is not None

    def close(self) -> None:
        """Finish pending purges, then close."""
        if self._purger is not None:
            self._hurry.set()
            self._purges.put(None)
            self._purger.join()
            self._purger = None
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
                f"the master key does not open this key vault ({self._store.where}): set the "
                "TICKETLOG_MASTER_KEY or key file that made it — refusing to start rather than "
                "serve unreadable data"
            )

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A vault transaction, for tables kept beside the keys (the email blind index)."""
        with self._store.transaction() as c:
            yield c

    def meta_secret(self, name: str) -> bytes:
        """A vault-wide secret in vault_meta, wrapped by the master key; made on first use.

        Concurrent first uses agree: the loser's insert does nothing and it reads the
        winner's. Whatever re-wraps the vault under a new master key must re-wrap these too."""
        context = b"ticketlog/meta-secret|" + name.encode()
        with self._store.transaction() as c:
            c.execute(
                "INSERT INTO vault_meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                [name, self._master.wrap(secrets.token_bytes(KEY_BYTES), context)],
            )
            row = c.execute("SELECT value FROM vault_meta WHERE name=?", [name]).fetchone()
        try:
            return self._master.unwrap(bytes(row[0]), context)
        except InvalidTag as e:
            raise KeyVaultError(f"the vault secret {name} cannot be unwrapped") from e

    # Reading

    def key_by_id(self, key_id: bytes) -> DataKey:
        """The key with this id, destroyed or not; UnknownKey if the vault never had it."""
        cached = self._cached(key_id)
        if cached is not None:
            return cached
        with self._store.transaction() as c:
            row = c.execute(f"{_KEY_COLUMNS} WHERE d.key_id=?", [key_id]).fetchone()
        self.lookups += 1
        if row is None:
            raise UnknownKey(
                f"key {key_id.hex()} is not in this key vault: the vault does not match the log"
            )
        return self._remember(self._data_key(row))

    def key_for_writing(self, scope: str, owner: str | None) -> DataKey:
        """The live key of a scope, created on first use; ScopeErased if it was destroyed."""
        key = self.cached_for_writing(scope)
        if key is not None:
            return key
        return self.keys_for_writing([(scope, owner)])[scope]

    def cached_for_writing(self, scope: str) -> DataKey | None:
        """The scope's live key if this process holds it (no database access)."""
        key_id = self._scope_cache.get(scope)
        key = self._cached(key_id) if key_id is not None else None
        return None if key is None or key.destroyed else key

    def keys_for_writing(self, wanted: Iterable[tuple[str, str | None]]) -> dict[str, DataKey]:
        """The live keys of these (scope, owner) pairs, creating missing ones together.

        All keys a save needs are created in one vault transaction, committed (durably) before
        the caller writes any event sealed under them: a key must never be less durable than
        the data it seals, or a crash between the two commits would leave events sealed under
        a lost key, which is silent data loss. Raises ScopeErased (creating nothing) if any
        scope, or the owner a new key would have, was erased.
        """
        keys: dict[str, DataKey] = {}
        missing: dict[str, str | None] = {}
        for scope, owner in wanted:
            key = self.cached_for_writing(scope)
            if key is not None:
                keys[scope] = key
            else:
                missing.setdefault(scope, owner)
        if missing:
            with self._store.transaction() as c:
                found = self._rows_by_scope(c, list(missing))
                keks: dict[str, AESGCM] = {}
                new_rows = []
                for scope, owner in missing.items():
                    row = found.get(scope)
                    if row is None:
                        key, new_row = self._new_key(c, scope, owner, keks)
                        new_rows.append(new_row)
                    else:
                        key = self._data_key(row)
                    if key.destroyed:
                        raise ScopeErased(scope)  # rolls back every key this call created
                    keys[scope] = key
                if new_rows:
                    c.executemany(
                        "INSERT INTO data_keys"
                        " (key_id, scope, owner, wrapped, created_at, wrapped_by)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        new_rows,
                    )
            for scope in missing:
                self._remember(keys[scope])
        return keys

    def _rows_by_scope(self, c: Any, scopes: list[str]) -> dict[str, Any]:
        rows: dict[str, Any] = {}
        for i in range(0, len(scopes), _SCOPES_PER_QUERY):
            chunk = scopes[i : i + _SCOPES_PER_QUERY]
            marks = ", ".join("?" * len(chunk))
            for row in c.execute(f"{_KEY_COLUMNS} WHERE d.scope IN ({marks})", chunk).fetchall():
                rows[row[1]] = row
        self.lookups += len(scopes)
        return rows

    def _new_key(
        self, c: Any, scope: str, owner: str | None, keks: dict[str, AESGCM]
    ) -> tuple[DataKey, list[Any]]:
        """A new key and its data_keys row; wrapped by the owner's KEK if it has an owner."""
        if owner is None and scope.startswith("ticket:"):
            raise KeyVaultError(f"{scope} has no key and no owner to create one for")
        key_id = secrets.token_bytes(KEY_ID_BYTES)
        raw = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
        context = _wrap_context(key_id, scope)
        if owner is None:
            wrapped, wrapped_by = self._master.wrap(raw, context), None
        else:
            kek = keks.get(owner) or self._owner_kek(c, owner)
            keks[owner] = kek
            wrapped, wrapped_by = _seal_key(kek, raw, context), BY_OWNER
        row = [key_id, scope, owner, wrapped, _now(), wrapped_by]
        return DataKey(key_id, scope, owner, AESGCM(raw)), row

    def _owner_kek(self, c: Any, owner: str) -> AESGCM:
        """The owner's KEK, created on first use; ScopeErased if the owner was erased."""
        # The log may not know the owner was erased (a restored backup): the vault's
        # tombstones are what count, so never hand an erased person a key. The owner's own
        # scope emptied (an older vault's erasure, or an anonymization) refuses too.
        own = c.execute("SELECT wrapped IS NULL FROM data_keys WHERE scope=?", [owner]).fetchone()
        if own is not None and own[0]:
            raise ScopeErased(owner)
        row = c.execute("SELECT wrapped FROM owner_keys WHERE owner=?", [owner]).fetchone()
        if row is not None:
            if row[0] is None:
                raise ScopeErased(owner)
            return AESGCM(self._master.unwrap(bytes(row[0]), _kek_context(owner)))
        raw = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
        c.execute(
            "INSERT INTO owner_keys (owner, wrapped, created_at) VALUES (?, ?, ?)",
            [owner, self._master.wrap(raw, _kek_context(owner)), _now()],
        )
        return AESGCM(raw)

    def owned_scopes(self, owner: str) -> list[tuple[str, bool]]:
        """Every scope the owner has, with whether it is destroyed."""
        with self._store.transaction() as c:
            rows = c.execute(
                f"SELECT d.scope, {_DESTROYED} FROM data_keys d"
                " LEFT JOIN owner_keys o ON o.owner = d.owner WHERE d.owner=? ORDER BY d.scope",
                [owner],
            ).fetchall()
        return [(r[0], bool(r[1])) for r in rows]

    def is_destroyed(self, scope: str) -> bool:
        with self._store.transaction() as c:
            row = c.execute(
                f"SELECT {_DESTROYED} FROM data_keys d"
                " LEFT JOIN owner_keys o ON o.owner = d.owner WHERE d.scope=?",
                [scope],
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
        """Crypto-shred a person: their KEK (so every key they own) and any master-wrapped key
        they own, in one transaction. The cost does not grow with their KEK-wrapped keys."""
        now = _now()
        with self._store.transaction() as c:
            self._refuse_if_held(c, owner)
            kek = c.execute("SELECT wrapped IS NULL FROM owner_keys WHERE owner=?", [owner])
            kek_row = kek.fetchone()
            kek_live = kek_row is not None and not kek_row[0]
            # The scopes come back as one string: a person's thousand tickets then make no
            # thousand row tuples, whose allocation can set off a full garbage collection.
            # Usually every key was live until now, and one list (one sort) serves both.
            agg = self._store.scope_list
            live = "wrapped IS NOT NULL AND (wrapped_by IS NULL OR ? = 1)"
            listed, dead = c.execute(
                f"SELECT {agg.format('scope')}, SUM(CASE WHEN {live} THEN 0 ELSE 1 END)"
                " FROM data_keys WHERE owner=?",
                [int(kek_live), owner],
            ).fetchone()
            scopes = sorted(listed.split("\n")) if listed else []
            destroyed_now = list(scopes)
            if dead:
                (listed_live,) = c.execute(
                    f"SELECT {agg.format(f'CASE WHEN {live} THEN scope END')}"
                    " FROM data_keys WHERE owner=?",
                    [int(kek_live), owner],
                ).fetchone()
                destroyed_now = sorted(listed_live.split("\n")) if listed_live else []
            # The KEK's row is the owner's tombstone: even a person with no key yet gets one,
            # so no key can be created for them afterwards.
            if kek_row is None:
                c.execute(
                    "INSERT INTO owner_keys (owner, wrapped, created_at, destroyed_at)"
                    " VALUES (?, NULL, ?, ?)",
                    [owner, now, now],
                )
            elif kek_live:
                c.execute(
                    "UPDATE owner_keys SET wrapped=NULL, destroyed_at=? WHERE owner=?", [now, owner]
                )
            c.execute(
                "UPDATE data_keys SET wrapped=NULL, destroyed_at=?"
                " WHERE owner=? AND wrapped_by IS NULL AND wrapped IS NOT NULL",
                [now, owner],
            )
            if owner not in scopes:
                # The person's own scope is pinned too, for readers of older vaults' tombstones.
                c.execute(
                    "INSERT INTO data_keys"
                    " (key_id, scope, owner, wrapped, created_at, destroyed_at)"
                    " VALUES (?, ?, ?, NULL, ?, ?)",
                    [secrets.token_bytes(KEY_ID_BYTES), owner, owner, now, now],
                )
                scopes.append(owner)
            c.execute("DELETE FROM email_index WHERE owner=?", [owner])
        # Their cached keys stop being served now; evicting and freeing them (a cipher context
        # each) is left to the purge thread, off the caller's time.
        with self._lock:
            self._erased_here.add(owner)
        self._store.after_destroy()
        self._schedule_purge(owner)
        return Destruction(destroyed_now, sorted(scopes))

    def destroy_scope(self, scope: str) -> bool:
        """Crypto-shred one scope (a ticket's content, a profile); True if a key was destroyed."""
        with self._store.transaction() as c:
            row = c.execute(
                f"SELECT d.key_id, d.owner, {_DESTROYED} FROM data_keys d"
                " LEFT JOIN owner_keys o ON o.owner = d.owner"
                " WHERE d.scope=? AND d.wrapped IS NOT NULL",
                [scope],
            ).fetchone()
            if row is not None:
                self._refuse_if_held(c, row[1])
                c.execute(
                    "UPDATE data_keys SET wrapped=NULL, destroyed_at=? WHERE key_id=?",
                    [_now(), row[0]],
                )
            # A profile scope owns the person's email digest: anonymizing frees the address.
            dropped = c.execute("DELETE FROM email_index WHERE owner=?", [scope]).rowcount
        if row is None:
            if dropped:
                self._store.after_destroy()
            return False
        self._forget([bytes(row[0])])
        self._store.after_destroy()
        return not row[2]  # a key under a destroyed KEK was already gone; this only purged it

    # Purging rows left useless by a destroyed KEK

    def _schedule_purge(self, owner: str) -> None:
        if self._purger is None:
            self._purger = threading.Thread(
                target=self._purge_loop, name="vault-purge", daemon=True
            )
            self._purger.start()
        self._purges.put(owner)

    def wait_purged(self) -> None:
        """Run every scheduled purge now and wait for it (tests and benchmarks)."""
        self._hurry.set()
        self._purges.join()
        self._hurry.clear()

    def _purge_loop(self) -> None:
        while True:
            item = self._purges.get()
            try:
                if item is None:
                    return
                # Later, not at once: its writes and syncs would otherwise compete with the
                # erasure's own commit to the event store, still under way.
                self._hurry.wait(PURGE_DELAY)
                if item != _PURGE_ALL:
                    self.forget_owned_by(item)
                    with self._lock:
                        self._erased_here.discard(item)
                self._purge(item)
            except Exception as e:  # retried at the next open; the KEK is gone anyway
                log.warning("key vault purge failed: %s", type(e).__name__)
            finally:
                self._purges.task_done()

    def _purge(self, owner: str) -> None:
        """Empty the rows wrapped by a destroyed KEK: unreadable already, now gone from disk."""
        which = "" if owner == _PURGE_ALL else " AND o.owner=?"
        with self._store.transaction() as c:
            purged = c.execute(
                "UPDATE data_keys SET wrapped=NULL, destroyed_at=?"
                " WHERE wrapped IS NOT NULL AND wrapped_by=? AND owner IN"
                f" (SELECT o.owner FROM owner_keys o WHERE o.wrapped IS NULL{which})",
                [_now(), BY_OWNER] + ([] if owner == _PURGE_ALL else [owner]),
            ).rowcount
        if purged:
            self._store.after_destroy()

    # Cache

    def _data_key(self, row: Any) -> DataKey:
        key_id, scope, owner, wrapped, wrapped_by, kek = row
        key_id = bytes(key_id)
        if wrapped is None or (wrapped_by == BY_OWNER and kek is None):
            return DataKey(key_id, scope, owner, None)
        wrapped = bytes(wrapped)
        context = _wrap_context(key_id, scope)
        try:
            if wrapped_by == BY_OWNER:
                kek_raw = self._master.unwrap(bytes(kek), _kek_context(owner))
                raw = AESGCM(kek_raw).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], context)
            else:
                raw = self._master.unwrap(wrapped, context)
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
        if not key.destroyed and (
            expires < time.monotonic()
            or (self._erased_here and (key.owner or key.scope) in self._erased_here)
        ):
            with self._lock:
                self._cache.pop(key_id, None)
            return None
        return key

    def _remember(self, key: DataKey) -> DataKey:
        with self._lock:
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
                self._scope_cache.clear()
                self._owned_cache.clear()
            self._cache[key.key_id] = (time.monotonic() + self._cache_ttl, key)
            self._scope_cache[key.scope] = key.key_id
            for name in {key.owner or key.scope, key.scope}:
                self._owned_cache.setdefault(name, set()).add(key.key_id)
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
        dropped = 0
        with self._lock:
            for key_id in self._owned_cache.pop(owner, set()):
                entry = self._cache.pop(key_id, None)
                if entry is not None:
                    self._scope_cache.pop(entry[1].scope, None)
                    dropped += 1
        return dropped

    def forget_cached(self) -> None:
        """Drop every cached key (another process erased someone)."""
        with self._lock:
            self._cache.clear()
            self._scope_cache.clear()
            self._owned_cache.clear()
