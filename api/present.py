"""Turns view rows (personal fields sealed) into response bodies (opened, or null if erased)."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any
from uuid import UUID

from crypto.fields import Sealed, open_sealed
from crypto.vault import KeyVault
from domain.personal import Erased, personal_fields_of
from projections.queries import USER_PERSONAL

HIDDEN_EVENT_FIELDS = frozenset(
    {"originator_id", "originator_version", "timestamp", "occurred_at", "originator_topic"}
)


class Opener:
    """Opens sealed values for one response; the vault caches keys across responses."""

    def __init__(self, vault: KeyVault) -> None:
        self.vault = vault

    def value(self, sealed: Sealed | None) -> Any:
        if sealed is None:
            return None
        value = open_sealed(sealed, self.vault)
        return None if isinstance(value, Erased) else value

    def user(self, row: dict[str, Any]) -> dict[str, Any]:
        out = dict(row)
        # Keys may be gone before the erasure event reached the view (a crash in between),
        # so a profile that no longer opens counts as erased too.
        erased = bool(row["erased"])
        for field in USER_PERSONAL:
            raw = open_sealed(row[field], self.vault)
            erased = erased or isinstance(raw, Erased)
            out[field] = None if isinstance(raw, Erased) else raw
        out["erased"] = erased
        return out

    def comment(self, row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "body": self.value(row["body"])}

    def ticket(self, row: dict[str, Any]) -> dict[str, Any]:
        out = {**row, "subject": self.value(row["subject"])}
        if "body" in row:
            out["body"] = self.value(row["body"])
        if "comments" in row:
            out["comments"] = [self.comment(c) for c in row["comments"]]
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Erased):
        return None
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def history_event(event: Any) -> dict[str, Any]:
    """One stored event as auditors read it: erased fields null and listed, never ciphertext."""
    personal = personal_fields_of(type(event))
    state = vars(event)
    return {
        "type": type(event).__name__,
        "version": event.originator_version,
        "occurred_at": state.get("occurred_at"),
        "recorded_at": event.timestamp,
        "data": {k: _plain(v) for k, v in state.items() if k not in HIDDEN_EVENT_FIELDS},
        "erased_fields": sorted(f for f in personal if isinstance(state.get(f), Erased)),
    }
