"""/v1/import: bring tickets over from another help desk, history and all (admin)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from api.deps import RuntimeDep, require
from api.errors import ApiError
from api.routers.tickets import _read
from api.schemas import TicketOut
from api.sla_schemas import TicketImportIn
from api.tokens import Principal

router = APIRouter(prefix="/v1/import", tags=["import"])
ADMIN = require()


@router.post("/tickets", status_code=201, response_model=TicketOut)
def import_ticket(
    body: TicketImportIn, runtime: RuntimeDep, request: Request, who: Principal = ADMIN
) -> dict[str, Any]:
    """Events keep their own `occurred_at` (business time); the store records the real time.
    The history marks them imported. A step that breaks a ticket rule refuses the whole
    import (409, the message names the event's index)."""
    last = body.events[-1].occurred_at if body.events else body.created_at
    if last > runtime.desk.clock():
        raise ApiError(422, "invalid_import", "imported events cannot lie in the future")
    ticket_id = runtime.desk.import_ticket(body.to_domain())
    runtime.runner.catch_up()
    return _read(runtime, who, request, ticket_id)
