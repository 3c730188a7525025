"""The help desk's views: users, tickets and comments, as the API reads them.

Each view applies events to its tables through a cursor that the runner commits together
with the view's tracking position. Personal fields arrive as `Sealed` values and are stored
as such (`Sealed.to_text()`), never opened here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from crypto.fields import Sealed
from domain.ticket import Ticket
from domain.user import User
from projections.sql import Cursor


def timestamp(value: datetime) -> str:
    """A fixed-width UTC text time, so text order is time order on both engines."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def sealed_text(value: Any) -> str:
    if not isinstance(value, Sealed):
        raise TypeError("views only ever store personal fields sealed")
    return value.to_text()


class View(Protocol):
    name: str
    tables: tuple[str, ...]
    schema: tuple[str, ...]

    def apply(self, c: Cursor, event: Any) -> None: ...


class HelpDeskView:
    """Users, tickets and comments; one tracking position for the three tables."""

    name = "helpdesk"
    tables: tuple[str, ...] = ("view_ticket_comments", "view_tickets", "view_users")
    schema: tuple[str, ...] = (
        "CREATE TABLE IF NOT EXISTS view_users ("
        " id TEXT PRIMARY KEY, kind TEXT NOT NULL,"
        " name TEXT, email TEXT, phone TEXT, organization TEXT,"
        " erased INTEGER NOT NULL DEFAULT 0,"
        " created_at TEXT NOT NULL, updated_at TEXT NOT NULL, version INTEGER NOT NULL)",
        "CREATE TABLE IF NOT EXISTS view_tickets ("
        " id TEXT PRIMARY KEY, requester_id TEXT NOT NULL, assignee_id TEXT,"
        " status TEXT NOT NULL, priority TEXT NOT NULL, tags TEXT NOT NULL,"
        " subject TEXT, body TEXT,"
        " created_at TEXT NOT NULL, updated_at TEXT NOT NULL, version INTEGER NOT NULL)",
        "CREATE INDEX IF NOT EXISTS view_tickets_created ON view_tickets (created_at, id)",
        "CREATE INDEX IF NOT EXISTS view_tickets_status ON view_tickets (status, created_at, id)",
        "CREATE INDEX IF NOT EXISTS view_tickets_requester"
        " ON view_tickets (requester_id, created_at, id)",
        "CREATE INDEX IF NOT EXISTS view_tickets_assignee"
        " ON view_tickets (assignee_id, created_at, id)",
        "CREATE TABLE IF NOT EXISTS view_ticket_comments ("
        " ticket_id TEXT NOT NULL, version INTEGER NOT NULL, author_id TEXT NOT NULL,"
        " body TEXT, public INTEGER NOT NULL, created_at TEXT NOT NULL,"
        " PRIMARY KEY (ticket_id, version))",
        "CREATE INDEX IF NOT EXISTS view_comments_author ON view_ticket_comments (author_id)",
    )

    def apply(self, c: Cursor, event: Any) -> None:
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(self, c, event)

    def _user_registered(self, c: Cursor, e: User.Registered) -> None:
        c.execute(
            "INSERT INTO view_users (id, kind, name, email, phone, organization, erased,"
            " created_at, updated_at, version) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
            [
                str(e.originator_id),
                e.kind,
                sealed_text(e.name),
                sealed_text(e.email),
                sealed_text(e.phone),
                sealed_text(e.organization),
                timestamp(e.occurred_at),
                timestamp(e.occurred_at),
                e.originator_version,
            ],
        )

    def _profile_updated(self, c: Cursor, e: User.ProfileUpdated) -> None:
        allowed = ("name", "email", "phone", "organization")
        fields = [f for f in e.changed if f in allowed]
        sets = "".join(f"{f} = ?, " for f in fields)
        values = [sealed_text(getattr(e, f)) for f in fields]
        c.execute(
            f"UPDATE view_users SET {sets}updated_at = ?, version = ? WHERE id = ?",
            [*values, timestamp(e.occurred_at), e.originator_version, str(e.originator_id)],
        )

    def _subject_erased(self, c: Cursor, e: User.SubjectErased) -> None:
        c.execute(
            "UPDATE view_users SET erased = 1, updated_at = ?, version = ? WHERE id = ?",
            [timestamp(e.occurred_at), e.originator_version, str(e.originator_id)],
        )

    def _user_touched(self, c: Cursor, e: Any) -> None:
        c.execute(
            "UPDATE view_users SET updated_at = ?, version = ? WHERE id = ?",
            [timestamp(e.occurred_at), e.originator_version, str(e.originator_id)],
        )

    def _ticket_opened(self, c: Cursor, e: Ticket.Opened) -> None:
        c.execute(
            "INSERT INTO view_tickets (id, requester_id, assignee_id, status, priority, tags,"
            " subject, body, created_at, updated_at, version)"
            " VALUES (?, ?, NULL, 'new', ?, ?, ?, ?, ?, ?, ?)",
            [
                str(e.originator_id),
                str(e.requester_id),
                e.priority,
                orjson.dumps(list(e.tags)).decode(),
                sealed_text(e.subject),
                sealed_text(e.body),
                timestamp(e.occurred_at),
                timestamp(e.occurred_at),
                e.originator_version,
            ],
        )

    def _comment_added(self, c: Cursor, e: Ticket.CommentAdded) -> None:
        c.execute(
            "INSERT INTO view_ticket_comments (ticket_id, version, author_id, body, public,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?)",
            [
                str(e.originator_id),
                e.originator_version,
                str(e.author_id),
                sealed_text(e.body),
                int(e.public),
                timestamp(e.occurred_at),
            ],
        )
        self._touch(c, e)

    def _assigned(self, c: Cursor, e: Ticket.Assigned) -> None:
        c.execute(
            "UPDATE view_tickets SET assignee_id = ? WHERE id = ?",
            [str(e.assignee_id), str(e.originator_id)],
        )
        self._touch(c, e)

    def _status_changed(self, c: Cursor, e: Ticket.StatusChanged) -> None:
        c.execute(
            "UPDATE view_tickets SET status = ? WHERE id = ?", [e.status, str(e.originator_id)]
        )
        self._touch(c, e)

    def _touch(self, c: Cursor, e: Any) -> None:
        c.execute(
            "UPDATE view_tickets SET updated_at = ?, version = ? WHERE id = ?",
            [timestamp(e.occurred_at), e.originator_version, str(e.originator_id)],
        )

    _handlers: dict[type, Any] = {
        User.Registered: _user_registered,
        User.ProfileUpdated: _profile_updated,
        User.SubjectErased: _subject_erased,
        User.NotificationPreferencesSet: _user_touched,
        Ticket.Opened: _ticket_opened,
        Ticket.CommentAdded: _comment_added,
        Ticket.Assigned: _assigned,
        Ticket.StatusChanged: _status_changed,
        Ticket.AttachmentAdded: _touch,  # the file itself is in the attachments view
    }
