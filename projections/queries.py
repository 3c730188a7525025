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


class BadCursor(ValueError):
    """A pagination cursor that this service did not hand out."""


def _sealed(text: str | None) -> Sealed | None:
    return None if text is None else Sealed.from_text(text)


def _user(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "kind": row["kind"],
        **{f: _sealed(row[f]) for f in USER_PERSONAL},
        "erased": bool(row["erased"]),
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
            row = c.execute("SELECT * FROM view_users WHERE id = ?", [user_id]).fetchone()
        return None if row is None else _user(row)

    def ticket(self, ticket_id: str) -> dict[str, Any] | None:
        with self.db.transaction(commit=False) as c:
            row = c.execute("SELECT * FROM view_tickets WHERE id = ?", [ticket_id]).fetchone()
            if row is None:
                return None
            comments = c.execute(
                "SELECT * FROM view_ticket_comments WHERE ticket_id = ? ORDER BY version",
                [ticket_id],
            ).fetchall()
        return {**_ticket(row), "comments": [_comment(r) for r in comments]}

    def tickets(
        self, where: TicketFilter, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of tickets, oldest first, and the cursor of the next page (if any)."""
        clauses, params = [], []
        for column in ("status", "requester_id", "assignee_id"):
            value = getattr(where, column)
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if cursor is not None:
            created_at, ticket_id = decode_cursor(cursor)
            clauses.append("(created_at > ? OR (created_at = ? AND id > ?))")
            params += [created_at, created_at, ticket_id]
        sql = "SELECT * FROM view_tickets"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY created_at, id LIMIT ?"
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
                "SELECT * FROM view_tickets WHERE requester_id = ? ORDER BY created_at, id",
                [user_id],
            ).fetchall()
            comments = c.execute(
                "SELECT m.* FROM view_ticket_comments m"
                " JOIN view_tickets t ON t.id = m.ticket_id"
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
                "SELECT m.* FROM view_ticket_comments m"
                " JOIN view_tickets t ON t.id = m.ticket_id"
                " WHERE m.author_id = ? AND t.requester_id <> ?"
                " ORDER BY m.created_at, m.ticket_id, m.version",
                [user_id, user_id],
            ).fetchall()
        return [_comment(r) for r in rows]
