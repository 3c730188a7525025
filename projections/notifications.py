"""The notifications view: who is to be told what, derived from the log; ids only.

Rows name a recipient, a kind and the event that caused them; nothing personal is copied here.
The delivery worker opens names, addresses and text only when it sends. A row's id is derived
from the event (ticket, version, kind, recipient), so a rebuilt view yields the same ids and
the delivery table (written with the view, never reset) still knows what was sent.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from domain.notifications import NotificationKind, Preferences, effective_preferences
from domain.ticket import Status, Ticket
from domain.user import User, UserKind
from projections.sql import Cursor, Database
from projections.views import timestamp

MESSAGE_NAMESPACE = uuid.UUID("2f1d3c4e-8a59-4a0b-9b6e-7c1f0d5e3a21")


def message_id(ticket_id: str, version: int, kind: str, recipient_id: str) -> str:
    return str(uuid.uuid5(MESSAGE_NAMESPACE, f"{ticket_id}|{version}|{kind}|{recipient_id}"))


class NotificationsView:
    name = "notifications"
    version = 1
    tables: tuple[str, ...] = (
        "view_notifications",
        "view_notify_tickets",
        "view_notify_users",
        "view_notification_prefs",
    )
    schema: tuple[str, ...] = (
        "CREATE TABLE IF NOT EXISTS view_notifications ("
        " id TEXT PRIMARY KEY, kind TEXT NOT NULL, recipient_id TEXT NOT NULL,"
        " ticket_id TEXT NOT NULL, event_version INTEGER NOT NULL, created_at TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS view_notifications_created"
        " ON view_notifications (created_at, id)",
        "CREATE TABLE IF NOT EXISTS view_notify_tickets ("
        " id TEXT PRIMARY KEY, requester_id TEXT NOT NULL, assignee_id TEXT)",
        "CREATE TABLE IF NOT EXISTS view_notify_users ("
        " id TEXT PRIMARY KEY, kind TEXT NOT NULL, erased INTEGER NOT NULL)",
        "CREATE TABLE IF NOT EXISTS view_notification_prefs ("
        " user_id TEXT PRIMARY KEY, preferences TEXT NOT NULL)",
        # The outbox: one row per message, written with the view row (same transaction) but
        # not one of the view's tables, so a rebuild keeps every message's delivery state.
        "CREATE TABLE IF NOT EXISTS notification_deliveries ("
        " message_id TEXT PRIMARY KEY, channel TEXT NOT NULL, state TEXT NOT NULL,"
        " attempts INTEGER NOT NULL, next_attempt_at TEXT, last_error TEXT,"
        " updated_at TEXT NOT NULL, sent_at TEXT)",
        "CREATE INDEX IF NOT EXISTS notification_deliveries_due"
        " ON notification_deliveries (state, next_attempt_at)",
    )

    def flush(self, c: Cursor) -> None:
        pass  # writes as it applies: nothing put off

    def apply(self, c: Cursor, event: Any) -> None:
        if isinstance(event, User.Registered):
            c.execute(
                "INSERT INTO view_notify_users (id, kind, erased) VALUES (?, ?, 0)",
                [str(event.originator_id), event.kind],
            )
        elif isinstance(event, User.SubjectErased):
            c.execute(
                "UPDATE view_notify_users SET erased = 1 WHERE id = ?", [str(event.originator_id)]
            )
        elif isinstance(event, User.NotificationPreferencesSet):
            c.execute(
                "DELETE FROM view_notification_prefs WHERE user_id = ?", [str(event.originator_id)]
            )
            c.execute(
                "INSERT INTO view_notification_prefs (user_id, preferences) VALUES (?, ?)",
                [str(event.originator_id), orjson.dumps(event.preferences).decode()],
            )
        elif isinstance(event, Ticket.Opened):
            c.execute(
                "INSERT INTO view_notify_tickets (id, requester_id) VALUES (?, ?)",
                [str(event.originator_id), str(event.requester_id)],
            )
        elif isinstance(event, Ticket.Assigned):
            c.execute(
                "UPDATE view_notify_tickets SET assignee_id = ? WHERE id = ?",
                [str(event.assignee_id), str(event.originator_id)],
            )
            self._notify(c, event, NotificationKind.TICKET_ASSIGNED, str(event.assignee_id))
        elif isinstance(event, Ticket.CommentAdded) and event.public:
            self._comment(c, event)
        elif isinstance(event, Ticket.StatusChanged) and event.status == Status.SOLVED.value:
            requester, _ = self._parties(c, event)
            self._notify(c, event, NotificationKind.TICKET_SOLVED, requester)

    def _comment(self, c: Cursor, event: Ticket.CommentAdded) -> None:
        requester, assignee = self._parties(c, event)
        author = str(event.author_id)
        if author == requester:
            if assignee is not None:
                self._notify(c, event, NotificationKind.REQUESTER_REPLY, assignee)
            return
        row = c.execute("SELECT kind FROM view_notify_users WHERE id = ?", [author]).fetchone()
        if row is not None and row["kind"] == UserKind.AGENT.value:
            self._notify(c, event, NotificationKind.AGENT_REPLY, requester)

    @staticmethod
    def _parties(c: Cursor, event: Any) -> tuple[str, str | None]:
        row = c.execute(
            "SELECT requester_id, assignee_id FROM view_notify_tickets WHERE id = ?",
            [str(event.originator_id)],
        ).fetchone()
        return row["requester_id"], row["assignee_id"]

    @staticmethod
    def _notify(c: Cursor, event: Any, kind: NotificationKind, recipient_id: str) -> None:
        ticket_id = str(event.originator_id)
        version = event.originator_version
        message = message_id(ticket_id, version, kind.value, recipient_id)
        at = timestamp(event.occurred_at)
        c.execute(
            "INSERT INTO view_notifications (id, kind, recipient_id, ticket_id, event_version,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?)",
            [message, kind.value, recipient_id, ticket_id, version, at],
        )
        c.execute(
            "INSERT INTO notification_deliveries (message_id, channel, state, attempts,"
            " updated_at) VALUES (?, 'email', 'new', 0, ?) ON CONFLICT (message_id) DO NOTHING",
            [message, at],
        )


class NotificationQueries:
    def __init__(self, db: Database) -> None:
        self.db = db

    def preferences(self, user_id: str) -> Preferences:
        with self.db.transaction(commit=False) as c:
            row = c.execute(
                "SELECT preferences FROM view_notification_prefs WHERE user_id = ?", [user_id]
            ).fetchone()
        return effective_preferences(None if row is None else orjson.loads(row["preferences"]))

    def user_erased(self, user_id: str) -> bool:
        with self.db.transaction(commit=False) as c:
            row = c.execute(
                "SELECT erased FROM view_notify_users WHERE id = ?", [user_id]
            ).fetchone()
        return bool(row and row["erased"])
