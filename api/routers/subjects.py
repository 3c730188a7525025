"""/v1/subjects: the data-subject rights — access and portability (export), erasure,
anonymization, restriction, consent and objection, and legal holds."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
from fastapi import APIRouter, Request, Response

from api.access import opener_for, record_access
from api.deps import RuntimeDep, parse_id, require
from api.errors import ApiError
from api.schemas import (
    Anonymization,
    Certificate,
    ConsentIn,
    Consents,
    Erasure,
    Export,
    HoldIn,
    SubjectState,
)
from api.tokens import Principal, Role
from domain.personal import Erased
from domain.user import User
from ticketlog.certificates import erase_with_certificate, stored_certificate
from ticketlog.runtime import Runtime

router = APIRouter(prefix="/v1/subjects", tags=["subjects"])
COMPLIANCE = require(Role.COMPLIANCE)
CONSENTS = require(Role.SERVICE, Role.COMPLIANCE)
ZIP = "application/zip"


def _export(runtime: Runtime, who: Principal, request: Request, sid: UUID) -> dict[str, Any]:
    runtime.runner.catch_up()  # the access log and consents must be complete
    row = runtime.queries.user(str(sid))
    if row is None:
        raise ApiError(404, "not_found", f"no subject with id {sid}")
    opener = opener_for(runtime, who)
    restrictions, holds = _rights_history(runtime, sid)
    export = {
        "subject_id": sid,
        "exported_at": datetime.now(UTC),
        "profile": opener.user(row),
        "tickets_requested": [
            opener.ticket(t) for t in runtime.queries.tickets_requested_by(str(sid))
        ],
        "comments_elsewhere": [
            opener.comment(c) for c in runtime.queries.comments_elsewhere_by(str(sid))
        ],
        "consents": runtime.queries.consents(str(sid)),
        "restrictions": restrictions,
        "legal_holds": holds,
        "access_log": runtime.queries.access_log(str(sid)),
    }
    if any(h["reason"] is not None for h in holds):
        opener.subjects.add(sid)
    record_access(runtime, who, request, opener)
    return export


def _rights_history(runtime: Runtime, sid: UUID) -> tuple[list[Any], list[dict[str, Any]]]:
    """Restriction changes and legal hold periods, from the person's own stream."""
    restrictions: list[dict[str, Any]] = []
    holds: list[dict[str, Any]] = []
    for event in runtime.desk.history(sid):
        if isinstance(event, User.Restricted | User.Unrestricted):
            restricted = isinstance(event, User.Restricted)
            restrictions.append({"restricted": restricted, "at": event.occurred_at})
        elif isinstance(event, User.LegalHoldPlaced):
            reason = None if isinstance(event.reason, Erased) else event.reason
            holds.append({"reason": reason, "placed_at": event.occurred_at, "released_at": None})
        elif isinstance(event, User.LegalHoldReleased) and holds:
            holds[-1]["released_at"] = event.occurred_at
    return restrictions, holds


@router.get(
    "/{subject_id}/export",
    response_model=Export,
    responses={200: {"content": {ZIP: {}}, "description": "JSON, or a ZIP bundle on request"}},
)
def export(
    subject_id: str, runtime: RuntimeDep, request: Request, who: Principal = COMPLIANCE
) -> Any:
    """Everything held about the person. `Accept: application/zip` bundles the JSON, its
    schema and a human-readable summary."""
    data = _export(runtime, who, request, parse_id(subject_id, "subject"))
    if ZIP not in request.headers.get("accept", ""):
        return data
    document = Export.model_validate(data)
    buffer = io.BytesIO()  # in memory: the export must not touch the disk
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("export.json", document.model_dump_json(indent=2))
        bundle.writestr(
            "export.schema.json",
            orjson.dumps(Export.model_json_schema(), option=orjson.OPT_INDENT_2),
        )
        bundle.writestr("summary.txt", summary(document))
    return Response(
        buffer.getvalue(),
        media_type=ZIP,
        headers={
            "Content-Disposition": f'attachment; filename="subject-{document.subject_id}.zip"'
        },
    )


def summary(export: Export) -> str:
    p = export.profile
    lines = [
        "What ticketlog holds about you",
        f"Exported {export.exported_at:%Y-%m-%d %H:%M} UTC.",
        "",
        f"Name: {p.name or '(erased)'}",
        f"Email: {p.email or '(erased)'}",
        f"Phone: {p.phone or '-'}",
        f"Organization: {p.organization or '-'}",
        f"Status: {'erased' if p.erased else 'anonymized' if p.anonymized else 'active'}"
        f"{', processing restricted' if p.restricted else ''}",
        "",
        f"Tickets you opened: {len(export.tickets_requested)}",
    ]
    lines += [
        f"  - {t.created_at:%Y-%m-%d} [{t.status.value}] {t.subject or '(erased)'}"
        for t in export.tickets_requested
    ]
    lines.append(f"Comments you wrote on other tickets: {len(export.comments_elsewhere)}")
    lines.append("Consents:")
    lines += [
        f"  - {c.at:%Y-%m-%d} {c.purpose} (policy {c.policy_version}): "
        f"{'granted' if c.granted else 'withdrawn'}"
        for c in export.consents
    ] or ["  none"]
    lines.append(f"Legal holds: {len(export.legal_holds)}")
    lines.append("Who looked at your data:")
    lines += [
        f"  - {a.at:%Y-%m-%d %H:%M} {a.token_name} ({a.role}) via {a.endpoint}"
        for a in export.access_log
    ] or ["  nobody yet"]
    return "\n".join(lines) + "\n"


