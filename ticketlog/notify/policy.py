"""Whether a person may be contacted at all: the single hook every channel asks."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ticketlog.runtime import Runtime

# Messages sent for a purpose beyond the service itself need that purpose's consent.
MARKETING = "marketing"


def may_notify(runtime: Runtime, user_id: str, purpose: str | None = None) -> bool:
    """False for anyone who must not receive this message.

    Nobody erased or anonymized (their profile key is destroyed), nobody who restricted the
    processing of their data, and, for a message with a `purpose` (marketing), nobody without
    a granted consent for it as last recorded. Service messages about a person's own tickets
    need no consent: they are what the service is for.
    """
    if runtime.vault.is_destroyed(f"user:{user_id}"):
        return False
    if runtime.notifications.queries.user_erased(user_id):
        return False
    person = runtime.queries.user(user_id)
    if person is None or person["restricted"]:
        return False
    if purpose is not None:
        latest = {c["purpose"]: c["granted"] for c in runtime.queries.consents(user_id)}
        return bool(latest.get(purpose))
    return True
