"""A Merkle leaf per stored event, written in the same transaction as the event.

The leaf hashes exactly what is stored (personal fields as ciphertext), so destroying a key
changes no hash. The recorders below are the library's, plus one INSERT into `merkle_leaves`
on the cursor that inserted the events; `leaf_index` is the event's position in the tree.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor, SQLiteDatastore
from psycopg.sql import SQL, Identifier

from crypto.merkle import leaf_hash

LEAVES_TABLE = "merkle_leaves"
CHECKPOINTS_TABLE = "checkpoints"

# Portable DDL (SQLite keeps BYTEA values as the bytes given); leaf_index is the tree position.
AUDIT_TABLES = (
    f"CREATE TABLE IF NOT EXISTS {LEAVES_TABLE} ("
    "leaf_index BIGINT PRIMARY KEY, notification_id BIGINT NOT NULL UNIQUE, "
    "leaf_hash BYTEA NOT NULL)",
    f"CREATE TABLE IF NOT EXISTS {CHECKPOINTS_TABLE} ("
    "tree_size BIGINT PRIMARY KEY, root_hash BYTEA NOT NULL, note TEXT NOT NULL, "
    "created_at TEXT NOT NULL)",
)


def _framed(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def leaf_data(
    notification_id: int, originator_id: UUID | str, version: int, topic: str, state: bytes
) -> bytes:
    """The canonical, length-prefixed encoding of one stored event."""
    oid = originator_id if isinstance(originator_id, UUID) else UUID(str(originator_id))
    return b"".join(
        (
            struct.pack(">Q", notification_id),
            _framed(oid.bytes),
            struct.pack(">Q", version),
            _framed(topic.encode()),
            _framed(bytes(state)),
        )
    )


def event_leaf_hash(
    notification_id: int, originator_id: UUID | str, version: int, topic: str, state: bytes
) -> bytes:
    return leaf_hash(leaf_data(notification_id, originator_id, version, topic, state))


def _hashes(ids: Sequence[int], stored_events: Sequence[StoredEvent]) -> list[bytes]:
    if len(ids) != len(stored_events):
        raise RuntimeError("the store returned a notification id per event, or none")
    return [
        event_leaf_hash(n, s.originator_id, s.originator_version, s.topic, s.state)
        for n, s in zip(ids, stored_events, strict=True)
    ]


_INSERT_LEAF = (
    f"INSERT INTO {LEAVES_TABLE} (leaf_index, notification_id, leaf_hash) "
    f"VALUES ((SELECT COALESCE(MAX(leaf_index), -1) + 1 FROM {LEAVES_TABLE}), ?, ?)"
)


class LeafSQLiteRecorder(SQLiteApplicationRecorder):
    """Inserts events and their leaves in one SQLite transaction (the writer lock orders them)."""

    def __init__(self, datastore: SQLiteDatastore, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name)

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), *AUDIT_TABLES]

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        ids = super()._insert_events(c, stored_events, **kwargs) or []
        if ids:  # one statement for the save's leaves; each row still takes the next position
            c.executemany(_INSERT_LEAF, zip(ids, _hashes(ids, stored_events), strict=True))
        return ids


class LeafPostgresRecorder(PostgresApplicationRecorder):
    """Inserts leaves after the events, in their transaction, while the library's EXCLUSIVE
    table lock is held: notification ids and leaf positions are handed out and committed in
    one order, so no reader ever sees a later leaf before an earlier one."""

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"):
        if datastore.enable_db_functions:
            raise ValueError("POSTGRES_ENABLE_DB_FUNCTIONS would bypass the Merkle leaves")
        super().__init__(datastore, events_table_name=events_table_name)
        for ddl in AUDIT_TABLES:
            self.sql_create_statements.append(
                SQL(ddl.replace("IF NOT EXISTS ", "IF NOT EXISTS {schema}.")).format(
                    schema=Identifier(datastore.schema)
                )
            )
        self._insert_leaves = SQL(
            "INSERT INTO {schema}.{leaves} (leaf_index, notification_id, leaf_hash) "
            "SELECT (SELECT COALESCE(MAX(leaf_index), -1) FROM {schema}.{leaves}) + t.ord, "
            "t.nid, t.digest FROM unnest(%s::bigint[], %s::bytea[]) "
            "WITH ORDINALITY AS t(nid, digest, ord)"
        ).format(schema=Identifier(datastore.schema), leaves=Identifier(LEAVES_TABLE))

    def _fetch_ids_after_insert_events(
        self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs) or []
        if ids:
            curs.execute(self._insert_leaves, (list(ids), _hashes(ids, stored_events)))
        return ids
