"""/v1/subjects: what compliance does for a data subject — export and erasure."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter

from api.deps import RuntimeDep, parse_id, require
from api.errors import ApiError
from api.present import Opener
from api.schemas import Erasure, Export
from api.tokens import Role

router = APIRouter(prefix="/v1/subjects", tags=["subjects"])
COMPLIANCE = require(Role.COMPLIANCE)


@router.get("/{subject_id}/export", response_model=Export, dependencies=[COMPLIANCE])
def export(subject_id: str, runtime: RuntimeDep) -> dict[str, Any]:
    """Everything held about the person: profile, tickets they requested, their comments."""
    sid = str(parse_id(subject_id, "subject"))
    row = runtime.queries.user(sid)
    if row is None:
        raise ApiError(404, "not_found", f"no subject with id {sid}")
    opener = Opener(runtime.vault)
    return {
        "subject_id": sid,
        "exported_at": datetime.now(UTC),
        "profile": opener.user(row),
        "tickets_requested": [opener.ticket(t) for t in runtime.queries.tickets_requested_by(sid)],
        "comments_elsewhere": [
            opener.comment(c) for c in runtime.queries.comments_elsewhere_by(sid)
        ],
    }


@router.post("/{subject_id}/erase", response_model=Erasure, dependencies=[COMPLIANCE])
def erase(subject_id: str, runtime: RuntimeDep) -> dict[str, Any]:
    """Crypto-shred the person. Repeating it is harmless and answers the same."""
    report = runtime.desk.erase_subject(parse_id(subject_id, "subject"))
    runtime.runner.catch_up()
    return {
        "subject_id": report.subject_id,
        "erased": True,
        "already_erased": report.already_erased,
        "erased_at": report.erased_at,
        "keys_destroyed": report.keys_destroyed,
        "keys_destroyed_now": report.keys_destroyed_now,
    }
