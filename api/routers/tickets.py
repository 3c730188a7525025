"""/v1/tickets: open tickets, comment, assign, change status, list, and read history."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response

from api.access import opener_for, record_access, record_history_access
from api.deps import RuntimeDep, parse_id, pooled, require
from api.errors import ApiError
from api.limits import BIGINT_MAX
from api.present import history_event
from api.schemas import (
    AssignRequest,
    CommentAdded,
    CommentCreate,
    CommentPage,
    History,
    StatusRequest,
    TicketCreate,
    TicketOut,
    TicketPage,
    TicketState,
)
from api.sla_schemas import PriorityRequest, TagsRequest
from api.tokens import Principal, Role
from api.versions import ETAG_HEADER, IfMatch, command_responses, expected_version, tagged
from domain.ticket import Status
from projections.kafka import ViewsLagging
from projections.queries import TicketFilter
from ticketlog.audit.replay import PointInTime, ticket_as_of, ticket_row
from ticketlog.runtime import Runtime

router = APIRouter(prefix="/v1/tickets", tags=["tickets"])
SERVICE = require(Role.SERVICE)
AUDIT = require(Role.AUDITOR)
SERVICE_OR_AUDIT = require(Role.SERVICE, Role.AUDITOR)


def _read(
    runtime: Runtime,
    who: Principal,
    request: Request,
    ticket_id: UUID,
    *,
    with_comments: bool = True,
) -> dict[str, Any]:
    row = _row(runtime, ticket_id, with_comments=with_comments)
    opener = opener_for(runtime, who)
    body = opener.ticket(row)
    record_access(runtime, who, request, opener)
    return body


@router.post(
    "", status_code=201, response_model=TicketOut, responses={201: {"headers": ETAG_HEADER}}
)
@pooled
def open_ticket(
    body: TicketCreate,
    runtime: RuntimeDep,
    request: Request,
    response: Response,
    who: Principal = SERVICE,
) -> dict[str, Any]:
    ticket_id = runtime.desk.open_ticket(
        requester_id=body.requester_id,
        subject=body.subject,
        body=body.body,
        priority=body.priority,
        tags=body.tags,
    )
    runtime.runner.catch_up()
    return tagged(response, _read(runtime, who, request, ticket_id))


@router.get("", response_model=TicketPage)
def list_tickets(
    runtime: RuntimeDep,
    request: Request,
    who: Principal = SERVICE,
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
    opener = opener_for(runtime, who)
    page = {"items": [opener.ticket(i, in_list=True) for i in items], "next_cursor": next_cursor}
    record_access(runtime, who, request, opener)
    return page


@router.get("/{ticket_id}", response_model=TicketOut, responses={200: {"headers": ETAG_HEADER}})
def get_ticket(
    ticket_id: str,
    runtime: RuntimeDep,
    request: Request,
    response: Response,
    who: Annotated[Principal, SERVICE_OR_AUDIT],
    as_of: datetime | None = None,
    as_of_occurred: datetime | None = None,
) -> dict[str, Any]:
    """The ticket now (service), or rebuilt from the log as recorded at `as_of` or as it
    stood in business time at `as_of_occurred` (service and auditor)."""
    tid = parse_id(ticket_id, "ticket")
    if as_of is None and as_of_occurred is None:
        if who.role is Role.AUDITOR:
            raise ApiError(403, "forbidden", "auditors read tickets at a point in time (as_of)")
        return tagged(response, _read(runtime, who, request, tid))
    if as_of is not None and as_of_occurred is not None:
        raise ApiError(422, "invalid_input", "give as_of or as_of_occurred, not both")
    when = PointInTime.of(as_of or as_of_occurred, business=as_of is None)  # type: ignore[arg-type]
    ticket = ticket_as_of(runtime.desk, tid, when)
    if ticket is None:
        raise ApiError(404, "not_found", f"no ticket with id {tid} at {when.at.isoformat()}")
    row = ticket_row(ticket)
    # Restriction is judged as it stands now, whatever point in time is asked for.
    row["requester_restricted"] = _restricted(runtime, ticket.requester_id)
    for c in row["comments"]:
        c["author_restricted"] = _restricted(runtime, c["author_id"])
    opener = opener_for(runtime, who)
    body = opener.ticket(row)
    record_access(runtime, who, request, opener)
    return body


def _restricted(runtime: Runtime, user_id: UUID) -> bool:
    row = runtime.queries.user(str(user_id))
    return bool(row and row["restricted"])


@router.post(
    "/{ticket_id}/comments",
    status_code=201,
    response_model=CommentAdded,
    responses=command_responses(201),
)
@pooled
def comment(
    ticket_id: str,
    body: CommentCreate,
    runtime: RuntimeDep,
    request: Request,
    response: Response,
    if_match: IfMatch = None,
    who: Principal = SERVICE,
) -> dict[str, Any]:
    tid = parse_id(ticket_id, "ticket")
    version = runtime.desk.add_comment(
        tid, body.author_id, body.body, body.public, expected_version(if_match)
    )
    runtime.runner.catch_up()
    ticket = _summary(runtime, tid)
    added = runtime.queries.comment(str(tid), version)
    if added is None:  # stored, but another process emptied the views to rebuild them
        raise ViewsLagging(f"comment {version} of ticket {tid} is not in the views yet")
    opener = opener_for(runtime, who)
    answer = {"comment": opener.comment(added), "ticket": opener.ticket(ticket)}
    record_access(runtime, who, request, opener)
    tagged(response, ticket)
    return answer


@router.get("/{ticket_id}/comments", response_model=CommentPage)
def list_comments(
    ticket_id: str,
    runtime: RuntimeDep,
    request: Request,
    who: Principal = SERVICE,
    after: Annotated[int, Query(ge=0, le=BIGINT_MAX, description="a ticket version")] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 100,
) -> dict[str, Any]:
    """The ticket's comments, oldest first, a page at a time (`next_after` asks for the next)."""
    tid = parse_id(ticket_id, "ticket")
    ticket = _summary(runtime, tid)
    opener = opener_for(runtime, who)
    opener.refuse_if_restricted(ticket, "requester_restricted")
    items, next_after = runtime.queries.comments(str(tid), after, limit)
    page = {"items": [opener.comment(c) for c in items], "next_after": next_after}
    record_access(runtime, who, request, opener)
    return page


