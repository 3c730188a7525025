"""/v1/audit: the verifiable log for auditors — stored events with leaf hashes, the latest
signed checkpoint, inclusion and consistency proofs. Read only; personal fields stay the
ciphertext the store holds, so no key is used to answer."""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel

from api.deps import RuntimeDep, require
from api.errors import ApiError
from api.limits import BIGINT_MAX
from api.tokens import Role
from ticketlog.audit.signing import local_verifier
from ticketlog.audit.store import AuditLog, LogGap
from ticketlog.runtime import Runtime

router = APIRouter(prefix="/v1/audit", tags=["audit"])
AUDIT = require(Role.AUDITOR)


class StoredEventOut(BaseModel):
    notification_id: int
    position: int | None
    originator_id: str
    originator_version: int
    topic: str
    state: str
    leaf_hash: str | None


class EventPage(BaseModel):
    items: list[StoredEventOut]
    next_after: int | None


class CheckpointOut(BaseModel):
    tree_size: int
    root: str
    note: str
    created_at: str


class InclusionOut(BaseModel):
    notification_id: int
    leaf_index: int
    leaf_hash: str
    tree_size: int
    root: str
    proof: list[str]


class ConsistencyOut(BaseModel):
    first: int
    second: int
    first_root: str
    second_root: str
    proof: list[str]


class PublicKeyOut(BaseModel):
    public_key: str


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _log(runtime: Runtime) -> AuditLog:
    assert runtime.audit is not None
    return runtime.audit


@router.get("/events", response_model=EventPage, dependencies=[AUDIT])
def events(
    runtime: RuntimeDep,
    after: Annotated[int, Query(ge=0, le=BIGINT_MAX, description="notification id")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    entries = _log(runtime).entries(after, limit)
    items = [
        {
            "notification_id": row.notification_id,
            "position": leaf.index if leaf else None,
            "originator_id": str(row.originator_id),
            "originator_version": row.version,
            "topic": row.topic,
            "state": _b64(row.state),
            "leaf_hash": _b64(leaf.digest) if leaf else None,
        }
        for row, leaf in entries
    ]
    next_after = entries[-1][0].notification_id if len(entries) == limit else None
    return {"items": items, "next_after": next_after}


@router.get("/checkpoints/latest", response_model=CheckpointOut, dependencies=[AUDIT])
def latest_checkpoint(runtime: RuntimeDep) -> dict[str, Any]:
    latest = _log(runtime).latest_checkpoint()
    if latest is None:
        raise ApiError(404, "not_found", "no checkpoint has been signed yet")
    return {
        "tree_size": latest.size,
        "root": _b64(latest.root),
        "note": latest.note,
        "created_at": latest.created_at,
    }


@router.get("/public-key", response_model=PublicKeyOut, dependencies=[AUDIT])
def public_key(runtime: RuntimeDep) -> dict[str, Any]:
    verifier = local_verifier(runtime.settings)
    if verifier is None:
        raise ApiError(404, "not_found", "this server has no signing key yet")
    return {"public_key": verifier.to_text()}


def _tree_size(log: AuditLog, requested: int | None) -> int:
    if requested is not None:
        return requested
    latest = log.latest_checkpoint()
    return latest.size if latest else log.tree_size()


@router.get(
    "/proofs/inclusion/{notification_id}", response_model=InclusionOut, dependencies=[AUDIT]
)
def inclusion(
    notification_id: Annotated[int, Path(ge=0, le=BIGINT_MAX)],
    runtime: RuntimeDep,
    tree_size: Annotated[int | None, Query(ge=1, le=BIGINT_MAX)] = None,
) -> dict[str, Any]:
    log = _log(runtime)
    leaf = log.leaf_of_event(notification_id)
    if leaf is None:
        raise ApiError(404, "not_found", f"no event with notification id {notification_id}")
    size = _tree_size(log, tree_size)
    if not leaf.index < size <= log.tree_size():
        raise ApiError(
            422, "invalid_tree_size", f"event {notification_id} is not in a tree of size {size}"
        )
    try:
        proof = log.inclusion_proof(leaf.index, size)
        root = log.root(size)
    except LogGap as e:
        raise ApiError(409, "log_gap", str(e)) from None
    return {
        "notification_id": notification_id,
        "leaf_index": leaf.index,
        "leaf_hash": _b64(leaf.digest),
        "tree_size": size,
        "root": _b64(root),
        "proof": [_b64(h) for h in proof],
    }


@router.get("/proofs/consistency", response_model=ConsistencyOut, dependencies=[AUDIT])
def consistency(
    runtime: RuntimeDep,
    first: Annotated[int, Query(alias="from", ge=0, le=BIGINT_MAX)],
    second: Annotated[int, Query(alias="to", ge=0, le=BIGINT_MAX)],
) -> dict[str, Any]:
    log = _log(runtime)
    if not first <= second <= log.tree_size():
        raise ApiError(
            422, "invalid_tree_size", f"no consistency proof from size {first} to size {second}"
        )
    try:
        proof = log.consistency_proof(first, second)
        first_root, second_root = log.root(first), log.root(second)
    except LogGap as e:
        raise ApiError(409, "log_gap", str(e)) from None
    return {
        "first": first,
        "second": second,
        "first_root": _b64(first_root),
        "second_root": _b64(second_root),
        "proof": [_b64(h) for h in proof],
    }
