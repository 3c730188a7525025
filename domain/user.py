"""The User aggregate: customers (requesters) and agents, their profile and their rights.

Besides the profile, a person's stream records what they and compliance decided about their
data: consents, restriction of processing, legal holds, anonymization and erasure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import ProcessingRestricted, RuleViolation
from domain.notifications import Preferences, validate_preferences
from domain.personal import DataSubject, PersonalFields

THE_USER = DataSubject("user", id_attr="originator_id")
PROFILE_FIELDS = ("name", "email", "phone", "organization")


class UserKind(StrEnum):
    CUSTOMER = "customer"
    AGENT = "agent"


@dataclass(frozen=True)
class Consent:
    purpose: str
    policy_version: str
    granted: bool
    at: datetime


class User(Aggregate):
    """A person known to the help desk. Every profile field is that person's personal data."""

    class Registered(Aggregate.Created):
        class_version = 2
        kind: str
        name: Any
        email: Any
        phone: Any
        organization: Any
        organization_id: UUID | None
        occurred_at: datetime
        personal_fields: ClassVar[PersonalFields] = {f: (THE_USER,) for f in PROFILE_FIELDS}

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["organization_id"] = None

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

    class OrganizationLinked(Aggregate.Event):
        organization_id: UUID | None
        occurred_at: datetime

    class ConsentRecorded(Aggregate.Event):
        purpose: str
        policy_version: str
        granted: bool
        occurred_at: datetime

    class Restricted(Aggregate.Event):
        occurred_at: datetime

    class Unrestricted(Aggregate.Event):
        occurred_at: datetime

    class LegalHoldPlaced(Aggregate.Event):
        reason: Any
        occurred_at: datetime
        personal_fields: ClassVar[PersonalFields] = {"reason": (THE_USER,)}

    class LegalHoldReleased(Aggregate.Event):
        occurred_at: datetime

    class ErasureBlocked(Aggregate.Event):
        """Someone tried to erase, anonymize or shred while a legal hold was in place."""

        action: str
        occurred_at: datetime

    class Anonymized(Aggregate.Event):
        """The profile key was destroyed; the person's ticket content stays readable."""

        reason: str
        occurred_at: datetime

    class SubjectErased(Aggregate.Event):
        """The person's keys were destroyed; carries no personal data."""

        class_version = 2
        keys_destroyed: int
        reason: str
        occurred_at: datetime

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["reason"] = "request"

    @event(Registered)
    def __init__(
        self,
        kind: str,
        name: Any,
        email: Any,
        phone: Any,
        organization: Any,
        occurred_at: datetime,
        organization_id: UUID | None = None,
    ) -> None:
        self.kind = UserKind(kind)
        self.name = name
        self.email = email
        self.phone = phone
        self.organization = organization
        self.organization_id = organization_id
        self.registered_at = occurred_at
        self.updated_at = occurred_at
        self.erased = False
        self.anonymized = False
        self.restricted = False
        self.on_legal_hold = False
        self.certificate: str | None = None
        self.consents: dict[str, Consent] = {}

    @property
    def is_agent(self) -> bool:
        return self.kind is UserKind.AGENT

    # Profile

    def update_profile(self, changes: dict[str, Any], occurred_at: datetime) -> None:
        """Rectification: set the given profile fields to new values."""
        self.ensure_can_act()
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
        self.notification_preferences = preferences
        self.updated_at = occurred_at

    def link_organization(self, organization_id: UUID | None, occurred_at: datetime) -> None:
        self.ensure_can_act()
        if organization_id != self.organization_id:
            self._organization_linked(organization_id=organization_id, occurred_at=occurred_at)

    @event(OrganizationLinked)
    def _organization_linked(self, organization_id: UUID | None, occurred_at: datetime) -> None:
        self.organization_id = organization_id
        self.updated_at = occurred_at

    # Rights the person exercises

    def record_consent(
        self, purpose: str, policy_version: str, granted: bool, occurred_at: datetime
    ) -> None:
        """Consent given or withdrawn (withdrawing is objecting); possible even when restricted."""
        self._refuse_if_erased()
        self._consent_recorded(
            purpose=purpose, policy_version=policy_version, granted=granted, occurred_at=occurred_at
        )

    @event(ConsentRecorded)
    def _consent_recorded(
        self, purpose: str, policy_version: str, granted: bool, occurred_at: datetime
    ) -> None:
        self.consents[purpose] = Consent(purpose, policy_version, granted, occurred_at)

    def has_consented(self, purpose: str) -> bool:
        consent = self.consents.get(purpose)
        return consent is not None and consent.granted

    def restrict(self, occurred_at: datetime) -> None:
        self._refuse_if_erased()
        if not self.restricted:
            self._restricted(occurred_at=occurred_at)

    @event(Restricted)
    def _restricted(self, occurred_at: datetime) -> None:
        self.restricted = True

    def unrestrict(self, occurred_at: datetime) -> None:
        if self.restricted:
            self._unrestricted(occurred_at=occurred_at)

    @event(Unrestricted)
    def _unrestricted(self, occurred_at: datetime) -> None:
        self.restricted = False

    def ensure_can_act(self) -> None:
        """Refuse new data from or about an erased, anonymized or restricted person."""
        self._refuse_if_erased()
        if self.anonymized:
            raise RuleViolation("this person has been anonymized", code="subject_anonymized")
        self.ensure_not_restricted()

    def ensure_not_restricted(self) -> None:
        """Refuse routine processing while the person has it restricted (compliance may act)."""
        if self.restricted:
            raise ProcessingRestricted(
                "this person has restricted the processing of their data; "
                "only compliance may act until it is lifted"
            )

    # Legal hold

    def place_hold(self, reason: str, occurred_at: datetime) -> None:
        self._refuse_if_erased()
        if self.on_legal_hold:
            raise RuleViolation("a legal hold is already in place", code="already_on_hold")
        self._legal_hold_placed(reason=reason, occurred_at=occurred_at)

    @event(LegalHoldPlaced)
    def _legal_hold_placed(self, reason: Any, occurred_at: datetime) -> None:
        self.on_legal_hold = True

    def release_hold(self, occurred_at: datetime) -> None:
        if not self.on_legal_hold:
            raise RuleViolation("there is no legal hold to release", code="not_on_hold")
        self._legal_hold_released(occurred_at=occurred_at)

    @event(LegalHoldReleased)
    def _legal_hold_released(self, occurred_at: datetime) -> None:
        self.on_legal_hold = False

    def ensure_not_held(self, action: str) -> None:
        if self.on_legal_hold:
            raise RuleViolation(
                f"a legal hold forbids {action} until it is released", code="legal_hold"
            )

    def record_blocked(self, action: str, occurred_at: datetime) -> None:
        self._erasure_blocked(action=action, occurred_at=occurred_at)

    @event(ErasureBlocked)
    def _erasure_blocked(self, action: str, occurred_at: datetime) -> None:
        self.updated_at = occurred_at

    # Anonymization and erasure (the key vault destroys keys first; these record it)

    def anonymize(self, reason: str, occurred_at: datetime) -> None:
        self._refuse_if_erased()
        self.ensure_not_held("anonymization")
        if not self.anonymized:
            self._anonymized(reason=reason, occurred_at=occurred_at)

    @event(Anonymized)
    def _anonymized(self, reason: str, occurred_at: datetime) -> None:
        self.anonymized = True
        self.anonymized_at = occurred_at
        self.updated_at = occurred_at

    def erase(self, keys_destroyed: int, occurred_at: datetime, reason: str = "request") -> None:
        self._refuse_if_erased()
        self.ensure_not_held("erasure")
        self._subject_erased(keys_destroyed=keys_destroyed, reason=reason, occurred_at=occurred_at)

    @event(SubjectErased)
    def _subject_erased(self, keys_destroyed: int, reason: str, occurred_at: datetime) -> None:
        self.erased = True
        self.erased_at = occurred_at
        self.updated_at = occurred_at

    class ErasureCertified(Aggregate.Event):
        """The signed certificate of this person's erasure (ids, counts and hashes only)."""

        note: str
        occurred_at: datetime

    def attach_certificate(self, note: str, occurred_at: datetime) -> None:
        if not self.erased:
            raise RuleViolation("only an erasure can be certified", code="not_erased")
        self._erasure_certified(note=note, occurred_at=occurred_at)

    @event(ErasureCertified)
    def _erasure_certified(self, note: str, occurred_at: datetime) -> None:
        self.certificate = note

    def _refuse_if_erased(self) -> None:
        if self.erased:
            raise RuleViolation("this person has been erased", code="subject_erased")
