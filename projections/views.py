"""The help desk's views: users, tickets and comments, as the API reads them.

Each view applies events to its tables through a cursor that the runner commits together
with the view's tracking position. Personal fields arrive as `Sealed` values and are stored
as such (`Sealed.to_text()`), never opened here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from crypto.fields import Sealed
from domain.ids import id_text
from domain.ticket import Ticket
from domain.user import User
from projections.sql import Cursor

_last_timestamp: tuple[datetime, str] = (datetime.min.replace(tzinfo=UTC), "")


_minutes: dict[tuple[int, int, int, int, int], str] = {}
_MINUTES_KEPT = 4096  # bounded, so memory stays flat however long the log


def timestamp(value: datetime) -> str:
    """A fixed-width UTC text time, so text order is time order on both engines: the same
    text as `isoformat(timespec="microseconds")` of the time in UTC."""
    # Views format each event's time several times over: remember the last one.
    global _last_timestamp
    last, text = _last_timestamp
    if value is not last:
        utc = value if value.tzinfo is UTC else value.astimezone(UTC)
        # isoformat() costs about a microsecond, 5% of a rebuild; the part up to the minute
        # repeats from event to event, so only the seconds are formatted each time.
        minute = (utc.year, utc.month, utc.day, utc.hour, utc.minute)
        prefix = _minutes.get(minute)
        if prefix is None:
            if len(_minutes) >= _MINUTES_KEPT:
                _minutes.clear()
            prefix = utc.replace(tzinfo=None).isoformat(timespec="minutes") + ":"
            _minutes[minute] = prefix
        text = f"{prefix}{utc.second:02d}.{utc.microsecond:06d}+00:00"
        _last_timestamp = (value, text)
    return text


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

    def flush(self, c: Cursor) -> None:
        """Write what `apply` put off (in `c.deferred`); called once per batch, before the
        batch's position is recorded in the same transaction."""


TICKET_COLUMNS = (
    "id",
    "requester_id",
    "assignee_id",
    "status",
    "priority",
    "tags",
    "subject",
    "body",
    "closed_at",
    "content_shredded",
    "created_at",
    "updated_at",
    "version",
)


@dataclass
class _Batch:
    """Ticket, comment and activity writes of one batch, made together when it ends.

    A ticket's updates within a batch are plain column assignments, so the last value of each
    column is all that needs writing: one statement per ticket instead of two per event.
    """

    opened: dict[str, dict[str, Any]] = field(default_factory=dict)  # new ticket rows
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)  # earlier tickets
    comments: list[list[Any]] = field(default_factory=list)
    activity: dict[str, str] = field(default_factory=dict)  # user id -> latest time