def _row(runtime: Runtime, ticket_id: UUID, *, with_comments: bool) -> dict[str, Any]:
    row = runtime.queries.ticket(str(ticket_id), with_comments=with_comments)
    if row is None:
        raise ApiError(404, "not_found", f"no ticket with id {ticket_id}")
    return row


def _summary(runtime: Runtime, ticket_id: UUID) -> dict[str, Any]:
    """The ticket's row without its body or comments (nothing here opens them)."""
    row = _row(runtime, ticket_id, with_comments=False)
    del row["body"]
    return row


@router.post("/{ticket_id}/assign", response_model=TicketState, responses=command_responses(200))
@pooled
def assign(
    ticket_id: str,
    body: AssignRequest,
    runtime: RuntimeDep,
    request: Request,
    response: Response,
    if_match: IfMatch = None,
    who: Principal = SERVICE,
) -> dict[str, Any]:
    tid = parse_id(ticket_id, "ticket")
    runtime.desk.assign(tid, body.assignee_id, expected_version(if_match))
    runtime.runner.catch_up()
    return tagged(response, _read(runtime, who, request, tid, with_comments=False))


@router.post("/{ticket_id}/status", response_model=TicketState, responses=command_responses(200))
@pooled
def change_status(
    ticket_id: str,
    body: StatusRequest,
    runtime: RuntimeDep,
    request: Request,
    response: Response,
    if_match: IfMatch = None,
    who: Principal = SERVICE,
) -> dict[str, Any]:
    tid = parse_id(ticket_id, "ticket")
    runtime.desk.change_status(tid, body.status, expected_version(if_match))
    runtime.runner.catch_up()
    return tagged(response, _read(runtime, who, request, tid, with_comments=False))


@router.post("/{ticket_id}/priority", response_model=TicketState, responses=command_responses(200))
@pooled
def change_priority(
    ticket_id: str,
    body: PriorityRequest,
    runtime: RuntimeDep,
    request: Request,
    response: Response,
    if_match: IfMatch = None,
    who: Principal = SERVICE,
) -> dict[str, Any]:
    tid = parse_id(ticket_id, "ticket")
    runtime.desk.change_priority(tid, body.priority, expected_version(if_match))
    runtime.runner.catch_up()
    return tagged(response, _read(runtime, who, request, tid, with_comments=False))


@router.post("/{ticket_id}/tags", response_model=TicketState, responses=command_responses(200))
@pooled
def change_tags(
    ticket_id: str,
    body: TagsRequest,
    runtime: RuntimeDep,
    request: Request,
    response: Response,
    if_match: IfMatch = None,
    who: Principal = SERVICE,
) -> dict[str, Any]:
    """Set the ticket's tags (the whole list)."""
    tid = parse_id(ticket_id, "ticket")
    runtime.desk.change_tags(tid, list(body.tags), expected_version(if_match))
    runtime.runner.catch_up()
    return tagged(response, _read(runtime, who, request, tid, with_comments=False))


@router.get("/{ticket_id}/history", response_model=History)
def history(
    ticket_id: str, runtime: RuntimeDep, request: Request, who: Principal = AUDIT
) -> dict[str, Any]:
    tid = parse_id(ticket_id, "ticket")
    events = runtime.desk.ticket_history(tid)
    record_history_access(runtime, who, request, events)
    # Events up to a HistoryImported marker came from another help desk.
    imported = max((getattr(e, "through_version", 0) for e in events), default=0)
    return {
        "ticket_id": tid,
        "events": [
            {**history_event(e), "imported": e.originator_version <= imported} for e in events
        ],
    }
