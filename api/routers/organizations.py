"""/v1/organizations: customer companies, their members and the end of their contracts."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter

from api.deps import RuntimeDep, parse_id, require
from api.errors import ApiError
from api.schemas import ContractEndIn, OrganizationIn, OrganizationOut
from api.tokens import Principal, Role
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


@router.post("", status_code=201, response_model=OrganizationOut)
def register(body: OrganizationIn, runtime: RuntimeDep, who: Principal = WRITE) -> dict[str, Any]:
    organization_id = runtime.desk.register_organization(body.name)
    runtime.runner.catch_up()
    return _read(runtime, organization_id)


@router.get("/{organization_id}", response_model=OrganizationOut)
def get(organization_id: str, runtime: RuntimeDep, who: Principal = READ) -> dict[str, Any]:
    return _read(runtime, parse_id(organization_id, "organization"))


@router.post("/{organization_id}/contract-end", response_model=OrganizationOut)
def contract_end(
    organization_id: str, body: ContractEndIn, runtime: RuntimeDep, who: Principal = CONTRACTS
) -> dict[str, Any]:
    """Record the end of the support contract; retention may later erase its people."""
    oid = parse_id(organization_id, "organization")
    runtime.desk.end_contract(oid, body.ended_at)
    runtime.runner.catch_up()
    return _read(runtime, oid)
