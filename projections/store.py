"""The view database: view tables plus the library's tracking table, on SQLite or PostgreSQL."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteDatastore, SQLiteTrackingRecorder

from projections.sql import Cursor, Database
from projections.views import View

TRACKING_TABLE_POSTGRES = "view_tracking"
SORTER_THREADS = min(os.cpu_count() or 1, 4)
# Index statements a rebuild drops and builds again at its end. Unique ones too: no view
# relies on a unique index while applying events (ON CONFLICT targets primary keys only).
_CREATE_INDEX = ("CREATE INDEX IF NOT EXISTS ", "CREATE UNIQUE INDEX IF NOT EXISTS ")


def build_of(c: Cursor, view_name: str) -> str | None:
    """The view's build: a new random name each time its tables are emptied or recreated, so
    that what a process keeps from a view's rows can tell that the view was built again (by
    any process, possibly with its events applied in another order across Kafka partitions)."""
    rows = c.tuples("SELECT build FROM view_builds WHERE name = ?", [view_name])
    return rows[0][0] if rows else None


def _new_build(c: Cursor, view_name: str) -> None:
    c.execute(
        "INSERT INTO view_builds (name, build) VALUES (?, ?)"
        " ON CONFLICT (name) DO UPDATE SET build = excluded.build",
        [view_name, secrets.token_hex(8)],
    )


def _index_statements(view: View) -> list[str]:
    return [s for s in view.schema if s.startswith(_CREATE_INDEX)]


def _index_names(view: View) -> list[str]:
    return [s.split(" IF NOT EXISTS ", 1)[1].split()[0] for s in _index_statements(view)]


class ViewStore:
    """Where views live. A view's rows and its position are always written in one transaction."""

    def __init__(self, db: Database, views: Sequence[View]) -> None:
        self.db = db
        self.views = list(views)
        self.tracking: SQLiteTrackingRecorder | PostgresTrackingRecorder
        if isinstance(db.datastore, SQLiteDatastore):
            self.tracking = SQLiteTrackingRecorder(db.datastore)
            self.tracking_table = "tracking"
        else:
            assert isinstance(db.datastore, PostgresDatastore)
            self.tracking = PostgresTrackingRecorder(
                db.datastore, tracking_table_name=TRACKING_TABLE_POSTGRES
            )
            self.tracking_table = TRACKING_TABLE_POSTGRES
        try:
            self.tracking.create_table()
        except IntegrityError:  # another process created it a moment ago (PostgreSQL race)
            self.tracking.create_table()
        self.create_tables()

    def create_tables(self) -> None:
        """Create missing tables; a view whose version changed is dropped and rebuilt."""
        self.db.execute_script(
            [
                "CREATE TABLE IF NOT EXISTS view_versions (name TEXT PRIMARY KEY, version INTEGER)",
                "CREATE TABLE IF NOT EXISTS view_builds ("
                " name TEXT PRIMARY KEY, build TEXT NOT NULL)",
            ]
        )
        with self.db.transaction() as c:
            stored = {
                r["name"]: r["version"]
                for r in c.execute("SELECT name, version FROM view_versions").fetchall()
            }
            for view in self.views:
                if stored.get(view.name) == view.version:
                    continue
                for table in view.tables:
                    c.execute(f"DROP TABLE IF EXISTS {table}")
                c.execute(
                    f"DELETE FROM {self.tracking_table} WHERE application_name = ?", [view.name]
                )
                c.execute("DELETE FROM view_versions WHERE name = ?", [view.name])
                c.execute(
                    "INSERT INTO view_versions (name, version) VALUES (?, ?)",
                    [view.name, view.version],
                )
                _new_build(c, view.name)
        # One statement per transaction: on PostgreSQL, CREATE INDEX IF NOT EXISTS locks its
        # table even when the index exists, and holding several such locks at once while a
        # projector in another process writes those tables is a deadlock.
        for statement in (s for view in self.views for s in view.schema):
            self.db.execute_script([statement])

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[Cursor]:
        with self.db.transaction(durable=durable) as c:
            yield c

    def record_position(self, c: Cursor, view: View, notification_id: int) -> None:
        """Raises the library's IntegrityError if another runner already went past it."""
        self.tracking._insert_tracking(c.raw, Tracking(view.name, notification_id))

    def position(self, view: View) -> int:
        return self.tracking.max_tracking_id(view.name) or 0

    def positions(self, views: Sequence[View]) -> list[int]:
        """Each view's position, in one query (a command's catch-up asks on every request)."""
        with self.db.transaction(commit=False) as c:
            reached = dict(
                c.tuples(
                    f"SELECT application_name, MAX(notification_id) FROM {self.tracking_table}"
                    " GROUP BY application_name"
                )
            )
        return [reached.get(view.name) or 0 for view in views]

    def reset(self, views: Sequence[View], *, drop_indexes: bool = False) -> bool:
        """Empty the given views and forget their positions, in one transaction.

        With `drop_indexes`, on SQLite, their secondary indexes go too: building an index once
        from a full table is cheaper than keeping it up to date through a rebuild's inserts
        (the index pages of random ids are rewritten batch after batch). Returns whether they
        were dropped; `create_indexes` puts them back, and so does opening the store, should the
        process die before that. Not on PostgreSQL, whose index DDL takes table locks that a
        scaled projector in another process may be waiting behind (see `create_tables`).
        """
        dropping = drop_indexes and not self.db.postgres
        with self.db.transaction() as c:
            for view in views:
                if dropping:
                    for name in _index_names(view):
                        c.execute(f"DROP INDEX IF EXISTS {name}")
                for table in view.tables:
                    c.execute(f"DELETE FROM {table}")
                c.execute(
                    f"DELETE FROM {self.tracking_table} WHERE application_name = ?", [view.name]
                )
                _new_build(c, view.name)
        return dropping

    def create_indexes(self, views: Sequence[View]) -> None:
        """Create the views' missing indexes (those `reset` dropped)."""
        # SQLite sorts a new index's entries on helper threads when the connection allows it.
        sorters = [] if self.db.postgres else [f"PRAGMA threads = {SORTER_THREADS}"]
        for view in views:
            self.db.execute_script([*sorters, *_index_statements(view)])

    def close(self) -> None:
        self.db.close()
