"""Every route, every role, and no token: the status class each one must get.

A route is only reachable through `api.deps.require(...)`, whose dependency carries
`allowed_roles`. A route without one fails here, so a new route cannot ship unguarded."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import RouteContext, iter_route_contexts

from api.app import create_app
from api.deps import require
from api.tokens import Role
from tests.conftest import Api

PUBLIC_PATHS = {"/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc", "/healthz"}

# Auditors read a ticket only at a point in time; the walk asks that way so the role counts.
QUERIES = {("GET", "/v1/tickets/{ticket_id}"): {"as_of": "2024-01-01T00:00:00Z"}}


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from _dependants(sub)


def declared_roles(route: RouteContext) -> frozenset[Role] | None:
    """The roles every `require` on the route admits (all must pass); None without any."""
    dependant = getattr(route, "dependant", None)
    if dependant is None:  # a plain Starlette route: no dependencies at all
        return None
    found = [
        frozenset(d.call.allowed_roles)  # type: ignore[union-attr]
        for d in _dependants(dependant)
        if hasattr(d.call, "allowed_roles")
    ]
    if not found:
        return None
    return frozenset.intersection(*found)


def guarded_routes(app: FastAPI) -> list[RouteContext]:
    """Every route, through included routers, but the public ones."""
    return [r for r in iter_route_contexts(app.routes) if r.path not in PUBLIC_PATHS]


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda _: str(uuid.uuid4()), path)


def test_every_route_declares_roles_and_answers_each_role_accordingly(api: Api) -> None:
    routes = guarded_routes(create_app(api.runtime))
    assert len(routes) > 40  # the walk really covers the API
    unguarded = [f"{sorted(r.methods or ())} {r.path}" for r in routes if declared_roles(r) is None]
    assert unguarded == [], "routes without a declared role"

    wrong = []
    for route in routes:
        allowed = declared_roles(route)
        assert allowed is not None
        for method in sorted((route.methods or set()) - {"HEAD"}):
            path = _concrete(str(route.path))
            for role in [None, *Role]:
                params = QUERIES.get((method, str(route.path)))
                r = api.client.request(method, path, headers=api.headers(role), params=params)
                if role is None:
                    ok = r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
                elif role in allowed:
                    ok = r.status_code not in (401, 403) and r.status_code < 500
                else:
                    ok = r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
                if not ok:
                    wrong.append((method, route.path, role, r.status_code))
    assert wrong == []


def test_a_route_without_a_declared_role_is_caught() -> None:
    app = FastAPI()

    @app.get("/v1/forgotten")
    def forgotten() -> dict[str, str]:
        return {}

    @app.get("/v1/guarded", dependencies=[require(Role.AUDITOR)])
    def guarded() -> dict[str, str]:
        return {}

    roles = {r.path: declared_roles(r) for r in guarded_routes(app)}
    assert roles == {"/v1/forgotten": None, "/v1/guarded": {Role.AUDITOR, Role.ADMIN}}


def test_admin_is_admitted_everywhere(api: Api) -> None:
    routes = guarded_routes(create_app(api.runtime))
    assert all(Role.ADMIN in (declared_roles(r) or ()) for r in routes)
