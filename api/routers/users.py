"""/v1/users: register people, read and rectify their profile."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import RuntimeDep, parse_id, require
from api.errors import ApiError
from api.present import Opener
from api.schemas import UserCreate, UserOut, UserPatch
from api.tokens import Role

router = APIRouter(prefix="/v1/users", tags=["users"])
WRITE = require(Role.SERVICE)
READ = require(Role.SERVICE, Role.COMPLIANCE)


def _read(runtime: Any, user_id: str) -> dict[str, Any]:
    row = runtime.queries.user(user_id)
    if row is None:
        raise ApiError(404, "not_found", f"no user with id {user_id}")
    return Opener(runtime.vault).user(row)


@router.post("", status_code=201, response_model=UserOut, dependencies=[WRITE])
def register(body: UserCreate, runtime: RuntimeDep) -> dict[str, Any]:
    user_id = runtime.desk.register_user(
        kind=body.kind,
        name=body.name,
        email=str(body.email),
        phone=body.phone,
        organization=body.organization,
    )
    runtime.runner.catch_up()
    return _read(runtime, str(user_id))


@router.get("/{user_id}", response_model=UserOut, dependencies=[READ])
def get(user_id: str, runtime: RuntimeDep) -> dict[str, Any]:
    return _read(runtime, str(parse_id(user_id, "user")))


@router.patch("/{user_id}", response_model=UserOut, dependencies=[WRITE])
def update(user_id: str, body: UserPatch, runtime: RuntimeDep) -> dict[str, Any]:
    uid = parse_id(user_id, "user")
    changes = body.model_dump(exclude_unset=True)
    for required in ("name", "email"):
        if required in changes and changes[required] is None:
            raise ApiError(422, "invalid_input", f"{required} cannot be removed")
    if "email" in changes:
        changes["email"] = str(changes["email"])
    runtime.desk.update_user(uid, changes)
    runtime.runner.catch_up()
    return _read(runtime, str(uid))
