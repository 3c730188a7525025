"""Opening personal data for a response, and recording that it happened (staff activity)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import Request

from api.present import Opener
from api.tokens import Principal, Role
from domain.personal import Erased, personal_fields_of
from ticketlog.runtime import Runtime

# Roles that may see a restricted person's data: restriction stops routine processing only;
# compliance acts on it and auditors need it for legal claims (GDPR art. 18(2)).
SEES_RESTRICTED = frozenset({Role.COMPLIANCE, Role.AUDITOR, Role.ADMIN})


def opener_for(runtime: Runtime, who: Principal) -> Opener:
    return Opener(runtime.vault, may_see_restricted=who.role in SEES_RESTRICTED)


def record_access(runtime: Runtime, who: Principal, request: Request, opener: Opener) -> None:
    """Append who opened whose data through which endpoint (ids and labels only)."""
    _record(runtime, who, request, opener.subjects)


def _record(runtime: Runtime, who: Principal, request: Request, subjects: set[UUID]) -> None:
    if not subjects:
        return
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    runtime.desk.record_access(
        who.token_id, who.name, who.role.value, f"{request.method} {path}", list(subjects)
    )
    # Keeps views (and /healthz lag) current in the embedded default. Nothing in this answer
    # reads the record back (the export catches up first), so a busy runner is not waited for.
    runtime.runner.catch_up_unless_busy()


def record_history_access(
    runtime: Runtime, who: Principal, request: Request, events: list[Any]
) -> None:
    """History opens events through the mapper: the people are the requester and the authors
    whose fields it could still open."""
    subjects: set[UUID] = set()
    for event in events:
        fields = personal_fields_of(type(event))
        if not fields or any(isinstance(getattr(event, f), Erased) for f in fields):
            continue
        for attr in ("requester_id", "author_id"):
            person = getattr(event, attr, None)
            if isinstance(person, UUID):
                subjects.add(person)
    _record(runtime, who, request, subjects)
