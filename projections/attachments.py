"""The attachments view: which files each ticket has (names still sealed), and its reads."""

from __future__ import annotations

from typing import Any

from crypto.fields import Sealed
from domain.ticket import Ticket
from projections.sql import Cursor, Database
from projections.views import sealed_text, timestamp


class AttachmentsView:
    name = "attachments"
    version = 1
    tables: tuple[str, ...] = ("view_attachments",)
    schema: tuple[str, ...] = (
        "CREATE TABLE IF NOT EXISTS view_attachments ("
        " id TEXT PRIMARY KEY, ticket_id TEXT NOT NULL, uploader_id TEXT NOT NULL,"
        " name TEXT NOT NULL, size BIGINT NOT NULL, content_type TEXT NOT NULL,"
        " sha256 TEXT NOT NULL, created_at TEXT NOT NULL, version INTEGER NOT NULL)",
        "CREATE INDEX IF NOT EXISTS view_attachments_ticket"
        " ON view_attachments (ticket_id, created_at)",
    )

    def flush(self, c: Cursor) -> None:
        pass  # writes as it applies: nothing put off

    def apply(self, c: Cursor, event: Any) -> None:
        if type(event) is Ticket.AttachmentAdded:  # an isinstance check per event cost 1%
            c.execute(
                "INSERT INTO view_attachments (id, ticket_id, uploader_id, name, size,"
                " content_type, sha256, created_at, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    str(event.attachment_id),
                    str(event.originator_id),
                    str(event.uploader_id),
                    sealed_text(event.name),
                    event.size,
                    event.content_type,
                    event.sha256,
                    timestamp(event.occurred_at),
                    event.originator_version,
                ],
            )


def _row(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "ticket_id": row["ticket_id"],
        "uploader_id": row["uploader_id"],
        "name": Sealed.from_text(row["name"]),
        "size": row["size"],
        "content_type": row["content_type"],
        "sha256": row["sha256"],
        "created_at": row["created_at"],
    }


class AttachmentQueries:
    def __init__(self, db: Database) -> None:
        self.db = db

    def attachment(self, ticket_id: str, attachment_id: str) -> dict[str, Any] | None:
        with self.db.transaction(commit=False) as c:
            row = c.execute(
                "SELECT * FROM view_attachments WHERE id = ? AND ticket_id = ?",
                [attachment_id, ticket_id],
            ).fetchone()
        return None if row is None else _row(row)

    def of_ticket(self, ticket_id: str) -> list[dict[str, Any]]:
        with self.db.transaction(commit=False) as c:
            rows = c.execute(
                "SELECT * FROM view_attachments WHERE ticket_id = ? ORDER BY created_at, id",
                [ticket_id],
            ).fetchall()
        return [_row(r) for r in rows]

    def known(self, attachment_ids: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(attachment_ids), 500):
            batch = attachment_ids[start : start + 500]
            marks = ", ".join("?" for _ in batch)
            with self.db.transaction(commit=False) as c:
                rows = c.execute(
                    f"SELECT id FROM view_attachments WHERE id IN ({marks})", batch
                ).fetchall()
            found |= {r["id"] for r in rows}
        return found
