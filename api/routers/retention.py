"""/v1/retention: the retention rules in force (admin) and running them (compliance)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import RuntimeDep, require
from api.schemas import RetentionRules, RetentionRun
from api.tokens import Principal, Role
from domain.retention import RetentionRule
from ticketlog import retention

router = APIRouter(prefix="/v1/retention", tags=["retention"])
ADMIN = require()
RUN = require(Role.COMPLIANCE)


def _rules(runtime: Any) -> dict[str, Any]:
    return {"rules": [r.to_dict() for r in runtime.desk.retention_rules()]}


@router.get("/rules", response_model=RetentionRules)
def get_rules(runtime: RuntimeDep, who: Principal = RUN) -> dict[str, Any]:
    return _rules(runtime)


@router.put("/rules", response_model=RetentionRules)
def put_rules(body: RetentionRules, runtime: RuntimeDep, who: Principal = ADMIN) -> dict[str, Any]:
    """Replace the rules in force (an auditable event)."""
    runtime.desk.set_retention_rules([RetentionRule(r.kind, r.after_days) for r in body.rules])
    return _rules(runtime)


@router.post("/run", response_model=RetentionRun)
def run(runtime: RuntimeDep, dry_run: bool = True, who: Principal = RUN) -> dict[str, Any]:
    """Apply the rules now; with `dry_run=true` (the default) only list what would happen."""
    now = runtime.desk.clock()
    actions = retention.run(runtime, now, dry_run=dry_run)
    return {"dry_run": dry_run, "ran_at": now, "actions": retention.as_json(actions)}
