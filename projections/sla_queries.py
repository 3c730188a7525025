"""Reads over the SLA view: one ticket's targets at a given instant, and targets due now."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from domain.sla.metrics import TargetResult, evaluate
from projections.sla_view import parse_time, terms_resolver, timeline_facts
from projections.sql import Database
from projections.views import timestamp


@dataclass(frozen=True)
class DueTarget:
    ticket_id: str
    metric: str
    instance: int
    due_at: datetime
    policy_id: str
    policy_version: int


class SlaQueries:
    def __init__(self, db: Database) -> None:
        self.db = db

    def ticket_targets(
        self, ticket_id: str, now: datetime, *, configured_now: bool = False
    ) -> tuple[list[dict[str, Any]], list[Any] | None] | None:
        """The ticket's targets at `now` ("as configured then", or with today's policies),
        and its recorded policy reference; None for an unknown ticket."""
        with self.db.transaction(commit=False) as c:
            ticket = c.execute(
                "SELECT * FROM view_sla_tickets WHERE ticket_id = ?", [ticket_id]
            ).fetchone()
            if ticket is None:
                return None
            timeline = orjson.loads(ticket["timeline"])
            facts = timeline_facts(timeline, terms_resolver(c, latest=configured_now))
            breaches = {
                (r["metric"], r["instance"])
                for r in c.execute(
                    "SELECT metric, instance FROM view_sla_breaches WHERE ticket_id = ?",
                    [ticket_id],
                ).fetchall()
            }
        as_of = max(now, parse_time(timeline[-1][1]))
        targets = [
            _target(r, (r.metric.value, r.instance) in breaches) for r in evaluate(facts, as_of)
        ]
        return targets, orjson.loads(ticket["policy"]) if ticket["policy"] else None

    def due_unrecorded(self, now: datetime, limit: int = 1000) -> list[DueTarget]:
        """Targets whose due time has passed and whose breach is not yet recorded."""
        with self.db.transaction(commit=False) as c:
            rows = c.execute(
                "SELECT t.ticket_id, t.metric, t.instance, t.due_at, t.policy_id,"
                " t.policy_version FROM view_sla_targets t"
                " WHERE t.due_at IS NOT NULL AND t.due_at < ?"
                " AND (t.fulfilled_at IS NULL OR t.breached = 1)"
                " AND NOT EXISTS (SELECT 1 FROM view_sla_breaches b WHERE b.ticket_id ="
                " t.ticket_id AND b.metric = t.metric AND b.instance = t.instance)"
                " ORDER BY t.due_at, t.ticket_id, t.metric, t.instance LIMIT ?",
                [timestamp(now), limit],
            ).fetchall()
        return [
            DueTarget(
                r["ticket_id"],
                r["metric"],
                int(r["instance"]),
                parse_time(r["due_at"]),
                r["policy_id"],
                int(r["policy_version"]),
            )
            for r in rows
        ]


def _target(r: TargetResult, breach_recorded: bool) -> dict[str, Any]:
    return {
        "metric": r.metric.value,
        "instance": r.instance,
        "status": r.status.value,
        "breached": r.breached,
        "breach_recorded": breach_recorded,
        "policy_id": r.policy_id,
        "policy_version": r.policy_version,
        "policy_name": r.policy_name,
        "priority": r.priority,
        "target_minutes": r.target_minutes,
        "business": r.business,
        "started_at": r.started_at,
        "due_at": r.due_at,
        "fulfilled_at": r.fulfilled_at,
        "elapsed_calendar_minutes": round(r.elapsed_calendar_minutes, 2),
        "elapsed_business_minutes": None
        if r.elapsed_business_minutes is None
        else round(r.elapsed_business_minutes, 2),
    }
