"""Counting SLA targets per group and metric: outcomes, and fulfilled times for percentiles."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, MutableSequence, Sequence
from datetime import datetime
from typing import Any

from projections.sql import Cursor
from projections.views import timestamp

# Outcomes as small integers: a report reads one per target, and CPython shares small ints
# where a string per row would be a new object.
ACHIEVED, BREACHED, ACTIVE = 0, 1, 2
GROUP_COLUMNS = {"policy": "policy_id", "priority": "priority", "assignee": "assignee_id"}
# A target's outcome (one parameter: now). One not fulfilled in time turns breached once
# `due_at < now`, with no event: `first_due` says when that next happens.
_OUTCOME = (
    f"CASE WHEN fulfilled_at IS NOT NULL AND breached = 0 THEN {ACHIEVED}"
    f" WHEN breached = 1 OR (due_at IS NOT NULL AND due_at < ?) THEN {BREACHED}"
    f" ELSE {ACTIVE} END"
)
_FULFILLED = "CASE WHEN fulfilled_at IS NULL THEN NULL ELSE {} END"


def count_targets(
    c: Cursor, start: datetime, end: datetime, now: datetime, grouping: str
) -> Tallies:
    """Tallies of the targets that started in [start, end), outcomes as at `now`.

    Reads columns one index holds (`view_sla_targets_report`), so the database answers from
    the index alone, as tuples of mostly small integers (an outcome code, the times only when
    fulfilled): much cheaper than rows by name for a couple of hundred thousand targets."""
    return tally_rows(
        c.tuples(
            f"SELECT {GROUP_COLUMNS[grouping]}, metric, {_OUTCOME},"
            f" {_FULFILLED.format('elapsed_calendar_s')},"
            f" {_FULFILLED.format('elapsed_business_s')}"
            " FROM view_sla_targets WHERE started_at >= ? AND started_at < ?",
            [timestamp(now), timestamp(start), timestamp(end)],
        )
    )


def first_due(c: Cursor, start: datetime, end: datetime, now: datetime) -> str | None:
    """The earliest due time, not before `now`, of the targets that started in [start, end)
    and are still active at `now`: until then, none of their outcomes changes by itself."""
    # The conditions sit inside MIN so that only `started_at` selects rows: the planner then
    # reads the span of the covering report index, not every unfulfilled target.
    rows = c.tuples(
        "SELECT MIN(CASE WHEN fulfilled_at IS NULL AND breached = 0 AND due_at >= ?"
        " THEN due_at END) FROM view_sla_targets WHERE started_at >= ? AND started_at < ?",
        [timestamp(now), timestamp(start), timestamp(end)],
    )
    value: str | None = rows[0][0]
    return value


def percentile(values: Sequence[float], q: float, unit: float = 1) -> float | None:
    """The q-quantile of values, interpolated like `percentile_cont`, divided by `unit`."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    value = ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
    return round(value / unit, 2)


class Tally:
    def __init__(self) -> None:
        self.counts = [0, 0, 0]  # by outcome code
        # Lists while counting, arrays once kept (projections/report_days.py).
        self.calendar_s: MutableSequence[int] = []
        self.business_s: MutableSequence[int] = []

    def summary(self, metric: str) -> dict[str, Any]:
        achieved, breached, active = self.counts
        decided = achieved + breached
        return {
            "metric": metric,
            "achieved": achieved,
            "breached": breached,
            "active": active,
            "achievement_pct": None if not decided else round(100 * achieved / decided, 1),
            "median_calendar_minutes": percentile(self.calendar_s, 0.5, 60),
            "p90_calendar_minutes": percentile(self.calendar_s, 0.9, 60),
            "median_business_minutes": percentile(self.business_s, 0.5, 60),
            "p90_business_minutes": percentile(self.business_s, 0.9, 60),
        }


Tallies = dict[tuple[str | None, str], Tally]  # by (group, metric)


def tally_rows(rows: Iterable[tuple[Any, ...]]) -> Tallies:
    """Tallies per group and metric from rows (group, metric, outcome code, calendar s,
    business s; the times only when fulfilled)."""
    tallies: dict[tuple[Any, str], Tally] = defaultdict(Tally)
    for group, metric, outcome, calendar_s, business_s in rows:
        t = tallies[(group, metric)]
        t.counts[outcome] += 1
        if calendar_s is not None:
            t.calendar_s.append(calendar_s)
            if business_s is not None:
                t.business_s.append(business_s)
    return {(None if g is None else str(g), m): t for (g, m), t in tallies.items()}


def merge(into: Tallies, tallies: Tallies) -> None:
    """Adds tallies into `into`, a defaultdict(Tally); leaves `tallies` as they were."""
    for key, t in tallies.items():
        total = into[key]
        for outcome, n in enumerate(t.counts):
            total.counts[outcome] += n
        total.calendar_s.extend(t.calendar_s)
        total.business_s.extend(t.business_s)


def total(parts: Iterable[Tallies]) -> Tallies:
    """The sum of several tallies (left as they were)."""
    summed: Tallies = defaultdict(Tally)
    for tallies in parts:
        merge(summed, tallies)
    return summed