@router.post("/{subject_id}/erase", response_model=Erasure)
def erase(subject_id: str, runtime: RuntimeDep, who: Principal = COMPLIANCE) -> dict[str, Any]:
    """Crypto-shred the person. Repeating it is harmless and answers the same."""
    report, certificate = erase_with_certificate(runtime, parse_id(subject_id, "subject"))
    return {
        "certificate": certificate,
        "subject_id": report.subject_id,
        "erased": True,
        "already_erased": report.already_erased,
        "erased_at": report.erased_at,
        "keys_destroyed": report.keys_destroyed,
        "keys_destroyed_now": report.keys_destroyed_now,
    }


@router.get("/{subject_id}/erasure-certificate", response_model=Certificate)
def certificate(
    subject_id: str, runtime: RuntimeDep, who: Principal = COMPLIANCE
) -> dict[str, Any]:
    sid = parse_id(subject_id, "subject")
    note = stored_certificate(runtime, sid)
    if note is None:
        raise ApiError(404, "not_found", f"no erasure certificate for {sid}")
    return {"subject_id": sid, "certificate": note}


@router.post("/{subject_id}/anonymize", response_model=Anonymization)
def anonymize(subject_id: str, runtime: RuntimeDep, who: Principal = COMPLIANCE) -> dict[str, Any]:
    """Destroy only the profile key: tickets stay readable, linked to a pseudonymous id."""
    report = runtime.desk.anonymize_subject(parse_id(subject_id, "subject"))
    runtime.runner.catch_up()
    return {
        "subject_id": report.subject_id,
        "anonymized": True,
        "already_anonymized": report.already_anonymized,
        "anonymized_at": report.anonymized_at,
        "key_destroyed": report.key_destroyed,
    }


def _state(runtime: Runtime, sid: UUID) -> dict[str, Any]:
    runtime.runner.catch_up()
    row = runtime.queries.user(str(sid))
    assert row is not None
    return {
        "subject_id": sid,
        "restricted": row["restricted"],
        "on_legal_hold": row["on_legal_hold"],
    }


@router.post("/{subject_id}/restrict", response_model=SubjectState)
def restrict(subject_id: str, runtime: RuntimeDep, who: Principal = COMPLIANCE) -> dict[str, Any]:
    sid = parse_id(subject_id, "subject")
    runtime.desk.restrict(sid)
    return _state(runtime, sid)


@router.post("/{subject_id}/unrestrict", response_model=SubjectState)
def unrestrict(subject_id: str, runtime: RuntimeDep, who: Principal = COMPLIANCE) -> dict[str, Any]:
    sid = parse_id(subject_id, "subject")
    runtime.desk.unrestrict(sid)
    return _state(runtime, sid)


@router.post("/{subject_id}/hold", response_model=SubjectState)
def hold(
    subject_id: str, body: HoldIn, runtime: RuntimeDep, who: Principal = COMPLIANCE
) -> dict[str, Any]:
    sid = parse_id(subject_id, "subject")
    runtime.desk.place_hold(sid, body.reason)
    return _state(runtime, sid)


@router.post("/{subject_id}/hold/release", response_model=SubjectState)
def release(subject_id: str, runtime: RuntimeDep, who: Principal = COMPLIANCE) -> dict[str, Any]:
    sid = parse_id(subject_id, "subject")
    runtime.desk.release_hold(sid)
    return _state(runtime, sid)


def _consents(runtime: Runtime, sid: UUID) -> dict[str, Any]:
    if runtime.queries.user(str(sid)) is None:
        raise ApiError(404, "not_found", f"no subject with id {sid}")
    history = runtime.queries.consents(str(sid))
    current: dict[str, Any] = {}
    for consent in history:
        current[consent["purpose"]] = consent
    return {"subject_id": sid, "current": list(current.values()), "history": history}


@router.post("/{subject_id}/consents", status_code=201, response_model=Consents)
def record_consent(
    subject_id: str, body: ConsentIn, runtime: RuntimeDep, who: Principal = CONSENTS
) -> dict[str, Any]:
    """Consent given or withdrawn (objection); the latest per purpose is in force."""
    sid = parse_id(subject_id, "subject")
    runtime.desk.record_consent(sid, body.purpose, body.policy_version, body.granted)
    runtime.runner.catch_up()
    return _consents(runtime, sid)


@router.get("/{subject_id}/consents", response_model=Consents)
def consents(subject_id: str, runtime: RuntimeDep, who: Principal = CONSENTS) -> dict[str, Any]:
    return _consents(runtime, parse_id(subject_id, "subject"))
