"""SLA reads: a ticket's targets now (reports live in `reports`)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter

from api.deps import RuntimeDep, parse_id, require
from api.errors import ApiError
from api.sla_schemas import TicketSlaOut
from api.tokens import Role
from projections.sla_queries import SlaQueries

router = APIRouter(prefix="/v1", tags=["sla"])
SERVICE = require(Role.SERVICE)


@router.get("/tickets/{ticket_id}/sla", response_model=TicketSlaOut, dependencies=[SERVICE])
def ticket_sla(
    ticket_id: str, runtime: RuntimeDep, configured: Literal["then", "now"] = "then"
) -> dict[str, Any]:
    """Every target of the ticket: status, due time, elapsed calendar and business minutes.

    `configured=then` (default) measures against the policy and schedule versions the ticket
    recorded; `configured=now` against the latest versions of the same policy and schedule.
    """
    tid = parse_id(ticket_id, "ticket")
    now = runtime.desk.clock()
    found = SlaQueries(runtime.views.db).ticket_targets(
        str(tid), now, configured_now=configured == "now"
    )
    if found is None:
        raise ApiError(404, "not_found", f"no ticket with id {tid}")
    targets, ref = found
    applied = None
    if ref is not None:
        keys = ("policy_id", "policy_version", "schedule_id", "schedule_version")
        applied = dict(zip(keys, ref, strict=True))
    return {
        "ticket_id": tid,
        "as_of": now,
        "configured": configured,
        "applied_policy": applied,
        "targets": targets,
    }
