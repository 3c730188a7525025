"""A thin layer over the `eventsourcing` library's SQLite and PostgreSQL datastores.

Statements are written once with `?` placeholders and run on either engine; rows are read by
column name on both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.sqlite import SQLiteDatastore
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from ticketlog.config import PostgresURL

BATCH_CACHE_KIB = 65_536  # SQLite's page cache during a non-durable (batch) transaction


class Cursor:
    def __init__(self, cursor: Any, postgres: bool) -> None:
        self._cursor = cursor
        self._postgres = postgres
        # Work a view puts off to the end of its batch (`View.flush`), by view name. It lives
        # and dies with the transaction, so a batch that fails leaves nothing behind.
        self.deferred: dict[str, Any] = {}

    def execute(self, sql: str, params: Iterable[Any] = ()) -> Cursor:
        if self._postgres:
            sql = sql.replace("?", "%s")
        self._cursor.execute(sql, tuple(params))
        return self

    def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        if self._postgres:
            sql = sql.replace("?", "%s")
        self._cursor.executemany(sql, [tuple(r) for r in rows])

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def tuples(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows as plain tuples in the SELECT's column order: several times cheaper than rows
        read by name, for queries that return many rows (reports)."""
        raw = self._cursor if self._postgres else self._cursor.sqlite_cursor
        before = raw.row_factory
        raw.row_factory = tuple_row if self._postgres else None
        try:
            self.execute(sql, params)
            return list(raw.fetchall())
        finally:
            raw.row_factory = before

    def fetchall(self) -> list[Any]:
        return list(self._cursor.fetchall())

    @property
    def raw(self) -> Any:
        """The engine's own cursor (for the library's `_insert_tracking`)."""
        return self._cursor


class SchemaDatastore(PostgresDatastore):
    """The library's datastore, with our unqualified table names resolved in its schema."""

    def after_connect_func(self) -> Callable[[Any], None]:
        library_setup = super().after_connect_func()
        search_path = SQL("SET search_path TO {0}").format(Identifier(self.schema))

        def after_connect(conn: Any) -> None:
            library_setup(conn)
            conn.cursor().execute(search_path)

        return after_connect


class Database:
    """One database holding tables of ours, on SQLite or PostgreSQL."""

    def __init__(self, datastore: SQLiteDatastore | PostgresDatastore) -> None:
        self.datastore = datastore
        self.postgres = isinstance(datastore, PostgresDatastore)

    @classmethod
    def sqlite(cls, path: Path, lock_timeout: int | None = None) -> Database:
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(SQLiteDatastore(db_name=str(path), lock_timeout=lock_timeout or 10))

    @classmethod
    def postgresql(cls, url: PostgresURL) -> Database:
        ensure_schema(url)
        return cls(
            SchemaDatastore(
                dbname=url.dbname,
                host=url.host,
                port=url.port,
                user=url.user,
                password=url.password,
                schema=url.schema,
                pool_size=5,
                max_overflow=10,
            )
        )

    @contextmanager
    def transaction(self, *, commit: bool = True, durable: bool = True) -> Iterator[Cursor]:
        """`durable=False` lets the commit return before it reaches the disk: a crash may then
        lose the last transactions whole, never half of one (SQLite WAL `synchronous=NORMAL`,
        PostgreSQL `synchronous_commit=off`). For work that is simply redone if lost."""
        if durable or self.postgres:
            with self.datastore.transaction(commit=commit) as c:
                if not durable:
                    c.execute("SET LOCAL synchronous_commit = off")
                yield Cursor(c, self.postgres)
            return
        assert isinstance(self.datastore, SQLiteDatastore)
        with self.datastore.get_connection(commit=commit) as conn:
            pragmas = conn.cursor()
            pragmas.execute("PRAGMA wal_autocheckpoint")
            checkpoint_pages = pragmas.fetchone()[0]
            pragmas.execute("PRAGMA synchronous")
            synchronous = pragmas.fetchone()[0]
            pragmas.execute("PRAGMA cache_size")
            cache_size = pragmas.fetchone()[0]
            try:
                pragmas.execute("PRAGMA synchronous = NORMAL")  # not allowed inside one
                # Copying the WAL back into the database after ten times as many pages: a page
                # that batch after batch rewrites (an index's, a busy ticket's) is then copied
                # and synced once instead of ten times. The WAL is emptied on the next
                # checkpoint.
                pragmas.execute(f"PRAGMA wal_autocheckpoint = {checkpoint_pages * 10}")
                # A batch's pages stay cached for its whole transaction: 2,000 events touch a
                # few hundred tickets in every view table, and SQLite's default 2 MB cache
                # evicted and re-read them within the batch once the tables outgrew it (a
                # million-event rebuild 5-8% faster). Given back at the end, so memory does not
                # grow with the log. A cache set in pages (positive) is someone's choice: kept.
                if -BATCH_CACHE_KIB < cache_size < 0:
                    pragmas.execute(f"PRAGMA cache_size = -{BATCH_CACHE_KIB}")
                with conn.transaction(commit=commit) as c:
                    yield Cursor(c, self.postgres)
            finally:
                pragmas.execute(f"PRAGMA synchronous = {int(synchronous)}")
                pragmas.execute(f"PRAGMA wal_autocheckpoint = {int(checkpoint_pages)}")
                pragmas.execute(f"PRAGMA cache_size = {int(cache_size)}")

    def execute_script(self, statements: Iterable[str]) -> None:
        with self.transaction() as c:
            if self.postgres:
                # Processes starting together (scaled projectors) would race on CREATE ... IF
                # NOT EXISTS, which PostgreSQL does not make atomic: take turns.
                c.execute("SELECT pg_advisory_xact_lock(hashtext('ticketlog.schema'))")
            for statement in statements:
                c.execute(statement)

    def close(self) -> None:
        self.datastore.close()


def ensure_schema(url: PostgresURL) -> None:
    """The library expects the schema to exist; create it on first use."""
    with psycopg.connect(url.conninfo(), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{url.schema}"')  # name checked by parse()
