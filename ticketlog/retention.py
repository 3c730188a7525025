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
    erasing: set[UUID] = set()
    for rule in runtime.desk.retention_rules():
        cutoff = timestamp(now - timedelta(days=rule.after_days))
        days = f"{rule.after_days} days"
        if rule.kind is RetentionKind.SHRED_CLOSED_TICKET_CONTENT:
            for row in runtime.queries.closed_tickets_before(cutoff):
                actions.append(
                    RetentionAction(
                        "shred_ticket_content",
                        UUID(row["id"]),
                        rule.kind.value,
                        f"closed {row['closed_at'][:10]}, more than {days} ago",
                        bool(row["on_hold"]),
                    )
                )
        elif rule.kind is RetentionKind.ERASE_INACTIVE_CUSTOMERS:
            for row in runtime.queries.customers_inactive_since(cutoff):
                if UUID(row["id"]) not in erasing:
                    erasing.add(UUID(row["id"]))
                    actions.append(
                        RetentionAction(
                            "erase_person",
                            UUID(row["id"]),
                            rule.kind.value,
                            f"no activity since {row['last_active_at'][:10]}, more than {days}",
                            bool(row["on_hold"]),
                        )
                    )
        elif rule.kind is RetentionKind.ERASE_AFTER_CONTRACT_END:
            for row in runtime.queries.members_of_organizations_ended_before(cutoff):
                if UUID(row["id"]) not in erasing:
                    erasing.add(UUID(row["id"]))
                    actions.append(
                        RetentionAction(
                            "erase_person",
                            UUID(row["id"]),
                            rule.kind.value,
                            f"contract of organization {row['organization_id']} ended "
                            f"{row['contract_ended_at'][:10]}, more than {days} ago",
                            bool(row["on_hold"]),
                        )
                    )
    # Shredding a ticket of someone about to be erased anyway is redundant.
    requesters = _requesters(runtime, actions)
    return [
        a
        for a in actions
        if not (a.action == "shred_ticket_content" and requesters.get(a.target_id) in erasing)
    ]


def _requesters(runtime: Runtime, actions: list[RetentionAction]) -> dict[UUID, UUID]:
    out = {}
    for a in actions:
        if a.action == "shred_ticket_content":
            row = runtime.queries.ticket(str(a.target_id))
            if row is not None:
                out[a.target_id] = UUID(row["requester_id"])
    return out


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
