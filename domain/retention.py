"""Retention rules, kept as data: when ticket content or whole people are shredded."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event


class RetentionKind(StrEnum):
    SHRED_CLOSED_TICKET_CONTENT = "shred_closed_ticket_content"
    ERASE_INACTIVE_CUSTOMERS = "erase_inactive_customers"
    ERASE_AFTER_CONTRACT_END = "erase_after_contract_end"


@dataclass(frozen=True)
class RetentionRule:
    kind: RetentionKind
    after_days: int

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "after_days": self.after_days}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RetentionRule:
        return cls(RetentionKind(data["kind"]), int(data["after_days"]))


class RetentionSchedule(Aggregate):
    """The one set of retention rules in force; replacing it is an auditable event."""

    ID = uuid5(NAMESPACE_URL, "ticketlog:retention-schedule")

    class Created(Aggregate.Created):
        occurred_at: datetime

    class RulesReplaced(Aggregate.Event):
        rules: list[dict[str, Any]]
        occurred_at: datetime

    @staticmethod
    def create_id(**_: Any) -> UUID:
        return RetentionSchedule.ID

    @event(Created)
    def __init__(self, occurred_at: datetime) -> None:
        self.rules: list[RetentionRule] = []

    def replace_rules(self, rules: list[RetentionRule], occurred_at: datetime) -> None:
        if rules != self.rules:
            self._rules_replaced(rules=[r.to_dict() for r in rules], occurred_at=occurred_at)

    @event(RulesReplaced)
    def _rules_replaced(self, rules: list[dict[str, Any]], occurred_at: datetime) -> None:
        self.rules = [RetentionRule.from_dict(r) for r in rules]
