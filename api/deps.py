"""Dependencies: the process's runtime, and who is calling with which role."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, ParamSpec, TypeVar
from uuid import UUID

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from api.errors import ApiError
from api.requestlog import note_caller
from api.tokens import Principal, Role, TokenStore
from ticketlog.runtime import Runtime

P = ParamSpec("P")
R = TypeVar("R")

bearer = HTTPBearer(auto_error=False, description="A token made by `ticketlog keys create`")


async def get_runtime(request: Request) -> Runtime:
    # async: FastAPI would run a plain function in the thread pool, a hop per request for a
    # lookup that does no I/O.
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def authenticate(tokens: TokenStore, token: str) -> Principal | None:
    """The token's principal, noted for the access line; a token seen in the last second is
    known without the database, so without a thread-pool hop."""
    who = tokens.recently_authenticated(token)
    if who is None:
        who = await run_in_threadpool(tokens.authenticate, token)
    if who is not None:
        note_caller(who)
    return who


def require(*roles: Role) -> Any:
    """A dependency admitting the given roles (and admin); 401 without a valid token."""
    allowed = frozenset({Role.ADMIN, *roles})

    # async: a token seen in the last second is known without the database, and a sync
    # dependency would cost a thread-pool hop per request (the route itself takes another).
    async def principal(
        runtime: RuntimeDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        if credentials is None:
            raise ApiError(
                401, "unauthorized", "a bearer token is required", {"WWW-Authenticate": "Bearer"}
            )
        who = await authenticate(runtime.tokens, credentials.credentials)
        if who is None:
            raise ApiError(
                401,
                "unauthorized",
                "the token is unknown or revoked",
                {"WWW-Authenticate": "Bearer"},
            )
        if who.role not in allowed:
            raise ApiError(403, "forbidden", f"the {who.role} role may not do this")
        return who

    principal.allowed_roles = allowed  # type: ignore[attr-defined]
    return Depends(principal)


def parse_id(value: str, what: str) -> UUID:
    """Path ids that are not UUIDs name nothing: 404, like any unknown id."""
    try:
        return UUID(value)
    except ValueError:
        raise ApiError(404, "not_found", f"no {what} with id {value[:64]!r}") from None


def pooled(route: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """A blocking route run in the thread pool, as FastAPI runs a plain `def`, but declared a
    coroutine: FastAPI then checks the response model on the event loop instead of taking a
    second pool hop for it (a queue put, a thread wake-up and a hand-back, under load)."""

    @functools.wraps(route)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return await run_in_threadpool(route, *args, **kwargs)

    return run
