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
from psycopg.sql import SQL, Identifier

from ticketlog.config import PostgresURL


class Cursor:
    def __init__(self, cursor: Any, postgres: bool) -> None:
        self._cursor = cursor
        self._postgres = postgres

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
    def sqlite(cls, path: Path) -> Database:
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(SQLiteDatastore(db_name=str(path), lock_timeout=10))

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
    def transaction(self, *, commit: bool = True) -> Iterator[Cursor]:
        with self.datastore.transaction(commit=commit) as c:
            yield Cursor(c, self.postgres)

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
