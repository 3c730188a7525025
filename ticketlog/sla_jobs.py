"""SLA work done by the passing of time: recording breaches whose due time has passed."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from projections.sla_queries import DueTarget, SlaQueries
from ticketlog.runtime import Runtime

BATCH = 500


def record_due_breaches(runtime: Runtime, now: datetime | None = None) -> list[DueTarget]:
    """Append one `SlaBreached` event per target whose due time passed before `now`
    (the desk's clock by default). Repeating it records nothing twice."""
    runtime.runner.catch_up()
    now = now or runtime.desk.clock()
    queries = SlaQueries(runtime.views.db)
    recorded: list[DueTarget] = []
    while True:
        due = queries.due_unrecorded(now, limit=BATCH)
        fresh = [
            d
            for d in due
            if runtime.desk.record_breach(
                UUID(d.ticket_id),
                d.metric,
                d.instance,
                d.due_at,
                UUID(d.policy_id),
                d.policy_version,
            )
        ]
        recorded += fresh
        runtime.runner.catch_up()
        if len(due) < BATCH or not fresh:
            return recorded
