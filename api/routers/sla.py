"""/v1/sla: business-hours schedules and SLA policies (admin only)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request

from api.deps import RuntimeDep, parse_id, require
from api.errors import ApiError
from api.sla_schemas import PolicyIn, PolicyOrder, PolicyOut, ScheduleIn, ScheduleOut
from domain.sla.ical import CalendarError, holidays_from_ical
from domain.sla.policy import SlaPolicy, SlaSchedule
from ticketlog.runtime import Runtime

router = APIRouter(prefix="/v1/sla", tags=["sla"])
ADMIN = require()
MAX_CALENDAR_BYTES = 1_000_000


def _schedule_out(schedule: SlaSchedule) -> dict[str, Any]:
    definition = schedule.definition
    return {
        "id": schedule.id,
        "name": schedule.name,
        "version": schedule.version,
        "timezone": definition["timezone"],
        "hours": definition["hours"],
        "holidays": definition["holidays"],
        "updated_at": schedule.updated_at,
    }


def _policy_out(policy: SlaPolicy, position: int) -> dict[str, Any]:
    return {
        "id": policy.id,
        "name": policy.name,
        "position": position,
        "version": policy.version,
        "filter": policy.filter,
        "targets": policy.targets,
        "schedule_id": policy.schedule_id,
        "updated_at": policy.updated_at,
    }


def _policies_out(runtime: Runtime) -> list[dict[str, Any]]:
    return [_policy_out(p, n) for n, p in enumerate(runtime.desk.policies(), start=1)]


def _one_policy(runtime: Runtime, policy_id: UUID) -> dict[str, Any]:
    for out in _policies_out(runtime):
        if out["id"] == policy_id:
            return out
    raise ApiError(404, "not_found", f"no policy with id {policy_id}")


@router.post("/schedules", status_code=201, response_model=ScheduleOut, dependencies=[ADMIN])
def define_schedule(body: ScheduleIn, runtime: RuntimeDep) -> dict[str, Any]:
    schedule_id = runtime.desk.define_schedule(body.name, body.definition())
    runtime.runner.catch_up()
    return _schedule_out(runtime.desk.schedule(schedule_id))


@router.get("/schedules/{schedule_id}", response_model=ScheduleOut, dependencies=[ADMIN])
def read_schedule(schedule_id: str, runtime: RuntimeDep) -> dict[str, Any]:
    return _schedule_out(runtime.desk.schedule(parse_id(schedule_id, "schedule")))


@router.put("/schedules/{schedule_id}", response_model=ScheduleOut, dependencies=[ADMIN])
def redefine_schedule(schedule_id: str, body: ScheduleIn, runtime: RuntimeDep) -> dict[str, Any]:
    sid = parse_id(schedule_id, "schedule")
    runtime.desk.redefine_schedule(sid, body.name, body.definition())
    runtime.runner.catch_up()
    return _schedule_out(runtime.desk.schedule(sid))


@router.post(
    "/schedules/{schedule_id}/holidays",
    response_model=ScheduleOut,
    dependencies=[ADMIN],
    openapi_extra={"requestBody": {"content": {"text/calendar": {"schema": {"type": "string"}}}}},
)
async def upload_holidays(schedule_id: str, request: Request, runtime: RuntimeDep) -> Any:
    """Add the dates of an iCalendar file's events to the schedule's holidays."""
    sid = parse_id(schedule_id, "schedule")
    raw = await request.body()
    if len(raw) > MAX_CALENDAR_BYTES:
        raise ApiError(413, "payload_too_large", "the calendar file is larger than 1 MB")
    try:
        days = holidays_from_ical(raw.decode("utf-8"))
    except (CalendarError, UnicodeDecodeError) as e:
        message = str(e) if isinstance(e, CalendarError) else "the calendar is not UTF-8 text"
        raise ApiError(422, "invalid_calendar", message) from None
    schedule = runtime.desk.schedule(sid)
    definition = dict(schedule.definition)
    definition["holidays"] = sorted(set(definition["holidays"]) | {d.isoformat() for d in days})
    runtime.desk.redefine_schedule(sid, schedule.name, definition)
    runtime.runner.catch_up()
    return _schedule_out(runtime.desk.schedule(sid))


@router.get("/policies", response_model=list[PolicyOut], dependencies=[ADMIN])
def list_policies(runtime: RuntimeDep) -> list[dict[str, Any]]:
    return _policies_out(runtime)


@router.post("/policies", status_code=201, response_model=PolicyOut, dependencies=[ADMIN])
def define_policy(body: PolicyIn, runtime: RuntimeDep) -> dict[str, Any]:
    policy_id = runtime.desk.define_policy(
        body.name, body.filter_definition(), body.targets_definition(), body.schedule_id
    )
    runtime.runner.catch_up()
    return _one_policy(runtime, policy_id)


@router.post("/policies/reorder", response_model=list[PolicyOut], dependencies=[ADMIN])
def reorder_policies(body: PolicyOrder, runtime: RuntimeDep) -> list[dict[str, Any]]:
    runtime.desk.reorder_policies(body.policy_ids)
    runtime.runner.catch_up()
    return _policies_out(runtime)


@router.get("/policies/{policy_id}", response_model=PolicyOut, dependencies=[ADMIN])
def read_policy(policy_id: str, runtime: RuntimeDep) -> dict[str, Any]:
    return _one_policy(runtime, parse_id(policy_id, "policy"))


@router.put("/policies/{policy_id}", response_model=PolicyOut, dependencies=[ADMIN])
def redefine_policy(policy_id: str, body: PolicyIn, runtime: RuntimeDep) -> dict[str, Any]:
    pid = parse_id(policy_id, "policy")
    runtime.desk.redefine_policy(
        pid, body.name, body.filter_definition(), body.targets_definition(), body.schedule_id
    )
    runtime.runner.catch_up()
    return _one_policy(runtime, pid)
