"""/v1/users: register people, read and rectify their profile."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request, Response

from api.access import opener_for, record_access
from api.deps import RuntimeDep, parse_id, require
from api.errors import ApiError
from api.schemas import UserCreate, UserOut, UserPatch
from api.tokens import Principal, Role
from api.versions import ETAG_HEADER, IfMatch, command_responses, expected_version, tagged
from ticketlog.desk import UNSET
from ticketlog.runtime import Runtime

router = APIRouter(prefix="/v1/users", tags=["users"])
WRITE = require(Role.SERVICE)
READ = require(Role.SERVICE, Role.COMPLIANCE)


def read_user(runtime: Runtime, who: Principal, request: Request, user_id: UUID) -> dict[str, Any]:
    row = runtime.queries.user(str(user_id))
    if row is None:
        raise ApiError(404, "not_found", f"no user with id {user_id}")
    opener = opener_for(runtime, who)
    body = opener.user(row)
    record_access(runtime, who, request, opener)
    return body


@router.post("", status_code=201, response_model=UserOut, responses={201: {"headers": ETAG_HEADER}})
def register(
    body: UserCreate,
    runtime: RuntimeDep,
    request: Request,
    response: Response,
    who: Principal = WRITE,
) -> dict[str, Any]:
    user_id = runtime.desk.register_user(
        kind=body.kind,
        name=body.name,
        email=str(body.email),
        phone=body.phone,
        organization=body.organization,
        organization_id=body.organization_id,
    )
    runtime.runner.catch_up()
    return tagged(response, read_user(runtime, who, request, user_id))


@router.get("/{user_id}", response_model=UserOut, responses={200: {"headers": ETAG_HEADER}})
def get(
    user_id: str,
    runtime: RuntimeDep,
    request: Request,
    response: Response,
    who: Principal = READ,
) -> dict[str, Any]:
    return tagged(response, read_user(runtime, who, request, parse_id(user_id, "user")))


@router.patch("/{user_id}", response_model=UserOut, responses=command_responses(200))
def update(
    user_id: str,
    body: UserPatch,
    runtime: RuntimeDep,
    request: Request,
    response: Response,
    if_match: IfMatch = None,
    who: Principal = WRITE,
) -> dict[str, Any]:
    uid = parse_id(user_id, "user")
    changes = body.model_dump(exclude_unset=True)
    organization_id = changes.pop("organization_id", UNSET)
    for required in ("name", "email"):
        if required in changes and changes[required] is None:
            raise ApiError(422, "invalid_input", f"{required} cannot be removed")
    if "email" in changes:
        changes["email"] = str(changes["email"])
    runtime.desk.update_user(
        uid, changes, organization_id=organization_id, expected_version=expected_version(if_match)
    )
    runtime.runner.catch_up()
    return tagged(response, read_user(runtime, who, request, uid))
