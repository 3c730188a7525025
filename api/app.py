"""The FastAPI application: routers per resource, JSON errors, the runtime as state."""

from __future__ import annotations

from fastapi import FastAPI

from api import errors
from api.routers import (
    attachments,
    health,
    preferences,
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
            422: {"model": ErrorOut, "description": "invalid input"},
        },
    )
    app.state.runtime = runtime
    errors.install(app)
    for router in (health.router, users.router, tickets.router, subjects.router):
        app.include_router(router)
    app.include_router(attachments.router)
    app.include_router(preferences.router)
    app.include_router(webhooks.router)
    return app