class HelpDeskView:
    """Users, tickets and comments; one tracking position for the three tables."""

    name = "helpdesk"
    version = 5  # 5: comments keyed by a unique index a rebuild drops, not the primary key
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
        " body TEXT, public INTEGER NOT NULL, created_at TEXT NOT NULL)",
        # Unique, but an index rather than the primary key: a rebuild can then drop it and
        # build it once at the end, instead of inserting every comment at a random place in
        # it (at a million events that was a sixth of the rebuild's time).
        "CREATE UNIQUE INDEX IF NOT EXISTS view_comments_ticket"
        " ON view_ticket_comments (ticket_id, version)",
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
                id_text(e.originator_id),
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
            [*values, at, e.originator_version, id_text(e.originator_id)],
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
                id_text(e.originator_id),
            ],
        )

    def _active(self, c: Cursor, user_id: Any, at: datetime) -> None:
        activity = self._batch(c).activity
        user, when = id_text(user_id), timestamp(at)
        if when > activity.get(user, ""):
            activity[user] = when

    # Tickets

    def _user_touched(self, c: Cursor, e: Any) -> None:
        c.execute(
            "UPDATE view_users SET updated_at = ?, version = ? WHERE id = ?",
            [timestamp(e.occurred_at), e.originator_version, id_text(e.originator_id)],
        )

    def _ticket_opened(self, c: Cursor, e: Ticket.Opened) -> None:
        at = timestamp(e.occurred_at)
        ticket_id = id_text(e.originator_id)
        self._batch(c).opened[ticket_id] = {
            "id": ticket_id,
            "requester_id": id_text(e.requester_id),
            "assignee_id": None,
            "status": "new",
            "priority": e.priority,
            "tags": orjson.dumps(list(e.tags)).decode(),
            "subject": sealed_text(e.subject),
            "body": sealed_text(e.body),
            "closed_at": None,
            "content_shredded": 0,
            "created_at": at,
            "updated_at": at,
            "version": e.originator_version,
        }
        self._active(c, e.requester_id, e.occurred_at)

    def _comment_added(self, c: Cursor, e: Ticket.CommentAdded) -> None:
        # The commonest event: `_touch` and `_active` written out, each id and time formatted
        # once (the helpers cost a fifth of this view's time).
        batch = self._batch(c)
        ticket_id, author = id_text(e.originator_id), id_text(e.author_id)
        at, version = timestamp(e.occurred_at), e.originator_version
        batch.comments.append([ticket_id, version, author, sealed_text(e.body), int(e.public), at])
        row = batch.opened.get(ticket_id)
        if row is None:
            row = batch.changes.setdefault(ticket_id, {})
        row["updated_at"] = at
        row["version"] = version
        if at > batch.activity.get(author, ""):
            batch.activity[author] = at

    def _assigned(self, c: Cursor, e: Ticket.Assigned) -> None:
        self._set_ticket(c, e, assignee_id=id_text(e.assignee_id))
        self._touch(c, e)

    def _status_changed(self, c: Cursor, e: Ticket.StatusChanged) -> None:
        closed_at = timestamp(e.occurred_at) if e.status == "closed" else None
        self._set_ticket(c, e, status=e.status, closed_at=closed_at)
        self._touch(c, e)

    def _content_shredded(self, c: Cursor, e: Ticket.ContentShredded) -> None:
        self._set_ticket(c, e, content_shredded=1)
        self._touch(c, e)

    def _priority_changed(self, c: Cursor, e: Ticket.PriorityChanged) -> None:
        self._set_ticket(c, e, priority=e.priority)
        self._touch(c, e)

    def _tags_changed(self, c: Cursor, e: Ticket.TagsChanged) -> None:
        self._set_ticket(c, e, tags=orjson.dumps(list(e.tags)).decode())
        self._touch(c, e)

    def _version_only(self, c: Cursor, e: Any) -> None:
        # SLA bookkeeping is not an update of the ticket a person made; keep updated_at.
        self._set_ticket(c, e, version=e.originator_version)

    def _touch(self, c: Cursor, e: Any) -> None:
        self._set_ticket(c, e, updated_at=timestamp(e.occurred_at), version=e.originator_version)

    def _set_ticket(self, c: Cursor, e: Any, **columns: Any) -> None:
        batch, ticket_id = self._batch(c), id_text(e.originator_id)
        row = batch.opened.get(ticket_id)
        if row is None:
            row = batch.changes.setdefault(ticket_id, {})
        row.update(columns)

    # The batch

    def _batch(self, c: Cursor) -> _Batch:
        batch: _Batch | None = c.deferred.get(self.name)
        if batch is None:
            batch = c.deferred[self.name] = _Batch()
        return batch

    def flush(self, c: Cursor) -> None:
        batch: _Batch | None = c.deferred.pop(self.name, None)
        if batch is None:
            return
        if batch.opened:
            c.executemany(
                f"INSERT INTO view_tickets ({', '.join(TICKET_COLUMNS)})"
                f" VALUES ({', '.join('?' for _ in TICKET_COLUMNS)})",
                [[row[n] for n in TICKET_COLUMNS] for row in batch.opened.values()],
            )
        by_columns: dict[tuple[str, ...], list[list[Any]]] = {}
        for ticket_id, changes in batch.changes.items():
            by_columns.setdefault(tuple(changes), []).append([*changes.values(), ticket_id])
        for columns, rows in by_columns.items():
            sets = ", ".join(f"{n} = ?" for n in columns)
            c.executemany(f"UPDATE view_tickets SET {sets} WHERE id = ?", rows)
        if batch.comments:
            c.executemany(
                "INSERT INTO view_ticket_comments (ticket_id, version, author_id, body, public,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                batch.comments,
            )
        if batch.activity:
            c.executemany(
                "INSERT INTO view_user_activity (user_id, last_active_at) VALUES (?, ?)"
                " ON CONFLICT (user_id) DO UPDATE SET last_active_at = CASE"
                " WHEN excluded.last_active_at > view_user_activity.last_active_at"
                " THEN excluded.last_active_at ELSE view_user_activity.last_active_at END",
                list(batch.activity.items()),
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
