"""Staff activity: who opened whose personal data, when and through which endpoint."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate, event


class AccessRecord(Aggregate):
    """One response that decrypted personal data. A new aggregate per response, so recording
    never contends with other writes; it holds ids and labels only, no personal values."""

    class Recorded(Aggregate.Created):
        token_id: str
        token_name: str
        role: str
        endpoint: str
        subject_ids: list[UUID]
        occurred_at: datetime

    @event(Recorded)
    def __init__(
        self,
        token_id: str,
        token_name: str,
        role: str,
        endpoint: str,
        subject_ids: list[UUID],
        occurred_at: datetime,
    ) -> None:
        self.token_id = token_id
        self.token_name = token_name
        self.role = role
        self.endpoint = endpoint
        self.subject_ids = list(subject_ids)
        self.occurred_at = occurred_at
