"""Reads the API needs, from the view tables. Personal fields come back still sealed."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import orjson

from crypto.fields import Sealed
from projections.sql import Database

USER_PERSONAL = ("name", "email", "phone", "organization")

USERS = (
    "SELECT u.*, a.last_active_at FROM view_users u"
    " LEFT JOIN view_user_activity a ON a.user_id = u.id"
)
# Every ticket and comment read carries whether its person restricted processing.
TICKETS = (
    "SELECT t.*, COALESCE(r.restricted, 0) AS requester_restricted FROM view_tickets t"
    " LEFT JOIN view_users r ON r.id = t.requester_id"
)
COMMENTS = (
    "SELECT m.*, COALESCE(a.restricted, 0) AS author_restricted FROM view_ticket_comments m"
    " LEFT JOIN view_users a ON a.id = m.author_id"
)


class BadCursor(ValueError):
    """A pagination cursor that this service did not hand out."""


def _sealed(text: str | None) -> Sealed | None:
    return None if text is None else Sealed.from_text(text)


def _user(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "kind": row["kind"],
        **{f: _sealed(row[f]) for f in USER_PERSONAL},
        "organization_id": row["organization_id"],
        "erased": bool(row["erased"]),
        "anonymized": bool(row["anonymized"]),
        "restricted": bool(row["restricted"]),
        "on_legal_hold": bool(row["on_hold"]),
        "last_active_at": row["last_active_at"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "version": row["version"],
    }


def _ticket(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "requester_id": row["requester_id"],
        "assignee_id": row["assignee_id"],
        "status": row["status"],
        "priority": row["priority"],
        "tags": orjson.loads(row["tags"]),
        "subject": _sealed(row["subject"]),
        "body": _sealed(row["body"]),
        "content_shredded": bool(row["content_shredded"]),
        "closed_at": row["closed_at"],
        "requester_restricted": bool(row["requester_restricted"]),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "version": row["version"],
    }


def _comment(row: Any) -> dict[str, Any]:
    return {
        "ticket_id": row["ticket_id"],
        "author_id": row["author_id"],
        "body": _sealed(row["body"]),
        "public": bool(row["public"]),
        "author_restricted": bool(row["author_restricted"]),
        "created_at": row["created_at"],
        "version": row["version"],
    }


@dataclass(frozen=True)
class TicketFilter:
    status: str | None = None
    requester_id: str | None = None
    assignee_id: str | None = None


def encode_cursor(created_at: str, ticket_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([created_at, ticket_id])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        created_at, ticket_id = orjson.loads(
            base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        )
    except (binascii.Error, ValueError, TypeError) as e:
        raise BadCursor("this cursor was not issued by this service") from e
    if not isinstance(created_at, str) or not isinstance(ticket_id, str):
        raise BadCursor("this cursor was not issued by this service")
    return created_at, ticket_id


class Queries:
    def __init__(self, db: Database) -> None:
        self.db = db

    def user(self, user_id: str) -> dict[str, Any] | None:
        with self.db.transaction(commit=False) as c:
            row = c.execute(f"{USERS} WHERE u.id = ?", [user_id]).fetchone()
        return None if row is None else _user(row)

    def ticket(self, ticket_id: str, *, with_comments: bool = True) -> dict[str, Any] | None:
        with self.db.transaction(commit=False) as c:
            row = c.execute(f"{TICKETS} WHERE t.id = ?", [ticket_id]).fetchone()
            if row is None:
                return None
            if not with_comments:
                return _ticket(row)
            comments = c.execute(
                f"{COMMENTS} WHERE m.ticket_id = ? ORDER BY m.version", [ticket_id]
            ).fetchall()
        return {**_ticket(row), "comments": [_comment(r) for r in comments]}

    def comment(self, ticket_id: str, version: int) -> dict[str, Any] | None:
        """The comment the ticket's event `version` recorded, if it is one."""
        with self.db.transaction(commit=False) as c:
            row = c.execute(
                f"{COMMENTS} WHERE m.ticket_id = ? AND m.version = ?", [ticket_id, version]
            ).fetchone()
        return None if row is None else _comment(row)

    def comments(
        self, ticket_id: str, after: int, limit: int
    ) -> tuple[list[dict[str, Any]], int | None]:
        """A page of the ticket's comments recorded after its version `after`, oldest first,
        and the version to ask after for the next page (if any)."""
        with self.db.transaction(commit=False) as c:
            rows = c.execute(
                f"{COMMENTS} WHERE m.ticket_id = ? AND m.version > ? ORDER BY m.version LIMIT ?",
                [ticket_id, after, limit + 1],
            ).fetchall()
        items = [_comment(r) for r in rows[:limit]]
        return items, items[-1]["version"] if len(rows) > limit else None

    def tickets(
        self, where: TicketFilter, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of tickets, oldest first, and the cursor of the next page (if any)."""
        clauses, params = [], []
        for column in ("status", "requester_id", "assignee_id"):
            value = getattr(where, column)
            if value is not None:
                clauses.append(f"t.{column} = ?")
                params.append(value)
        if cursor is not None:
            created_at, ticket_id = decode_cursor(cursor)
            clauses.append("(t.created_at > ? OR (t.created_at = ? AND t.id > ?))")
            params += [created_at, created_at, ticket_id]
        sql = TICKETS
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY t.created_at, t.id LIMIT ?"
        with self.db.transaction(commit=False) as c:
            rows = c.execute(sql, [*params, limit + 1]).fetchall()
        items = [_ticket(r) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = items[-1]
            next_cursor = encode_cursor(last["created_at"], last["id"])
        return items, next_cursor

    def tickets_requested_by(self, user_id: str) -> list[dict[str, Any]]:
        with self.db.transaction(commit=False) as c:
            rows = c.execute(
                f"{TICKETS} WHERE t.requester_id = ? ORDER BY t.created_at, t.id", [user_id]
            ).fetchall()
            comments = c.execute(
                f"{COMMENTS} JOIN view_tickets t ON t.id = m.ticket_id"
                " WHERE t.requester_id = ? ORDER BY m.ticket_id, m.version",
                [user_id],
            ).fetchall()
        by_ticket: dict[str, list[dict[str, Any]]] = {}
        for r in comments:
            by_ticket.setdefault(r["ticket_id"], []).append(_comment(r))
        return [{**_ticket(r), "comments": by_ticket.get(r["id"], [])} for r in rows]

    def comments_elsewhere_by(self, user_id: str) -> list[dict[str, Any]]:
        """Comments the person wrote on tickets someone else requested."""
        with self.db.transaction(commit=False) as c:
            rows = c.execute(
                f"{COMMENTS} JOIN view_tickets t ON t.id = m.ticket_id"
                " WHERE m.author_id = ? AND t.requester_id <> ?"
                " ORDER BY m.created_at, m.ticket_id, m.version",
                [user_id, user_id],
            ).fetchall()
        return [_comment(r) for r in rows]

    # Compliance

    def consents(self, user_id: str) -> list[dict[str, Any]]:
        with self.db.transaction(commit=False) as c:
            rows = c.execute(
                "SELECT purpose, policy_version, granted, at FROM view_consents"
                " WHERE user_id = ? ORDER BY version",
                [user_id],
            ).fetchall()
        return [
            {
                "purpose": r["purpose"],
                "policy_version": r["policy_version"],
                "granted": bool(r["granted"]),
                "at": r["at"],
            }
            for r in rows
        ]

    def access_log(self, subject_id: str) -> list[dict[str, Any]]:
        with self.db.transaction(commit=False) as c:
            rows = c.execute(
                "SELECT at, token_id, token_name, role, endpoint FROM view_access_log"
                " WHERE subject_id = ? ORDER BY at",
                [subject_id],
            ).fetchall()
        return [dict(r) for r in rows]

    def organization(self, organization_id: str) -> dict[str, Any] | None:
        with self.db.transaction(commit=False) as c:
            row = c.execute(
                "SELECT o.*, (SELECT COUNT(*) FROM view_users u WHERE u.organization_id = o.id)"
                " AS members FROM view_organizations o WHERE o.id = ?",
                [organization_id],
            ).fetchone()
        return None if row is None else dict(row)

    def erasure_journal(self) -> list[dict[str, Any]]:
        with self.db.transaction(commit=False) as c:
            rows = c.execute(
                "SELECT kind, target_id, reason, at FROM view_erasures ORDER BY at, kind, target_id"
            ).fetchall()
        return [dict(r) for r in rows]

    def closed_tickets_before(self, cutoff: str) -> list[dict[str, Any]]:
        with self.db.transaction(commit=False) as c:
            rows = c.execute(
                "SELECT t.id, t.requester_id, t.closed_at, u.on_hold FROM view_tickets t"
                " JOIN view_users u ON u.id = t.requester_id"
                " WHERE t.status = 'closed' AND t.closed_at <= ? AND t.content_shredded = 0"
                " AND u.erased = 0 ORDER BY t.closed_at, t.id",
                [cutoff],
            ).fetchall()
        return [dict(r) for r in rows]

    def customers_inactive_since(self, cutoff: str) -> list[dict[str, Any]]:
        """Customers with no activity since `cutoff` and no ticket still being worked on."""
        with self.db.transaction(commit=False) as c:
            rows = c.execute(
                "SELECT u.id, a.last_active_at, u.on_hold FROM view_users u"
                " JOIN view_user_activity a ON a.user_id = u.id"
                " WHERE u.kind = 'customer' AND u.erased = 0 AND a.last_active_at <= ?"
                " AND NOT EXISTS (SELECT 1 FROM view_tickets t WHERE t.requester_id = u.id"
                "   AND t.status NOT IN ('solved', 'closed'))"
                " ORDER BY a.last_active_at, u.id",
                [cutoff],
            ).fetchall()
        return [dict(r) for r in rows]

    def members_of_organizations_ended_before(self, cutoff: str) -> list[dict[str, Any]]:
        with self.db.transaction(commit=False) as c:
            rows = c.execute(
                "SELECT u.id, u.on_hold, o.id AS organization_id, o.contract_ended_at"
                " FROM view_users u JOIN view_organizations o ON o.id = u.organization_id"
                " WHERE o.contract_ended_at <= ? AND u.erased = 0"
                " ORDER BY o.contract_ended_at, u.id",
                [cutoff],
            ).fetchall()
        return [dict(r) for r in rows]
