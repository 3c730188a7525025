"""/v1/organizations: customer companies, their members and the end of their contracts."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Response

from api.deps import RuntimeDep, parse_id, require
from api.errors import ApiError
from api.schemas import ContractEndIn, OrganizationIn, OrganizationOut
from api.tokens import Principal, Role
from api.versions import ETAG_HEADER, IfMatch, command_responses, expected_version, tagged
from ticketlog.runtime import Runtime

router = APIRouter(prefix="/v1/organizations", tags=["organizations"])
WRITE = require(Role.SERVICE)
READ = require(Role.SERVICE, Role.COMPLIANCE)
CONTRACTS = require(Role.SERVICE, Role.COMPLIANCE)


def _read(runtime: Runtime, organization_id: UUID) -> dict[str, Any]:
    row = runtime.queries.organization(str(organization_id))
    if row is None:
        raise ApiError(404, "not_found", f"no organization with id {organization_id}")
    return row


@router.post(
    "", status_code=201, response_model=OrganizationOut, responses={201: {"headers": ETAG_HEADER}}
)
def register(
    body: OrganizationIn, runtime: RuntimeDep, response: Response, who: Principal = WRITE
) -> dict[str, Any]:
    organization_id = runtime.desk.register_organization(body.name)
    runtime.runner.catch_up()
    return tagged(response, _read(runtime, organization_id))


@router.get(
    "/{organization_id}", response_model=OrganizationOut, responses={200: {"headers": ETAG_HEADER}}
)
def get(
    organization_id: str, runtime: RuntimeDep, response: Response, who: Principal = READ
) -> dict[str, Any]:
    return tagged(response, _read(runtime, parse_id(organization_id, "organization")))


@router.post(
    "/{organization_id}/contract-end",
    response_model=OrganizationOut,
    responses=command_responses(200),
)
def contract_end(
    organization_id: str,
    body: ContractEndIn,
    runtime: RuntimeDep,
    response: Response,
    if_match: IfMatch = None,
    who: Principal = CONTRACTS,
) -> dict[str, Any]:
    """Record the end of the support contract; retention may later erase its people."""
    oid = parse_id(organization_id, "organization")
    runtime.desk.end_contract(oid, body.ended_at, expected_version(if_match))
    runtime.runner.catch_up()
    return tagged(response, _read(runtime, oid))
