"""Retention: turn the rules in force into shredding, with a dry run that says exactly why.

Plans are read from the views (indexed SQL); each action then goes through the desk, which
re-checks legal holds in the vault's own transaction.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from uuid import UUID

import orjson

from domain.errors import DomainError
from domain.retention import RetentionKind, RetentionRule
from projections.views import timestamp
from ticketlog.certificates import erase_with_certificate
from ticketlog.runtime import Runtime

log = logging.getLogger("ticketlog.retention")


@dataclass
class RetentionAction:
    action: str  # "shred_ticket_content" or "erase_person"
    target_id: UUID
    rule: str
    reason: str
    blocked_by_legal_hold: bool
    done: bool = False


def plan(runtime: Runtime, now: datetime) -> list[RetentionAction]:
    """What the rules in force would shred now, and why. Changes nothing."""
    runtime.runner.catch_up()
    actions: list[RetentionAction] = []
    requester_of: dict[UUID, UUID] = {}  # ticket -> requester, for the shreds planned
    erasing: set[UUID] = set()
    for rule in runtime.desk.retention_rules():
        cutoff = timestamp(now - timedelta(days=rule.after_days))
        days = f"{rule.after_days} days"
        if rule.kind is RetentionKind.SHRED_CLOSED_TICKET_CONTENT:
            for row in runtime.queries.closed_tickets_before(cutoff):
                ticket_id = UUID(row["id"])
                requester_of[ticket_id] = UUID(row["requester_id"])
                reason = f"closed {row['closed_at'][:10]}, more than {days} ago"
                actions.append(
                    RetentionAction(
                        "shred_ticket_content",
                        ticket_id,
                        rule.kind.value,
                        reason,
                        bool(row["on_hold"]),
                    )
                )
            continue
        for person_id, reason, held in _people_due(runtime, rule.kind, cutoff, days):
            if person_id not in erasing:
                erasing.add(person_id)
                actions.append(
                    RetentionAction("erase_person", person_id, rule.kind.value, reason, held)
                )
    # Shredding a ticket of someone about to be erased anyway is redundant.
    return [a for a in actions if requester_of.get(a.target_id) not in erasing]


def _people_due(
    runtime: Runtime, kind: RetentionKind, cutoff: str, days: str
) -> list[tuple[UUID, str, bool]]:
    """(person, why, held) for the rules that erase people."""
    if kind is RetentionKind.ERASE_INACTIVE_CUSTOMERS:
        return [
            (
                UUID(row["id"]),
                f"no activity since {row['last_active_at'][:10]}, more than {days}",
                bool(row["on_hold"]),
            )
            for row in runtime.queries.customers_inactive_since(cutoff)
        ]
    return [
        (
            UUID(row["id"]),
            f"contract of organization {row['organization_id']} ended "
            f"{row['contract_ended_at'][:10]}, more than {days} ago",
            bool(row["on_hold"]),
        )
        for row in runtime.queries.members_of_organizations_ended_before(cutoff)
    ]


def run(runtime: Runtime, now: datetime, *, dry_run: bool) -> list[RetentionAction]:
    actions = plan(runtime, now)
    if dry_run:
        return actions
    for action in actions:
        if action.blocked_by_legal_hold:
            continue
        reason = f"retention:{action.rule}"
        try:
            if action.action == "shred_ticket_content":
                runtime.desk.shred_ticket_content(action.target_id, reason)
            else:
                erase_with_certificate(runtime, action.target_id, reason)
        except DomainError as e:  # e.g. a legal hold placed since the plan was made
            action.blocked_by_legal_hold = e.code == "legal_hold"
            log.warning("retention %s of %s skipped: %s", action.action, action.target_id, e.code)
            continue
        action.done = True
    runtime.runner.catch_up()
    return actions


def as_json(actions: list[RetentionAction]) -> list[dict[str, object]]:
    return [{**asdict(a), "target_id": str(a.target_id)} for a in actions]


def load_rules_file(runtime: Runtime, path: Path) -> list[RetentionRule]:
    """Rules as data in a file: {"rules": [{"kind": ..., "after_days": N}]}; applied if changed."""
    try:
        data = orjson.loads(path.read_bytes())
        rules = [RetentionRule.from_dict(r) for r in data["rules"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"retention file {path} is not valid: {e}") from e
    runtime.desk.set_retention_rules(rules)
    return rules


class RetentionScheduler:
    """Runs retention every `interval` seconds inside `serve`."""

    def __init__(self, runtime: Runtime, interval: float) -> None:
        self.runtime = runtime
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="retention", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                done = [
                    a for a in run(self.runtime, self.runtime.desk.clock(), dry_run=False) if a.done
                ]
                if done:
                    log.info("retention shredded %d item(s)", len(done))
            except Exception:
                log.exception("retention run failed; will try again")
