"""/v1/reports: SLA achievement and agent activity, as JSON, CSV or an SVG chart."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from api.charts import achievement_chart
from api.deps import RuntimeDep, require
from api.errors import ApiError
from api.tokens import Role
from projections.reports import Reports
from ticketlog.runtime import Runtime

router = APIRouter(prefix="/v1/reports", tags=["reports"])
READERS = require(Role.SERVICE, Role.AUDITOR)
DEFAULT_SPAN = timedelta(days=30)
From = Annotated[datetime | None, Query(alias="from", description="start, inclusive (ISO 8601)")]
To = Annotated[
    datetime | None, Query(alias="to", description="end, exclusive (ISO 8601); default now")
]


def _range(runtime: Runtime, start: datetime | None, end: datetime | None) -> tuple[datetime, ...]:
    now = runtime.desk.clock()
    end = _utc(end) if end else now
    start = _utc(start) if start else end - DEFAULT_SPAN
    if start >= end:
        raise ApiError(422, "invalid_range", "`from` must be before `to`")
    return start, end, now


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _wants_csv(request: Request) -> bool:
    return "text/csv" in request.headers.get("accept", "")


def _csv(rows: list[dict[str, Any]], filename: str) -> Response:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/sla", dependencies=[READERS])
def sla_report(
    request: Request,
    runtime: RuntimeDep,
    start: From = None,
    end: To = None,
    group_by: Literal["policy", "priority", "assignee"] = "policy",
    configured: Literal["then", "now"] = "then",
) -> Any:
    """Per group and metric: achieved, breached, active, achievement % and the median and
    p90 of fulfilled targets in calendar and business minutes. `Accept: text/csv` for CSV.

    `configured=then` (default): each ticket against the policy version that applied to it.
    `configured=now`: recomputed against today's versions of the same policies."""
    start, end, now = _range(runtime, start, end)
    runtime.runner.catch_up()
    groups = Reports(runtime.views.db, runtime.report_days).sla(
        start, end, group_by, now, configured_now=configured == "now"
    )
    if _wants_csv(request):
        rows = [
            {
                "configured": configured,
                "group_by": group_by,
                "group": g["group"],
                "label": g["label"],
                **m,
            }
            for g in groups
            for m in g["metrics"]
        ]
        return _csv(rows, "sla-report.csv")
    return {
        "from": start,
        "to": end,
        "as_of": now,
        "group_by": group_by,
        "configured": configured,
        "groups": groups,
    }


@router.get("/sla.svg", dependencies=[READERS], response_class=Response)
def sla_chart(runtime: RuntimeDep, start: From = None, end: To = None) -> Response:
    """Achievement % per week per policy, as an SVG line chart."""
    start, end, now = _range(runtime, start, end)
    runtime.runner.catch_up()
    weeks, series = Reports(runtime.views.db, runtime.report_days).weekly_achievement(
        start, end, now
    )
    title = f"SLA achievement per week, {start.date()} to {end.date()}"
    return Response(achievement_chart(title, weeks, series), media_type="image/svg+xml")


@router.get("/agents", dependencies=[READERS])
def agents_report(request: Request, runtime: RuntimeDep, start: From = None, end: To = None) -> Any:
    """Per agent: tickets solved, public replies, first-reply median and p90, one-touch
    resolution % (solved with fewer than two agent replies), reopens."""
    start, end, _ = _range(runtime, start, end)
    runtime.runner.catch_up()
    agents = Reports(runtime.views.db).agents(start, end)
    if _wants_csv(request):
        return _csv(agents, "agents-report.csv")
    return {"from": start, "to": end, "agents": agents}
