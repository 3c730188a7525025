"""SLA and agent reports: indexed range queries over the SLA view, no event replay.

Targets are selected by when they started (`started_at` in [from, to), indexed) and classed in
SQL: achieved (fulfilled in time), breached (fulfilled late, or overdue now) or active.
Medians and 90th percentiles are over fulfilled targets, interpolated like `percentile_cont`.

"As configured now" cannot come from stored rows (they hold the versions that applied then):
it re-evaluates the stored timelines of the tickets active in the window (an indexed range
query) against today's policy and schedule versions. Slower, and only on request.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import orjson

from domain.sla.metrics import Metric, evaluate
from projections.report_days import DayTallies
from projections.sla_view import parse_time, terms_resolver, timeline_facts
from projections.sql import Cursor, Database
from projections.tally import (
    ACHIEVED,
    ACTIVE,
    BREACHED,
    GROUP_COLUMNS,
    percentile,
    tally_rows,
    total,
)
from projections.views import timestamp

GROUPS = ("policy", "priority", "assignee")


_CODES = {"achieved": ACHIEVED, "breached": BREACHED, "active": ACTIVE}


class Reports:
    def __init__(self, db: Database, days: DayTallies | None = None) -> None:
        """`days`: the process's kept day tallies; without them every day is counted."""
        self.db = db
        self.days = DayTallies() if days is None else days

    def _targets_configured_now(
        self, start: datetime, end: datetime, now: datetime
    ) -> list[dict[str, Any]]:
        rows = []
        with self.db.transaction(commit=False) as c:
            tickets = c.execute(
                "SELECT ticket_id, assignee_id, timeline FROM view_sla_tickets"
                " WHERE last_at >= ? AND created_at < ? ORDER BY created_at, ticket_id",
                [timestamp(start), timestamp(end)],
            ).fetchall()
            resolve = terms_resolver(c, latest=True)
            for ticket in tickets:
                facts = timeline_facts(orjson.loads(ticket["timeline"]), resolve)
                for r in evaluate(facts, now):
                    if not start <= r.started_at < end:
                        continue
                    achieved = r.fulfilled_at is not None and not r.breached
                    rows.append(
                        {
                            "policy_id": r.policy_id,
                            "policy_name": r.policy_name,
                            "priority": r.priority,
                            "assignee_id": ticket["assignee_id"],
                            "metric": r.metric.value,
                            "started_at": timestamp(r.started_at),
                            "fulfilled_at": r.fulfilled_at,
                            "elapsed_calendar_s": r.elapsed_calendar_minutes * 60,
                            "elapsed_business_s": None
                            if r.elapsed_business_minutes is None
                            else r.elapsed_business_minutes * 60,
                            "outcome": "achieved"
                            if achieved
                            else "breached"
                            if r.breached
                            else "active",
                        }
                    )
        return sorted(rows, key=lambda row: row["started_at"])

    def sla(
        self,
        start: datetime,
        end: datetime,
        group_by: str,
        now: datetime,
        configured_now: bool = False,
    ) -> list[dict[str, Any]]:
        """Per group and metric: achieved, breached, active, achievement %, median and p90."""
        labels: dict[str | None, str | None] = {}
        if configured_now:
            column = GROUP_COLUMNS[group_by]
            targets = self._targets_configured_now(start, end, now)
            rows = [
                (
                    r[column],
                    r["metric"],
                    _CODES[r["outcome"]],
                    None if r["fulfilled_at"] is None else r["elapsed_calendar_s"],
                    None if r["fulfilled_at"] is None else r["elapsed_business_s"],
                )
                for r in targets
            ]
            if group_by == "policy":  # oldest first: the latest name wins
                labels = {r["policy_id"]: r["policy_name"] for r in targets}
            tallies = tally_rows(rows)
        else:
            with self.db.transaction(commit=False) as c:  # names and counts from one state
                days = self.days.by_day(c, start, end, now, group_by)
                tallies = total(t for _, t in days)
                if group_by == "policy":
                    labels = _policy_names(c, {key for key, _ in tallies}, start, end)
        groups: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
        for (key, metric), tally in tallies.items():
            groups[key].append(tally.summary(metric))
        order = [m.value for m in Metric]
        return [
            {
                "group": key,
                "label": labels.get(key, key),
                "metrics": sorted(metrics, key=lambda m: order.index(m["metric"])),
            }
            for key, metrics in sorted(groups.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))
        ]

    def weekly_achievement(
        self, start: datetime, end: datetime, now: datetime
    ) -> tuple[list[str], dict[str, list[float | None]]]:
        """Achievement % per ISO week (Monday's date) per policy, over all metrics."""
        counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        weeks: set[str] = set()
        with self.db.transaction(commit=False) as c:
            for day, tallies in self.days.by_day(c, start, end, now, "policy"):
                week = (day - timedelta(days=day.weekday())).isoformat()
                for (policy_id, _), t in tallies.items():
                    decided = t.counts[ACHIEVED] + t.counts[BREACHED]
                    if not decided or policy_id is None:  # (every target has a policy)
                        continue
                    weeks.add(week)
                    tally = counts[(policy_id, week)]
                    tally[0] += t.counts[ACHIEVED]
                    tally[1] += decided
            policies = {pid for pid, _ in counts}
            names = _policy_names(c, policies, start, end)
        ordered = sorted(weeks)
        series = {
            str(names[pid]): [
                round(100 * counts[(pid, w)][0] / counts[(pid, w)][1], 1)
                if counts[(pid, w)][1]
                else None
                for w in ordered
            ]
            for pid in sorted(policies, key=lambda p: str(names[p]))
        }
        return ordered, series

    def agents(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Per agent: tickets solved, public replies, first-reply median and p90 (calendar
        minutes, for the tickets where they replied first), one-touch rate, reopens."""
        # Tuples, and the two times only for first replies: a year holds tens of thousands of
        # rows (by name with both times each: 15% slower; most of the rest is the query).
        first_reply = "CASE WHEN a.kind = 'reply' AND a.agent_replies = 1 THEN {} END"
        with self.db.transaction(commit=False) as c:
            rows = c.tuples(
                f"SELECT a.agent_id, a.kind, a.agent_replies, {first_reply.format('a.at')},"
                f" {first_reply.format('t.created_at')}"
                " FROM view_sla_agent_activity a"
                " JOIN view_sla_tickets t ON t.ticket_id = a.ticket_id"
                " WHERE a.at >= ? AND a.at < ?",
                [timestamp(start), timestamp(end)],
            )
        per: dict[str, dict[str, Any]] = defaultdict(
            lambda: {"solved": 0, "replies": 0, "one_touch": 0, "reopens": 0, "first": []}
        )
        for agent_id, kind, replies, replied_at, created_at in rows:
            agent = per[agent_id]
            if kind == "reply":
                agent["replies"] += 1
                if replied_at is not None:
                    waited = parse_time(replied_at) - parse_time(created_at)
                    agent["first"].append(waited.total_seconds() / 60)
            elif kind == "solved":
                agent["solved"] += 1
                agent["one_touch"] += replies < 2
            elif kind == "reopened":
                agent["reopens"] += 1
        return [
            {
                "agent_id": agent_id,
                "tickets_solved": a["solved"],
                "public_replies": a["replies"],
                "first_reply_median_minutes": percentile(a["first"], 0.5),
                "first_reply_p90_minutes": percentile(a["first"], 0.9),
                "one_touch_resolution_pct": round(100 * a["one_touch"] / a["solved"], 1)
                if a["solved"]
                else None,
                "reopens": a["reopens"],
            }
            for agent_id, a in sorted(per.items())
        ]


def _policy_names(
    c: Cursor, policy_ids: Iterable[str | None], start: datetime, end: datetime
) -> dict[str | None, str | None]:
    """Each policy's name as of its latest target in the window (policies can be renamed)."""
    names: dict[str | None, str | None] = {}
    for policy_id in policy_ids:
        row = c.tuples(
            "SELECT policy_name FROM view_sla_targets"
            " WHERE started_at >= ? AND started_at < ? AND policy_id = ?"
            " ORDER BY started_at DESC LIMIT 1",
            [timestamp(start), timestamp(end), policy_id],
        )
        names[policy_id] = row[0][0] if row else policy_id
    return names
