"""The notifications view and each message's delivery state, in one database.

Embedded: `$DATA_DIR/notify.db`, apart from the disposable `views.db`, because delivery state is
not derived from the log (deleting it would send everything again). PostgreSQL: the event
store's database. The view writes each message's `notification_deliveries` row in the same
transaction as its own row (a transactional outbox, so due messages are an index lookup). That
table is not one of the view's: a rebuild keeps it, and the deterministic message ids make the
rebuilt rows meet their old delivery state, so nothing is sent twice.

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
    attempts: int


class Outbox:
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

    def due(self, now: datetime, limit: int = 100) -> list[Due]:
        """Messages never tried, and those whose retry (or in-doubt lease) time has come."""
        with self.db.transaction(commit=False) as c:
            rows = c.execute(
                "SELECT n.id, n.kind, n.recipient_id, n.ticket_id, n.event_version,"
                " d.attempts AS attempts"
                " FROM notification_deliveries d"
                " JOIN view_notifications n ON n.id = d.message_id"
                " WHERE d.state = 'new'"
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
            claimed = c.execute(
                "UPDATE notification_deliveries SET state = 'sending',"
                " attempts = attempts + 1, next_attempt_at = ?, updated_at = ?"
                " WHERE message_id = ? AND attempts = ?"
                " AND state IN ('new', 'pending', 'sending') RETURNING message_id",
                [timestamp(lease_until), timestamp(now), due.message_id, due.attempts],
            ).fetchone()
        return claimed is not None

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
                "UPDATE notification_deliveries SET state = ?, next_attempt_at = ?,"
                " last_error = ?, updated_at = ?, sent_at = ? WHERE message_id = ?",
                [
                    state,
                    None if retry_at is None else timestamp(retry_at),
                    error,
                    timestamp(now),
                    timestamp(now) if state == "sent" else None,
                    message_id,
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
