"""/v1/users/{id}/notification-preferences: which notifications a person gets, per channel.

Preferences are events in the person's stream (`NotificationPreferencesSet`): the log stays the
one source of truth, they are audited like every other change, and they rebuild with the views.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import RuntimeDep, parse_id, require
from api.errors import ApiError
from api.schemas import NotificationPreferencesIn, NotificationPreferencesOut
from api.tokens import Role

router = APIRouter(prefix="/v1/users", tags=["notifications"])
WRITE = require(Role.SERVICE)
READ = require(Role.SERVICE, Role.COMPLIANCE)


def _read(runtime: Any, user_id: str) -> dict[str, Any]:
    if runtime.queries.user(user_id) is None:
        raise ApiError(404, "not_found", f"no user with id {user_id}")
    return {"user_id": user_id, "preferences": runtime.notifications.queries.preferences(user_id)}


@router.get(
    "/{user_id}/notification-preferences",
    response_model=NotificationPreferencesOut,
    dependencies=[READ],
)
def get_preferences(user_id: str, runtime: RuntimeDep) -> dict[str, Any]:
    return _read(runtime, str(parse_id(user_id, "user")))


@router.put(
    "/{user_id}/notification-preferences",
    response_model=NotificationPreferencesOut,
    dependencies=[WRITE],
)
def put_preferences(
    user_id: str, body: NotificationPreferencesIn, runtime: RuntimeDep
) -> dict[str, Any]:
    """Replace the preferences: `{kind: {channel: bool}}`; kinds and channels left out are on."""
    uid = parse_id(user_id, "user")
    runtime.desk.set_notification_preferences(uid, body.model_dump(exclude_none=True))
    runtime.runner.catch_up()
    runtime.notifications.runner.catch_up()
    return _read(runtime, str(uid))
