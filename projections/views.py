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
    version: int  # bump when the tables change: the view is then dropped and rebuilt
    tables: tuple[str, ...]
    schema: tuple[str, ...]

    def apply(self, c: Cursor, event: Any) -> None: ...


class HelpDeskView:
    """Users, tickets and comments; one tracking position for the three tables."""

    name = "helpdesk"
    version = 4
    tables: tuple[str, ...] = (
        "view_ticket_comments",
        "view_tickets",
        "view_users",
        "view_user_activity",
    )
    schema: tuple[str, ...] = (
        "CREATE TABLE IF NOT EXISTS view_users ("
        " id TEXT PRIMARY KEY, kind TEXT NOT NULL,"
        " name TEXT, email TEXT, phone TEXT, organization TEXT, organization_id TEXT,"
        " erased INTEGER NOT NULL DEFAULT 0, anonymized INTEGER NOT NULL DEFAULT 0,"
        " restricted INTEGER NOT NULL DEFAULT 0, on_hold INTEGER NOT NULL DEFAULT 0,"
        " created_at TEXT NOT NULL, updated_at TEXT NOT NULL, version INTEGER NOT NULL)",
        "CREATE INDEX IF NOT EXISTS view_users_organization ON view_users (organization_id)",
        # Activity comes from several aggregates' events, which Kafka partitions may deliver in
        # any order: a max-upsert of its own gives the same result whatever the order.
        "CREATE TABLE IF NOT EXISTS view_user_activity ("
        " user_id TEXT PRIMARY KEY, last_active_at TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS view_user_activity_at ON view_user_activity (last_active_at)",
        "CREATE TABLE IF NOT EXISTS view_tickets ("
        " id TEXT PRIMARY KEY, requester_id TEXT NOT NULL, assignee_id TEXT,"
        " status TEXT NOT NULL, priority TEXT NOT NULL, tags TEXT NOT NULL,"
        " subject TEXT, body TEXT, closed_at TEXT, content_shredded INTEGER NOT NULL DEFAULT 0,"
        " created_at TEXT NOT NULL, updated_at TEXT NOT NULL, version INTEGER NOT NULL)",
        "CREATE INDEX IF NOT EXISTS view_tickets_created ON view_tickets (created_at, id)",
        "CREATE INDEX IF NOT EXISTS view_tickets_status ON view_tickets (status, created_at, id)",
        "CREATE INDEX IF NOT EXISTS view_tickets_closed ON view_tickets (status, closed_at)",
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

    # Users

    def _user_registered(self, c: Cursor, e: User.Registered) -> None:
        at = timestamp(e.occurred_at)
        c.execute(
            "INSERT INTO view_users (id, kind, name, email, phone, organization, organization_id,"
            " created_at, updated_at, version)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                str(e.originator_id),
                e.kind,
                sealed_text(e.name),
                sealed_text(e.email),
                sealed_text(e.phone),
                sealed_text(e.organization),
                str(e.organization_id) if e.organization_id else None,
                at,
                at,
                e.originator_version,
            ],
        )
        self._active(c, e.originator_id, e.occurred_at)

    def _profile_updated(self, c: Cursor, e: User.ProfileUpdated) -> None:
        allowed = ("name", "email", "phone", "organization")
        fields = [f for f in e.changed if f in allowed]
        sets = "".join(f"{f} = ?, " for f in fields)
        values = [sealed_text(getattr(e, f)) for f in fields]
        at = timestamp(e.occurred_at)
        c.execute(
            f"UPDATE view_users SET {sets}updated_at = ?, version = ? WHERE id = ?",
            [*values, at, e.originator_version, str(e.originator_id)],
        )
        self._active(c, e.originator_id, e.occurred_at)

    def _organization_linked(self, c: Cursor, e: User.OrganizationLinked) -> None:
        org = str(e.organization_id) if e.organization_id else None
        self._set_user(c, e, organization_id=org)

    def _restricted(self, c: Cursor, e: User.Restricted) -> None:
        self._set_user(c, e, restricted=1)

    def _unrestricted(self, c: Cursor, e: User.Unrestricted) -> None:
        self._set_user(c, e, restricted=0)

    def _hold_placed(self, c: Cursor, e: User.LegalHoldPlaced) -> None:
        self._set_user(c, e, on_hold=1)

    def _hold_released(self, c: Cursor, e: User.LegalHoldReleased) -> None:
        self._set_user(c, e, on_hold=0)

    def _anonymized(self, c: Cursor, e: User.Anonymized) -> None:
        self._set_user(c, e, anonymized=1)

    def _subject_erased(self, c: Cursor, e: User.SubjectErased) -> None:
        self._set_user(c, e, erased=1)

    def _user_version(self, c: Cursor, e: Any) -> None:
        self._set_user(c, e)

    def _set_user(self, c: Cursor, e: Any, **columns: Any) -> None:
        sets = "".join(f"{name} = ?, " for name in columns)
        c.execute(
            f"UPDATE view_users SET {sets}updated_at = ?, version = ? WHERE id = ?",
            [
                *columns.values(),
                timestamp(e.occurred_at),
                e.originator_version,
                str(e.originator_id),
            ],
        )

    def _active(self, c: Cursor, user_id: Any, at: datetime) -> None:
        c.execute(
            "INSERT INTO view_user_activity (user_id, last_active_at) VALUES (?, ?)"
            " ON CONFLICT (user_id) DO UPDATE SET last_active_at = CASE"
            " WHEN excluded.last_active_at > view_user_activity.last_active_at"
            " THEN excluded.last_active_at ELSE view_user_activity.last_active_at END",
            [str(user_id), timestamp(at)],
        )

    # Tickets

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
        self._active(c, e.requester_id, e.occurred_at)

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
        self._active(c, e.author_id, e.occurred_at)

    def _assigned(self, c: Cursor, e: Ticket.Assigned) -> None:
        c.execute(
            "UPDATE view_tickets SET assignee_id = ? WHERE id = ?",
            [str(e.assignee_id), str(e.originator_id)],
        )
        self._touch(c, e)

    def _status_changed(self, c: Cursor, e: Ticket.StatusChanged) -> None:
        closed_at = timestamp(e.occurred_at) if e.status == "closed" else None
        c.execute(
            "UPDATE view_tickets SET status = ?, closed_at = ? WHERE id = ?",
            [e.status, closed_at, str(e.originator_id)],
        )
        self._touch(c, e)

    def _content_shredded(self, c: Cursor, e: Ticket.ContentShredded) -> None:
        c.execute(
            "UPDATE view_tickets SET content_shredded = 1 WHERE id = ?", [str(e.originator_id)]
        )
        self._touch(c, e)

    def _priority_changed(self, c: Cursor, e: Ticket.PriorityChanged) -> None:
        c.execute(
            "UPDATE view_tickets SET priority = ? WHERE id = ?", [e.priority, str(e.originator_id)]
        )
        self._touch(c, e)

    def _tags_changed(self, c: Cursor, e: Ticket.TagsChanged) -> None:
        c.execute(
            "UPDATE view_tickets SET tags = ? WHERE id = ?",
            [orjson.dumps(list(e.tags)).decode(), str(e.originator_id)],
        )
        self._touch(c, e)

    def _version_only(self, c: Cursor, e: Any) -> None:
        # SLA bookkeeping is not an update of the ticket a person made; keep updated_at.
        c.execute(
            "UPDATE view_tickets SET version = ? WHERE id = ?",
            [e.originator_version, str(e.originator_id)],
        )

    def _touch(self, c: Cursor, e: Any) -> None:
        c.execute(
            "UPDATE view_tickets SET updated_at = ?, version = ? WHERE id = ?",
            [timestamp(e.occurred_at), e.originator_version, str(e.originator_id)],
        )

    _handlers: dict[type, Any] = {
        User.Registered: _user_registered,
        User.ProfileUpdated: _profile_updated,
        User.OrganizationLinked: _organization_linked,
        User.Restricted: _restricted,
        User.Unrestricted: _unrestricted,
        User.LegalHoldPlaced: _hold_placed,
        User.LegalHoldReleased: _hold_released,
        User.Anonymized: _anonymized,
        User.SubjectErased: _subject_erased,
        User.ConsentRecorded: _user_version,
        User.ErasureBlocked: _user_version,
        User.NotificationPreferencesSet: _user_touched,
        Ticket.Opened: _ticket_opened,
        Ticket.CommentAdded: _comment_added,
        Ticket.Assigned: _assigned,
        Ticket.StatusChanged: _status_changed,
        Ticket.ContentShredded: _content_shredded,
        Ticket.PriorityChanged: _priority_changed,
        Ticket.TagsChanged: _tags_changed,
        Ticket.SlaPolicyApplied: _version_only,
        Ticket.SlaBreached: _version_only,
        Ticket.HistoryImported: _version_only,
        Ticket.AttachmentAdded: _touch,  # the file itself is in the attachments view
    }
