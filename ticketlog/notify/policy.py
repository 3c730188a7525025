"""Whether a person may be contacted at all: the single hook every channel asks."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ticketlog.runtime import Runtime


def may_notify(runtime: Runtime, user_id: str) -> bool:
    """False for anyone who must not receive notifications.

    Today that is an erased person (their key is destroyed, or the log records the erasure).
    Restriction of processing and withdrawn consent belong here too, so every channel obeys
    them by asking this one function.
    """
    if runtime.vault.is_destroyed(f"user:{user_id}"):
        return False
    return not runtime.notifications.queries.user_erased(user_id)
