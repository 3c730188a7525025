"""The notifications view and each message's delivery state, in one database.

Embedded: `$DATA_DIR/notify.db`, apart from the disposable `views.db`, because delivery state is
not derived from the log (deleting it would send everything again). PostgreSQL: the event
store's database. The view is rebuildable; `notification_deliveries` is never reset and is
keyed by the view's deterministic message ids, so a rebuild sends nothing twice.

A message is claimed (state `sending`, attempt counted, a lease set) and committed *before*
it is sent, and marked `sent` after. A crash between the two leaves it `sending`; once the lease
runs out it is sent again with the same Message-ID, which receivers use to drop the copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.persistence import ApplicationRecorder, Mapper

from projections.notifications import NotificationQueries, NotificationsView
from projections.runner import ProjectionRunner
from projections.sql import Database
from projections.store import ViewStore
from projections.views import timestamp


@dataclass(frozen=True)
class Due:
    message_id: str
    kind: str
    recipient_id: str
    ticket_id: str
    event_version: int
    attempts: int | None  # None: never tried


class Outbox:
    schema = (
        "CREATE TABLE IF NOT EXISTS notification_deliveries ("
        " message_id TEXT PRIMARY KEY, channel TEXT NOT NULL, state TEXT NOT NULL,"
        " attempts INTEGER NOT NULL, next_attempt_at TEXT, last_error TEXT,"
        " updated_at TEXT NOT NULL, sent_at TEXT)",
        "CREATE INDEX IF NOT EXISTS notification_deliveries_due"
        " ON notification_deliveries (state, next_attempt_at)",
    )

    def __init__(
        self,
        db: Database,
        recorder: ApplicationRecorder,
        mapper: Mapper,  # type: ignore[type-arg]
    ) -> None:
        self.db = db
        self.store = ViewStore(db, [NotificationsView()])
        self.runner = ProjectionRunner(recorder, mapper, self.store)
        self.queries = NotificationQueries(db)
        db.execute_script(self.schema)

    def due(self, now: datetime, limit: int = 100) -> list[Due]:
        """Messages never tried, and those whose retry (or in-doubt lease) time has come."""
        with self.db.transaction(commit=False) as c:
            rows = c.execute(
                "SELECT n.id, n.kind, n.recipient_id, n.ticket_id, n.event_version,"
                " d.attempts AS attempts"
                " FROM view_notifications n"
                " LEFT JOIN notification_deliveries d ON d.message_id = n.id"
                " WHERE d.message_id IS NULL"
                " OR (d.state IN ('pending', 'sending') AND d.next_attempt_at <= ?)"
                " ORDER BY n.created_at, n.id LIMIT ?",
                [timestamp(now), limit],
            ).fetchall()
        return [
            Due(
                r["id"],
                r["kind"],
                r["recipient_id"],
                r["ticket_id"],
                r["event_version"],
                r["attempts"],
            )
            for r in rows
        ]

    def claim(self, due: Due, lease_until: datetime, now: datetime) -> bool:
        """Take the message for one attempt; False if another worker took it first."""
        with self.db.transaction() as c:
            if due.attempts is None:
                c.execute(
                    "INSERT INTO notification_deliveries (message_id, channel, state, attempts,"
                    " next_attempt_at, updated_at) VALUES (?, 'email', 'sending', 1, ?, ?)"
                    " ON CONFLICT (message_id) DO NOTHING RETURNING message_id",
                    [due.message_id, timestamp(lease_until), timestamp(now)],
                )
            else:
                c.execute(
                    "UPDATE notification_deliveries SET state = 'sending',"
                    " attempts = attempts + 1, next_attempt_at = ?, updated_at = ?"
                    " WHERE message_id = ? AND attempts = ? AND state IN ('pending', 'sending')"
                    " RETURNING message_id",
                    [timestamp(lease_until), timestamp(now), due.message_id, due.attempts],
                )
            return c.fetchone() is not None

    def settle(
        self,
        message_id: str,
        state: str,
        now: datetime,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> None:
        """Record how the attempt ended: sent, skipped, failed, or pending until `retry_at`."""
        with self.db.transaction() as c:
            c.execute(
                "INSERT INTO notification_deliveries (message_id, channel, state, attempts,"
                " next_attempt_at, last_error, updated_at, sent_at)"
                " VALUES (?, 'email', ?, 0, ?, ?, ?, ?)"
                " ON CONFLICT (message_id) DO UPDATE SET state = excluded.state,"
                " next_attempt_at = excluded.next_attempt_at, last_error = excluded.last_error,"
                " updated_at = excluded.updated_at, sent_at = excluded.sent_at",
                [
                    message_id,
                    state,
                    None if retry_at is None else timestamp(retry_at),
                    error,
                    timestamp(now),
                    timestamp(now) if state == "sent" else None,
                ],
            )

    def counts(self) -> dict[str, int]:
        """How many notifications are in each delivery state (`new`: not tried yet)."""
        with self.db.transaction(commit=False) as c:
            rows = c.execute(
                "SELECT COALESCE(d.state, 'new') AS state, COUNT(*) AS n"
                " FROM view_notifications n"
                " LEFT JOIN notification_deliveries d ON d.message_id = n.id"
                " GROUP BY COALESCE(d.state, 'new')"
            ).fetchall()
        return {r["state"]: int(r["n"]) for r in rows}

    def deliveries(self, recipient_id: str | None = None) -> list[dict[str, Any]]:
        """Every notification with its delivery state (for operators and tests)."""
        sql = (
            "SELECT n.id, n.kind, n.recipient_id, n.ticket_id, n.event_version, n.created_at,"
            " COALESCE(d.state, 'new') AS state, COALESCE(d.attempts, 0) AS attempts,"
            " d.last_error, d.sent_at"
            " FROM view_notifications n"
            " LEFT JOIN notification_deliveries d ON d.message_id = n.id"
        )
        params: list[Any] = []
        if recipient_id is not None:
            sql += " WHERE n.recipient_id = ?"
            params.append(recipient_id)
        with self.db.transaction(commit=False) as c:
            rows = c.execute(sql + " ORDER BY n.created_at, n.id", params).fetchall()
        return [dict(r) for r in rows]
