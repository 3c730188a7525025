"""The compliance view: organizations, consents, the access log and the erasure journal.

None of it is personal data: ids, purposes, labels and times.
"""

from __future__ import annotations

from typing import Any

from domain.access import AccessRecord
from domain.organization import Organization
from domain.ticket import Ticket
from domain.user import User
from projections.sql import Cursor
from projections.views import timestamp


class ComplianceView:
    name = "compliance"
    version = 2  # 2: organizations carry their version (If-Match on contract end)
    tables: tuple[str, ...] = (
        "view_organizations",
        "view_consents",
        "view_access_log",
        "view_erasures",
    )
    schema: tuple[str, ...] = (
        "CREATE TABLE IF NOT EXISTS view_organizations ("
        " id TEXT PRIMARY KEY, name TEXT NOT NULL, contract_ended_at TEXT,"
        " created_at TEXT NOT NULL, version INTEGER NOT NULL)",
        "CREATE INDEX IF NOT EXISTS view_organizations_contract"
        " ON view_organizations (contract_ended_at)",
        "CREATE TABLE IF NOT EXISTS view_consents ("
        " user_id TEXT NOT NULL, version INTEGER NOT NULL, purpose TEXT NOT NULL,"
        " policy_version TEXT NOT NULL, granted INTEGER NOT NULL, at TEXT NOT NULL,"
        " PRIMARY KEY (user_id, version))",
        "CREATE TABLE IF NOT EXISTS view_access_log ("
        " record_id TEXT NOT NULL, subject_id TEXT NOT NULL, token_id TEXT NOT NULL,"
        " token_name TEXT NOT NULL, role TEXT NOT NULL, endpoint TEXT NOT NULL, at TEXT NOT NULL,"
        " PRIMARY KEY (record_id, subject_id))",
        "CREATE INDEX IF NOT EXISTS view_access_log_subject ON view_access_log (subject_id, at)",
        # What was destroyed, so a restored key vault can be brought back in line (reconcile).
        "CREATE TABLE IF NOT EXISTS view_erasures ("
        " kind TEXT NOT NULL, target_id TEXT NOT NULL, reason TEXT NOT NULL, at TEXT NOT NULL,"
        " PRIMARY KEY (kind, target_id))",
    )

    def flush(self, c: Cursor) -> None:
        pass  # writes as it applies: nothing put off

    def apply(self, c: Cursor, event: Any) -> None:
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(self, c, event)

    def _organization(self, c: Cursor, e: Organization.Registered) -> None:
        c.execute(
            "INSERT INTO view_organizations (id, name, created_at, version) VALUES (?, ?, ?, ?)",
            [str(e.originator_id), e.name, timestamp(e.occurred_at), e.originator_version],
        )

    def _contract_ended(self, c: Cursor, e: Organization.ContractEnded) -> None:
        c.execute(
            "UPDATE view_organizations SET contract_ended_at = ?, version = ? WHERE id = ?",
            [timestamp(e.ended_at), e.originator_version, str(e.originator_id)],
        )

    def _consent(self, c: Cursor, e: User.ConsentRecorded) -> None:
        c.execute(
            "INSERT INTO view_consents (user_id, version, purpose, policy_version, granted, at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [
                str(e.originator_id),
                e.originator_version,
                e.purpose,
                e.policy_version,
                int(e.granted),
                timestamp(e.occurred_at),
            ],
        )

    def _access(self, c: Cursor, e: AccessRecord.Recorded) -> None:
        c.executemany(
            "INSERT INTO view_access_log (record_id, subject_id, token_id, token_name, role,"
            " endpoint, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                [
                    str(e.originator_id),
                    str(subject),
                    e.token_id,
                    e.token_name,
                    e.role,
                    e.endpoint,
                    timestamp(e.occurred_at),
                ]
                for subject in e.subject_ids
            ],
        )

    def _journal(self, c: Cursor, kind: str, e: Any) -> None:
        c.execute(
            "INSERT INTO view_erasures (kind, target_id, reason, at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (kind, target_id) DO NOTHING",
            [kind, str(e.originator_id), e.reason, timestamp(e.occurred_at)],
        )

    def _erased(self, c: Cursor, e: User.SubjectErased) -> None:
        self._journal(c, "erase", e)

    def _anonymized(self, c: Cursor, e: User.Anonymized) -> None:
        self._journal(c, "anonymize", e)

    def _shredded(self, c: Cursor, e: Ticket.ContentShredded) -> None:
        self._journal(c, "shred_ticket", e)

    _handlers: dict[type, Any] = {
        Organization.Registered: _organization,
        Organization.ContractEnded: _contract_ended,
        User.ConsentRecorded: _consent,
        AccessRecord.Recorded: _access,
        User.SubjectErased: _erased,
        User.Anonymized: _anonymized,
        Ticket.ContentShredded: _shredded,
    }
