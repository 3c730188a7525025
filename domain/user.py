"""The User aggregate: customers (requesters) and agents, with their profile."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from eventsourcing.domain import Aggregate, event

from domain.errors import RuleViolation
from domain.notifications import Preferences, validate_preferences
from domain.personal import DataSubject, PersonalFields

THE_USER = DataSubject("user", id_attr="originator_id")
PROFILE_FIELDS = ("name", "email", "phone", "organization")


class UserKind(StrEnum):
    CUSTOMER = "customer"
    AGENT = "agent"


class User(Aggregate):
    """A person known to the help desk. Every profile field is that person's personal data."""

    class Registered(Aggregate.Created):
        kind: str
        name: Any
        email: Any
        phone: Any
        organization: Any
        occurred_at: datetime
        personal_fields: ClassVar[PersonalFields] = {f: (THE_USER,) for f in PROFILE_FIELDS}

    class ProfileUpdated(Aggregate.Event):
        # Every profile field is carried (unchanged ones as None) so the stored shape is fixed
        # and reveals nothing; `changed` says which fields the update sets.
        changed: list[str]
        name: Any
        email: Any
        phone: Any
        organization: Any
        occurred_at: datetime
        personal_fields: ClassVar[PersonalFields] = {f: (THE_USER,) for f in PROFILE_FIELDS}

    class NotificationPreferencesSet(Aggregate.Event):
        """Which notifications the person wants, per kind and channel (no personal data)."""

        preferences: dict[str, dict[str, bool]]
        occurred_at: datetime

    class SubjectErased(Aggregate.Event):
        """The person's keys were destroyed; carries no personal data."""

        keys_destroyed: int
        occurred_at: datetime

    @event(Registered)
    def __init__(
        self,
        kind: str,
        name: Any,
        email: Any,
        phone: Any,
        organization: Any,
        occurred_at: datetime,
    ) -> None:
        self.kind = UserKind(kind)
        self.name = name
        self.email = email
        self.phone = phone
        self.organization = organization
        self.registered_at = occurred_at
        self.updated_at = occurred_at
        self.erased = False

    @property
    def is_agent(self) -> bool:
        return self.kind is UserKind.AGENT

    def update_profile(self, changes: dict[str, Any], occurred_at: datetime) -> None:
        """Rectification: set the given profile fields to new values."""
        self._refuse_if_erased()
        unknown = set(changes) - set(PROFILE_FIELDS)
        if unknown:
            raise ValueError(f"not profile fields: {sorted(unknown)}")
        if not changes:
            return
        values = {f: changes.get(f) for f in PROFILE_FIELDS}
        self._profile_updated(changed=sorted(changes), occurred_at=occurred_at, **values)

    @event(ProfileUpdated)
    def _profile_updated(
        self,
        changed: list[str],
        name: Any,
        email: Any,
        phone: Any,
        organization: Any,
        occurred_at: datetime,
    ) -> None:
        values = {"name": name, "email": email, "phone": phone, "organization": organization}
        for field in changed:
            setattr(self, field, values[field])
        self.updated_at = occurred_at

    def set_notification_preferences(self, preferences: Preferences, occurred_at: datetime) -> None:
        """Replace the person's preferences; kinds and channels not named stay on."""
        self._refuse_if_erased()
        self._notification_preferences_set(
            preferences=validate_preferences(preferences), occurred_at=occurred_at
        )

    @event(NotificationPreferencesSet)
    def _notification_preferences_set(
        self, preferences: dict[str, dict[str, bool]], occurred_at: datetime
    ) -> None:
        self.updated_at = occurred_at

    def erase(self, keys_destroyed: int, occurred_at: datetime) -> None:
        """Record that the person's keys are gone (the vault destroyed them first)."""
        self._refuse_if_erased()
        self._subject_erased(keys_destroyed=keys_destroyed, occurred_at=occurred_at)

    @event(SubjectErased)
    def _subject_erased(self, keys_destroyed: int, occurred_at: datetime) -> None:
        self.erased = True
        self.erased_at = occurred_at
        self.updated_at = occurred_at

    def _refuse_if_erased(self) -> None:
        if self.erased:
            raise RuleViolation("this person has been erased", code="subject_erased")
