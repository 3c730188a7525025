"""Organizations: customer companies under a support contract (not natural persons)."""

from __future__ import annotations

from datetime import datetime

from eventsourcing.domain import Aggregate, event

from domain.errors import RuleViolation


class Organization(Aggregate):
    class Registered(Aggregate.Created):
        name: str
        occurred_at: datetime

    class ContractEnded(Aggregate.Event):
        ended_at: datetime
        occurred_at: datetime

    @event(Registered)
    def __init__(self, name: str, occurred_at: datetime) -> None:
        self.name = name
        self.contract_ended_at: datetime | None = None
        self.created_at = occurred_at

    def end_contract(self, ended_at: datetime, occurred_at: datetime) -> None:
        if self.contract_ended_at is not None:
            raise RuleViolation("the contract has already ended", code="contract_ended")
        self._contract_ended(ended_at=ended_at, occurred_at=occurred_at)

    @event(ContractEnded)
    def _contract_ended(self, ended_at: datetime, occurred_at: datetime) -> None:
        self.contract_ended_at = ended_at
