"""What people can be told about, and through which channels (their preferences say which)."""

from __future__ import annotations

from enum import StrEnum


class NotificationKind(StrEnum):
    AGENT_REPLY = "agent_reply"  # to the requester: an agent replied publicly
    TICKET_SOLVED = "ticket_solved"  # to the requester
    TICKET_ASSIGNED = "ticket_assigned"  # to the assignee
    REQUESTER_REPLY = "requester_reply"  # to the assignee: the requester replied


class Channel(StrEnum):
    EMAIL = "email"


Preferences = dict[str, dict[str, bool]]


def effective_preferences(stored: Preferences | None) -> Preferences:
    """Every kind and channel, on unless the person turned it off."""
    stored = stored or {}
    return {
        kind.value: {ch.value: stored.get(kind.value, {}).get(ch.value, True) for ch in Channel}
        for kind in NotificationKind
    }


def validate_preferences(preferences: Preferences) -> Preferences:
    """Known kinds and channels only (ValueError otherwise), in their full effective form."""
    for kind, channels in preferences.items():
        NotificationKind(kind)
        for channel, on in channels.items():
            Channel(channel)
            if not isinstance(on, bool):
                raise ValueError(f"{kind}.{channel} must be true or false")
    return effective_preferences(preferences)
