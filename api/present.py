"""Turns view rows (personal fields sealed) into response bodies (opened, or null if erased).

The Opener also notes whose data it opened, for the access log, and keeps a restricted
person's data from roles that may not process it.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any
from uuid import UUID

from api.errors import ApiError
from crypto.fields import Sealed, open_with_keys
from crypto.vault import KeyVault
from domain.personal import Erased, personal_fields_of
from projections.queries import USER_PERSONAL

HIDDEN_EVENT_FIELDS = frozenset(
    {"originator_id", "originator_version", "timestamp", "occurred_at", "originator_topic"}
)


def restricted_error() -> ApiError:
    return ApiError(
        423,
        "processing_restricted",
        "this person has restricted the processing of their data; only compliance may see it",
    )


class Opener:
    """Opens sealed values for one response; the vault caches keys across responses."""

    def __init__(self, vault: KeyVault, *, may_see_restricted: bool = False) -> None:
        self.vault = vault
        self.may_see_restricted = may_see_restricted
        self.subjects: set[UUID] = set()  # whose personal data this response revealed
        self._owners_seen: set[str] = set()  # key owners already counted (a ticket repeats them)

    def value(self, sealed: Sealed | None) -> Any:
        """The opened value, or None if absent or erased."""
        value = self._open(sealed)
        return None if isinstance(value, Erased) else value

    def _open(self, sealed: Sealed | None) -> Any:
        if sealed is None:
            return None
        value, keys = open_with_keys(sealed, self.vault)
        if not isinstance(value, Erased):
            for key in keys:
                owner = key.owner
                if owner and owner not in self._owners_seen:
                    self._owners_seen.add(owner)
                    if owner.startswith("user:"):
                        self.subjects.add(UUID(owner.removeprefix("user:")))
        return value

    def refuse_if_restricted(self, row: dict[str, Any], flag: str) -> None:
        """423 when the row's person restricted processing (`row[flag]`) and this caller may
        not see past it. Callers who may are not asked for the flag: rebuilt rows lack it."""
        if not self.may_see_restricted and row[flag]:
            raise restricted_error()

    def user(self, row: dict[str, Any]) -> dict[str, Any]:
        self.refuse_if_restricted(row, "restricted")
        out = dict(row)
        profile_gone = False
        for field in USER_PERSONAL:
            value = self._open(row[field])
            profile_gone = profile_gone or isinstance(value, Erased)
            out[field] = None if isinstance(value, Erased) else value
        # Keys may be gone before the erasure event reached the view (a crash in between, or
        # a restored old log): a profile that no longer opens counts as erased too.
        out["erased"] = bool(row["erased"]) or (profile_gone and not row["anonymized"])
        return out

    def comment(self, row: dict[str, Any]) -> dict[str, Any]:
        if not self.may_see_restricted and row["author_restricted"]:
            return {**row, "body": None}
        return {**row, "body": self.value(row["body"])}

    def ticket(self, row: dict[str, Any], *, in_list: bool = False) -> dict[str, Any]:
        """A ticket opened; a restricted requester's ticket is refused (423), or in a list
        shown without its personal fields."""
        if not in_list:
            self.refuse_if_restricted(row, "requester_restricted")
        elif not self.may_see_restricted and row["requester_restricted"]:
            return {**row, "subject": None, "body": None, "comments": []}
        out = {**row, "subject": self.value(row["subject"])}
        if "body" in row:
            out["body"] = self.value(row["body"])
        if "comments" in row:
            out["comments"] = [self.comment(c) for c in row["comments"]]
        return out


def plain_value(value: Any) -> Any:
    """An event attribute as JSON: ids and times as text, erased values as null."""
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Erased):
        return None
    if isinstance(value, list | tuple):
        return [plain_value(v) for v in value]
    if isinstance(value, dict):
        return {k: plain_value(v) for k, v in value.items()}
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
        "data": {k: plain_value(v) for k, v in state.items() if k not in HIDDEN_EVENT_FIELDS},
        "erased_fields": sorted(f for f in personal if isinstance(state.get(f), Erased)),
    }
