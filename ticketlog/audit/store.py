"""Reads the event store's events, Merkle leaves and checkpoints directly: no key vault, no app.

Every read is paged by position, so a long log streams through bounded memory.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import NAMESPACE_OID, UUID, uuid5

from crypto.merkle import (
    RootBuilder,
    consistency_proof,
    inclusion_proof,
    node_hash,
    split_point,
)
from projections.sql import Cursor, Database
from ticketlog.audit.leaves import AUDIT_TABLES, CHECKPOINTS_TABLE, LEAVES_TABLE, event_leaf_hash
from ticketlog.config import ConfigError, Settings

PAGE = 2000
CACHED_BLOCK = 256  # aligned blocks of more leaves than this keep their roots in memory
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class StoredRow:
    """One event exactly as stored, with its notification id."""

    notification_id: int
    originator_id: UUID
    version: int
    topic: str
    state: bytes

    def leaf_hash(self, notification_id: int | None = None) -> bytes:
        """The leaf this event makes at its own id (or, to diagnose a swap, at another)."""
        n = self.notification_id if notification_id is None else notification_id
        return event_leaf_hash(n, self.originator_id, self.version, self.topic, self.state)


@dataclass(frozen=True)
class Leaf:
    index: int
    notification_id: int
    digest: bytes


@dataclass(frozen=True)
class StoredCheckpoint:
    size: int
    root: bytes
    note: str
    created_at: str


class AuditLog:
    """The event store seen as a log: events, leaves (positions) and signed checkpoints."""

    def __init__(
        self, db: Database, events_table: str, id_column: str, *, owns_db: bool = True
    ) -> None:
        self.db = db
        self.events_table = events_table
        self.id_column = id_column
        self.owns_db = owns_db
        self._blocks: dict[tuple[int, int], bytes] = {}  # (start, size) -> root

    @classmethod
    def beside(cls, settings: Settings, pg_db: Database) -> AuditLog:
        """For a runtime: on PostgreSQL, share its pool on the same schema (connections are
        scarce); on SQLite, open events.db."""
        if settings.postgres is not None:
            return cls(pg_db, "ticketlog_events", "notification_id", owns_db=False)
        return cls.open(settings)

    @classmethod
    def open(cls, settings: Settings, *, must_exist: bool = True) -> AuditLog:
        pg = settings.postgres
        if pg is not None:
            # The library names the PostgreSQL table after the application (HelpDesk.name).
            return cls(Database.postgresql(pg), "ticketlog_events", "notification_id")
        if must_exist and not settings.events_path.exists():
            raise ConfigError(f"no event store at {settings.events_path}")
        return cls(Database.sqlite(settings.events_path), "stored_events", "rowid")

    def close(self) -> None:
        if self.owns_db:
            self.db.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ensure_tables(self) -> None:
        self.db.execute_script(AUDIT_TABLES)

    def _events_exist(self, c: Cursor) -> bool:
        if self.db.postgres:
            row = c.execute(
                "SELECT to_regclass(?) IS NOT NULL AS found", [self.events_table]
            ).fetchone()
            return bool(row["found"])
        row = c.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [self.events_table]
        ).fetchone()
        return row is not None

    def has_leaves(self) -> bool:
        """Whether this store has the Merkle leaves table (stores made before it do not)."""
        with self.db.transaction(commit=False) as c:
            if self.db.postgres:
                sql = "SELECT to_regclass(?) IS NOT NULL AS found"
                return bool(c.execute(sql, [LEAVES_TABLE]).fetchone()["found"])
            sql = "SELECT 1 AS found FROM sqlite_master WHERE type = 'table' AND name = ?"
            return c.execute(sql, [LEAVES_TABLE]).fetchone() is not None

    # Events

    def event_count(self) -> int:
        with self.db.transaction(commit=False) as c:
            if not self._events_exist(c):
                return 0
            return int(c.execute(f"SELECT COUNT(*) AS n FROM {self.events_table}").fetchone()["n"])

    def _event_rows(self, c: Cursor, where: str, params: list[object]) -> list[StoredRow]:
        rows = c.execute(
            f"SELECT {self.id_column} AS nid, originator_id, originator_version, topic, state "
            f"FROM {self.events_table} WHERE {where} ORDER BY {self.id_column} LIMIT {PAGE}",
            params,
        ).fetchall()
        return [_stored_row(r) for r in rows]

    def events(self, after: int = 0, stop: int | None = None) -> Iterator[StoredRow]:
        """Every stored event with notification id in (after, stop], in notification order."""
        stop = (1 << 62) if stop is None else stop
        while True:
            with self.db.transaction(commit=False) as c:
                if not self._events_exist(c):
                    return
                page = self._event_rows(
                    c, f"{self.id_column} > ? AND {self.id_column} <= ?", [after, stop]
                )
            yield from page
            if len(page) < PAGE:
                return
            after = page[-1].notification_id

    def events_of_topic(self, topic: str) -> Iterator[StoredRow]:
        after = 0
        while True:
            with self.db.transaction(commit=False) as c:
                if not self._events_exist(c):
                    return
                page = self._event_rows(c, f"{self.id_column} > ? AND topic = ?", [after, topic])
            yield from page
            if len(page) < PAGE:
                return
            after = page[-1].notification_id

    def entries(self, after: int, limit: int) -> list[tuple[StoredRow, Leaf | None]]:
        """Events after a notification id, each with its leaf (None: it has no leaf)."""
        with self.db.transaction(commit=False) as c:
            if not self._events_exist(c):
                return []
            rows = c.execute(
                f"SELECT e.{self.id_column} AS nid, e.originator_id, e.originator_version, "
                "e.topic, e.state, l.leaf_index, l.leaf_hash "
                f"FROM {self.events_table} e LEFT JOIN {LEAVES_TABLE} l "
                f"ON l.notification_id = e.{self.id_column} "
                f"WHERE e.{self.id_column} > ? ORDER BY e.{self.id_column} LIMIT ?",
                [after, limit],
            ).fetchall()
        out = []
        for r in rows:
            row = _stored_row(r)
            leaf = None if r["leaf_index"] is None else _leaf(r, row.notification_id)
            out.append((row, leaf))
        return out

    def event(self, notification_id: int) -> StoredRow | None:
        with self.db.transaction(commit=False) as c:
            page = self._event_rows(c, f"{self.id_column} = ?", [notification_id])
        return page[0] if page else None

    def max_event_id(self) -> int:
        with self.db.transaction(commit=False) as c:
            if not self._events_exist(c):
                return 0
            row = c.execute(
                f"SELECT MAX({self.id_column}) AS n FROM {self.events_table}"
            ).fetchone()
        return int(row["n"] or 0)

    # Leaves

    def tree_size(self) -> int:
        with self.db.transaction(commit=False) as c:
            row = c.execute(f"SELECT MAX(leaf_index) AS n FROM {LEAVES_TABLE}").fetchone()
        return 0 if row["n"] is None else int(row["n"]) + 1

    def leaves(self, start: int = 0, end: int | None = None) -> Iterator[Leaf]:
        """Leaves with start <= index < end, in order."""
        end = (1 << 62) if end is None else end
        while start < end:
            with self.db.transaction(commit=False) as c:
                rows = c.execute(
                    f"SELECT leaf_index, notification_id, leaf_hash FROM {LEAVES_TABLE} "
                    f"WHERE leaf_index >= ? AND leaf_index < ? ORDER BY leaf_index LIMIT {PAGE}",
                    [start, end],
                ).fetchall()
            yield from (_leaf(r) for r in rows)
            if len(rows) < PAGE:
                return
            start = int(rows[-1]["leaf_index"]) + 1

    def leaf_of_event(self, notification_id: int) -> Leaf | None:
        with self.db.transaction(commit=False) as c:
            r = c.execute(
                f"SELECT leaf_index, notification_id, leaf_hash FROM {LEAVES_TABLE} "
                "WHERE notification_id = ?",
                [notification_id],
            ).fetchone()
        return None if r is None else _leaf(r)

    def subtree_root(self, start: int, end: int) -> bytes:
        """The root of leaves [start, end). Large ranges split as RFC 6962 splits them, and
        the roots of whole aligned blocks (which never change once written) are remembered,
        so a proof costs a few small reads rather than a pass over the log."""
        n = end - start
        if n <= CACHED_BLOCK:
            return self._read_root(start, end)
        if n & (n - 1) == 0 and start % n == 0:
            cached = self._blocks.get((start, n))
            if cached is None:
                half = n // 2
                cached = node_hash(
                    self.subtree_root(start, start + half), self.subtree_root(start + half, end)
                )
                self._blocks[(start, n)] = cached
            return cached
        k = split_point(n)
        return node_hash(self.subtree_root(start, start + k), self.subtree_root(start + k, end))

    def _read_root(self, start: int, end: int) -> bytes:
        builder = RootBuilder()
        for leaf in self.leaves(start, end):
            if leaf.index != start + builder.size:
                raise LogGap(start + builder.size)
            builder.add(leaf.digest)
        if builder.size != end - start:
            raise LogGap(start + builder.size)
        return builder.root()

    def root(self, size: int) -> bytes:
        return self.subtree_root(0, size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return inclusion_proof(index, size, self.subtree_root)

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        return consistency_proof(first, second, self.subtree_root)

    def backfill(self, progress: Progress | None = None) -> int:
        """Hash events stored before this log had leaves; returns how many were added.

        Runs only on a store that has events but no leaves and no checkpoint at all (a data
        directory from before the verifiable log). Events without leaves in any other store
        were not written through the recorder, so `verify` reports them as inserted.
        """
        self.ensure_tables()
        if self.tree_size() > 0:
            return 0  # the usual case: no lock needed
        with self.db.transaction() as c:
            if not self._events_exist(c):
                return 0
            if self.db.postgres:
                # The lock the library's writers take: no event lands while we hash.
                c.execute(f"LOCK TABLE {self.events_table} IN EXCLUSIVE MODE")
            else:
                c.execute(f"DELETE FROM {LEAVES_TABLE} WHERE 0")  # take the writer lock now
            if c.execute(f"SELECT 1 FROM {LEAVES_TABLE} LIMIT 1").fetchone() is not None:
                return 0
            if c.execute(f"SELECT 1 FROM {CHECKPOINTS_TABLE} LIMIT 1").fetchone() is not None:
                return 0
            total = int(c.execute(f"SELECT COUNT(*) AS n FROM {self.events_table}").fetchone()["n"])
            done, after = 0, 0
            while True:
                page = self._event_rows(c, f"{self.id_column} > ?", [after])
                c.executemany(
                    f"INSERT INTO {LEAVES_TABLE} (leaf_index, notification_id, leaf_hash) "
                    "VALUES (?, ?, ?)",
                    [
                        (done + i, row.notification_id, row.leaf_hash())
                        for i, row in enumerate(page)
                    ],
                )
                done += len(page)
                if progress is not None and page:
                    progress(done, total)
                if len(page) < PAGE:
                    return done
                after = page[-1].notification_id

    # Checkpoints

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        with self.db.transaction(commit=False) as c:
            r = c.execute(
                f"SELECT tree_size, root_hash, note, created_at FROM {CHECKPOINTS_TABLE} "
                "ORDER BY tree_size DESC LIMIT 1"
            ).fetchone()
        return None if r is None else _checkpoint(r)

    def checkpoints(self) -> list[StoredCheckpoint]:
        with self.db.transaction(commit=False) as c:
            rows = c.execute(
                f"SELECT tree_size, root_hash, note, created_at FROM {CHECKPOINTS_TABLE} "
                "ORDER BY tree_size"
            ).fetchall()
        return [_checkpoint(r) for r in rows]

    def add_checkpoint(self, size: int, root: bytes, note: str) -> None:
        """Idempotent: two processes signing the same tree store one checkpoint."""
        created_at = datetime.now(UTC).isoformat()
        with self.db.transaction() as c:
            c.execute(
                f"INSERT INTO {CHECKPOINTS_TABLE} (tree_size, root_hash, note, created_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (tree_size) DO NOTHING",
                [size, root, note, created_at],
            )


def _stored_row(r: Any) -> StoredRow:
    # A hand-edited row may hold any type SQLite accepts: read it as what it is, never crash,
    # and let its hash show the change.
    oid = r["originator_id"]
    if not isinstance(oid, UUID):
        try:
            oid = UUID(str(oid))
        except ValueError:
            oid = uuid5(NAMESPACE_OID, str(oid))
    state = r["state"]
    if not isinstance(state, bytes | memoryview):
        state = b"" if state is None else str(state).encode()
    return StoredRow(
        int(r["nid"]), oid, int(r["originator_version"] or 0), str(r["topic"]), bytes(state)
    )


def _leaf(r: Any, notification_id: int | None = None) -> Leaf:
    nid = r["notification_id"] if notification_id is None else notification_id
    return Leaf(int(r["leaf_index"]), int(nid), bytes(r["leaf_hash"]))


def _checkpoint(r: Any) -> StoredCheckpoint:
    return StoredCheckpoint(int(r["tree_size"]), bytes(r["root_hash"]), r["note"], r["created_at"])


class LogGap(Exception):
    """The leaves table has no leaf at a position a proof needs."""

    def __init__(self, index: int) -> None:
        super().__init__(f"the log has no leaf at position {index}")
        self.index = index


def event_store_exists(settings: Settings) -> bool:
    if settings.postgres is not None:
        return True
    path = settings.events_path
    if not path.exists():
        return False
    lite = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return lite.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is not None
    finally:
        lite.close()
