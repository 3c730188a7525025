"""/v1/tickets: open tickets, comment, assign, change status, list, and read history."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query

from api.deps import RuntimeDep, parse_id, require
from api.errors import ApiError
from api.present import Opener, history_event
from api.schemas import (
    AssignRequest,
    CommentCreate,
    History,
    StatusRequest,
    TicketCreate,
    TicketOut,
    TicketPage,
)
from api.sla_schemas import PriorityRequest, TagsRequest
from api.tokens import Role
from domain.ticket import Status
from projections.queries import TicketFilter
from ticketlog.runtime import Runtime

router = APIRouter(prefix="/v1/tickets", tags=["tickets"])
SERVICE = require(Role.SERVICE)
AUDIT = require(Role.AUDITOR)


def _read(runtime: Runtime, ticket_id: UUID) -> dict[str, Any]:
    row = runtime.queries.ticket(str(ticket_id))
    if row is None:
        raise ApiError(404, "not_found", f"no ticket with id {ticket_id}")
    return Opener(runtime.vault).ticket(row)


@router.post("", status_code=201, response_model=TicketOut, dependencies=[SERVICE])
def open_ticket(body: TicketCreate, runtime: RuntimeDep) -> dict[str, Any]:
    ticket_id = runtime.desk.open_ticket(
        requester_id=body.requester_id,
        subject=body.subject,
        body=body.body,
        priority=body.priority,
        tags=body.tags,
    )
    runtime.runner.catch_up()
    return _read(runtime, ticket_id)


@router.get("", response_model=TicketPage, dependencies=[SERVICE])
def list_tickets(
    runtime: RuntimeDep,
    status: Status | None = None,
    requester_id: UUID | None = None,
    assignee_id: UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> dict[str, Any]:
    where = TicketFilter(
        status=status.value if status else None,
        requester_id=str(requester_id) if requester_id else None,
        assignee_id=str(assignee_id) if assignee_id else None,
    )
    items, next_cursor = runtime.queries.tickets(where, limit, cursor)
    opener = Opener(runtime.vault)
    return {"items": [opener.ticket(i) for i in items], "next_cursor": next_cursor}


@router.get("/{ticket_id}", response_model=TicketOut, dependencies=[SERVICE])
def get_ticket(ticket_id: str, runtime: RuntimeDep) -> dict[str, Any]:
    return _read(runtime, parse_id(ticket_id, "ticket"))


@router.post(
    "/{ticket_id}/comments", status_code=201, response_model=TicketOut, dependencies=[SERVICE]
)
def comment(ticket_id: str, body: CommentCreate, runtime: RuntimeDep) -> dict[str, Any]:
    tid = parse_id(ticket_id, "ticket")
    runtime.desk.add_comment(tid, body.author_id, body.body, body.public)
    runtime.runner.catch_up()
    return _read(runtime, tid)


@router.post("/{ticket_id}/assign", response_model=TicketOut, dependencies=[SERVICE])
def assign(ticket_id: str, body: AssignRequest, runtime: RuntimeDep) -> dict[str, Any]:
    tid = parse_id(ticket_id, "ticket")
    runtime.desk.assign(tid, body.assignee_id)
    runtime.runner.catch_up()
    return _read(runtime, tid)


@router.post("/{ticket_id}/status", response_model=TicketOut, dependencies=[SERVICE])
def change_status(ticket_id: str, body: StatusRequest, runtime: RuntimeDep) -> dict[str, Any]:
    tid = parse_id(ticket_id, "ticket")
    runtime.desk.change_status(tid, body.status)
    runtime.runner.catch_up()
    return _read(runtime, tid)


@router.post("/{ticket_id}/priority", response_model=TicketOut, dependencies=[SERVICE])
def change_priority(ticket_id: str, body: PriorityRequest, runtime: RuntimeDep) -> dict[str, Any]:
    tid = parse_id(ticket_id, "ticket")
    runtime.desk.change_priority(tid, body.priority)
    runtime.runner.catch_up()
    return _read(runtime, tid)


@router.post("/{ticket_id}/tags", response_model=TicketOut, dependencies=[SERVICE])
def change_tags(ticket_id: str, body: TagsRequest, runtime: RuntimeDep) -> dict[str, Any]:
    """Set the ticket's tags (the whole list)."""
    tid = parse_id(ticket_id, "ticket")
    runtime.desk.change_tags(tid, list(body.tags))
    runtime.runner.catch_up()
    return _read(runtime, tid)


@router.get("/{ticket_id}/history", response_model=History, dependencies=[AUDIT])
def history(ticket_id: str, runtime: RuntimeDep) -> dict[str, Any]:
    tid = parse_id(ticket_id, "ticket")
    events = runtime.desk.ticket_history(tid)
    # Events up to a HistoryImported marker came from another help desk.
    imported = max((getattr(e, "through_version", 0) for e in events), default=0)
    return {
        "ticket_id": tid,
        "events": [
            {**history_event(e), "imported": e.originator_version <= imported} for e in events
        ],
    }
