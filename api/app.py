"""The FastAPI application: routers per resource, JSON errors, the runtime as state."""

from __future__ import annotations

from fastapi import FastAPI

from api import errors
from api.idempotency import Idempotency
from api.limits import BodyLimit
from api.ratelimit import RateLimit
from api.requestlog import RequestLog
from api.routers import (
    attachments,
    audit,
    health,
    imports,
    organizations,
    preferences,
    reports,
    retention,
    sla,
    sla_reads,
    subjects,
    tickets,
    users,
    webhooks,
)
from api.schemas import ErrorOut
from ticketlog.runtime import Runtime


def create_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(
        title="ticketlog",
        version="0.1.0",
        description=(
            "Event-sourced support tickets. Personal data is encrypted per person; erasing a "
            "person destroys their keys."
        ),
        responses={
            401: {"model": ErrorOut, "description": "no or unknown token"},
            403: {"model": ErrorOut, "description": "the role may not do this"},
            404: {"model": ErrorOut, "description": "unknown id"},
            409: {"model": ErrorOut, "description": "a rule forbids it (see the code)"},
            422: {"model": ErrorOut, "description": "invalid input"},
            413: {"model": ErrorOut, "description": "the body is larger than allowed"},
            423: {"model": ErrorOut, "description": "the person restricted processing"},
            429: {"model": ErrorOut, "description": "too many requests (see Retry-After)"},
        },
    )
    app.state.runtime = runtime
    errors.install(app)
    for router in (
        health.router,
        users.router,
        tickets.router,
        subjects.router,
        organizations.router,
        retention.router,
    ):
        app.include_router(router)
    app.include_router(audit.router)
    app.include_router(sla.router)
    app.include_router(sla_reads.router)
    app.include_router(reports.router)
    app.include_router(imports.router)
    app.include_router(attachments.router)
    app.include_router(preferences.router)
    app.include_router(webhooks.router)
    # The last added runs first: request ids and the access line, rate limit, then the body
    # limit, which bounds what idempotency reads.
    settings = runtime.settings
    app.add_middleware(Idempotency, tokens=runtime.tokens, max_bytes=settings.max_body_bytes)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RateLimit, rate=settings.rate_limit, burst=settings.rate_burst)
    app.add_middleware(RequestLog)
    return app
