"""The SLA view: each ticket's timeline and targets, policy and schedule versions, agent work.

Nothing here is personal data: ids, priorities, statuses and times only (comment bodies are
never read), so the tables need no change when someone is erased and reports keep working.
A ticket's targets are recomputed from its stored timeline whenever one of its events arrives
and written in the runner's transaction, with the view's position.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson

from domain.sla.metrics import (
    AgentReplied,
    Fact,
    Opened,
    PolicySet,
    PolicyTerms,
    PrioritySet,
    RequesterCommented,
    StatusSet,
    TargetResult,
    evaluate,
)
from domain.sla.policy import SlaPolicy, SlaSchedule, policy_terms
from domain.sla.schedule import Schedule
from domain.ticket import Ticket
from domain.user import User, UserKind
from projections.sql import Cursor
from projections.views import timestamp

Resolve = Callable[[list[Any]], PolicyTerms | None]  # a stored policy reference -> its terms


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def timeline_facts(timeline: list[list[Any]], resolve: Resolve) -> list[Fact]:
    """The calculator's facts from a stored timeline ([kind, time, value] entries)."""
    facts: list[Fact] = []
    for kind, at_text, value in timeline:
        at = parse_time(at_text)
        if kind == "opened":
            facts.append(Opened(at, value))
        elif kind == "reply":
            facts.append(AgentReplied(at))
        elif kind == "requester":
            facts.append(RequesterCommented(at))
        elif kind == "status":
            facts.append(StatusSet(at, value))
        elif kind == "priority":
            facts.append(PrioritySet(at, value))
        elif kind == "policy":
            facts.append(PolicySet(at, None if value is None else resolve(value)))
    return facts


def terms_resolver(c: Cursor, latest: bool = False) -> Resolve:
    """Policy terms for stored references: as recorded ("then") or the latest versions ("now")."""

    def resolve(ref: list[Any]) -> PolicyTerms | None:
        policy_id, version, schedule_id, schedule_version = ref
        if latest:
            policy = c.execute(
                "SELECT * FROM view_sla_policies WHERE policy_id = ? ORDER BY version DESC LIMIT 1",
                [policy_id],
            ).fetchone()
        else:
            policy = c.execute(
                "SELECT * FROM view_sla_policies WHERE policy_id = ? AND version = ?",
                [policy_id, version],
            ).fetchone()
        if policy is None:
            return None
        schedule = None
        schedule_id = policy["schedule_id"] if latest else schedule_id
        if schedule_id is not None:
            sql = "SELECT definition FROM view_sla_schedules WHERE schedule_id = ?"
            params: list[Any] = [schedule_id]
            if not latest:
                sql += " AND version = ?"
                params.append(schedule_version)
            row = c.execute(sql + " ORDER BY version DESC LIMIT 1", params).fetchone()
            if row is not None:
                schedule = Schedule.from_definition(orjson.loads(row["definition"]))
        return policy_terms(
            policy_id,
            int(policy["version"]),
            policy["name"],
            orjson.loads(policy["targets"]),
            schedule,
        )

    return resolve


def _seconds(minutes: float | None) -> int | None:
    return None if minutes is None else round(minutes * 60)


class SlaView:
    name = "sla"
    version = 1
    tables: tuple[str, ...] = (
        "view_sla_people",
        "view_sla_schedules",
        "view_sla_policies",
        "view_sla_tickets",
        "view_sla_targets",
        "view_sla_breaches",
        "view_sla_agent_activity",
    )
    schema: tuple[str, ...] = (
        "CREATE TABLE IF NOT EXISTS view_sla_people ("
        " id TEXT PRIMARY KEY, is_agent INTEGER NOT NULL)",
        "CREATE TABLE IF NOT EXISTS view_sla_schedules ("
        " schedule_id TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL,"
        " definition TEXT NOT NULL, PRIMARY KEY (schedule_id, version))",
        "CREATE TABLE IF NOT EXISTS view_sla_policies ("
        " policy_id TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL,"
        " targets TEXT NOT NULL, schedule_id TEXT, PRIMARY KEY (policy_id, version))",
        "CREATE TABLE IF NOT EXISTS view_sla_tickets ("
        " ticket_id TEXT PRIMARY KEY, requester_id TEXT NOT NULL, assignee_id TEXT,"
        " status TEXT NOT NULL, priority TEXT NOT NULL, created_at TEXT NOT NULL,"
        " policy TEXT, timeline TEXT NOT NULL, agent_replies INTEGER NOT NULL,"
        " imported INTEGER NOT NULL DEFAULT 0, last_at TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS view_sla_tickets_span"
        " ON view_sla_tickets (last_at, created_at)",
        "CREATE TABLE IF NOT EXISTS view_sla_targets ("
        " ticket_id TEXT NOT NULL, metric TEXT NOT NULL, instance INTEGER NOT NULL,"
        " policy_id TEXT NOT NULL, policy_version INTEGER NOT NULL, policy_name TEXT NOT NULL,"
        " priority TEXT NOT NULL, assignee_id TEXT, target_minutes INTEGER NOT NULL,"
        " business INTEGER NOT NULL, status TEXT NOT NULL, breached INTEGER NOT NULL,"
        " started_at TEXT NOT NULL, due_at TEXT, fulfilled_at TEXT,"
        " elapsed_calendar_s BIGINT NOT NULL, elapsed_business_s BIGINT,"
        " PRIMARY KEY (ticket_id, metric, instance))",
        "CREATE INDEX IF NOT EXISTS view_sla_targets_started ON view_sla_targets (started_at)",
        "CREATE INDEX IF NOT EXISTS view_sla_targets_due"
        " ON view_sla_targets (fulfilled_at, due_at)",
        "CREATE TABLE IF NOT EXISTS view_sla_breaches ("
        " ticket_id TEXT NOT NULL, metric TEXT NOT NULL, instance INTEGER NOT NULL,"
        " due_at TEXT NOT NULL, recorded_at TEXT NOT NULL,"
        " PRIMARY KEY (ticket_id, metric, instance))",
        "CREATE TABLE IF NOT EXISTS view_sla_agent_activity ("
        " ticket_id TEXT NOT NULL, version INTEGER NOT NULL, agent_id TEXT NOT NULL,"
        " kind TEXT NOT NULL, at TEXT NOT NULL, agent_replies INTEGER NOT NULL,"
        " PRIMARY KEY (ticket_id, version, kind))",
        "CREATE INDEX IF NOT EXISTS view_sla_activity_at ON view_sla_agent_activity (at, agent_id)",
    )

    def apply(self, c: Cursor, event: Any) -> None:
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(self, c, event)

    # People, schedules, policies

    def _user_registered(self, c: Cursor, e: User.Registered) -> None:
        c.execute(
            "INSERT INTO view_sla_people (id, is_agent) VALUES (?, ?)",
            [str(e.originator_id), int(e.kind == UserKind.AGENT.value)],
        )

    def _schedule_defined(self, c: Cursor, e: SlaSchedule.Defined | SlaSchedule.Redefined) -> None:
        c.execute(
            "INSERT INTO view_sla_schedules (schedule_id, version, name, definition)"
            " VALUES (?, ?, ?, ?)",
            [
                str(e.originator_id),
                e.originator_version,
                e.name,
                orjson.dumps(e.definition).decode(),
            ],
        )

    def _policy_defined(self, c: Cursor, e: SlaPolicy.Defined | SlaPolicy.Redefined) -> None:
        c.execute(
            "INSERT INTO view_sla_policies (policy_id, version, name, targets, schedule_id)"
            " VALUES (?, ?, ?, ?, ?)",
            [
                str(e.originator_id),
                e.originator_version,
                e.name,
                orjson.dumps(e.targets).decode(),
                None if e.schedule_id is None else str(e.schedule_id),
            ],
        )

    # Tickets

    def _ticket_opened(self, c: Cursor, e: Ticket.Opened) -> None:
        c.execute(
            "INSERT INTO view_sla_tickets (ticket_id, requester_id, assignee_id, status,"
            " priority, created_at, policy, timeline, agent_replies, imported, last_at)"
            " VALUES (?, ?, NULL, 'new', ?, ?, NULL, ?, 0, 0, ?)",
            [
                str(e.originator_id),
                str(e.requester_id),
                e.priority,
                timestamp(e.occurred_at),
                orjson.dumps([["opened", timestamp(e.occurred_at), e.priority]]).decode(),
                timestamp(e.occurred_at),
            ],
        )
        self._recompute(c, str(e.originator_id))

    def _comment_added(self, c: Cursor, e: Ticket.CommentAdded) -> None:
        ticket = self._ticket(c, e)
        if not e.public:
            return
        author = str(e.author_id)
        if author == ticket["requester_id"]:
            self._append(c, ticket, ["requester", timestamp(e.occurred_at), None])
            return
        person = c.execute("SELECT is_agent FROM view_sla_people WHERE id = ?", [author]).fetchone()
        if person is None or not person["is_agent"]:
            return
        c.execute(
            "UPDATE view_sla_tickets SET agent_replies = agent_replies + 1 WHERE ticket_id = ?",
            [ticket["ticket_id"]],
        )
        self._activity(c, e, author, "reply", ticket["agent_replies"] + 1)
        self._append(c, ticket, ["reply", timestamp(e.occurred_at), None])

    def _assigned(self, c: Cursor, e: Ticket.Assigned) -> None:
        ticket = self._ticket(c, e)
        c.execute(
            "UPDATE view_sla_tickets SET assignee_id = ? WHERE ticket_id = ?",
            [str(e.assignee_id), ticket["ticket_id"]],
        )
        self._recompute(c, ticket["ticket_id"])

    def _status_changed(self, c: Cursor, e: Ticket.StatusChanged) -> None:
        ticket = self._ticket(c, e)
        if ticket["assignee_id"] is not None:
            if e.status == "solved":
                self._activity(c, e, ticket["assignee_id"], "solved", ticket["agent_replies"])
            elif ticket["status"] in ("solved",) and e.status == "open":
                self._activity(c, e, ticket["assignee_id"], "reopened", ticket["agent_replies"])
        c.execute(
            "UPDATE view_sla_tickets SET status = ? WHERE ticket_id = ?",
            [e.status, ticket["ticket_id"]],
        )
        self._append(c, ticket, ["status", timestamp(e.occurred_at), e.status])

    def _priority_changed(self, c: Cursor, e: Ticket.PriorityChanged) -> None:
        ticket = self._ticket(c, e)
        c.execute(
            "UPDATE view_sla_tickets SET priority = ? WHERE ticket_id = ?",
            [e.priority, ticket["ticket_id"]],
        )
        self._append(c, ticket, ["priority", timestamp(e.occurred_at), e.priority])

    def _policy_applied(self, c: Cursor, e: Ticket.SlaPolicyApplied) -> None:
        ticket = self._ticket(c, e)
        ref = (
            None
            if e.policy_id is None
            else [
                str(e.policy_id),
                e.policy_version,
                None if e.schedule_id is None else str(e.schedule_id),
                e.schedule_version,
            ]
        )
        c.execute(
            "UPDATE view_sla_tickets SET policy = ? WHERE ticket_id = ?",
            [orjson.dumps(ref).decode(), ticket["ticket_id"]],
        )
        self._append(c, ticket, ["policy", timestamp(e.occurred_at), ref])

    def _history_imported(self, c: Cursor, e: Ticket.HistoryImported) -> None:
        c.execute(
            "UPDATE view_sla_tickets SET imported = 1 WHERE ticket_id = ?", [str(e.originator_id)]
        )

    def _breached(self, c: Cursor, e: Ticket.SlaBreached) -> None:
        c.execute(
            "INSERT INTO view_sla_breaches (ticket_id, metric, instance, due_at, recorded_at)"
            " VALUES (?, ?, ?, ?, ?)",
            [
                str(e.originator_id),
                e.metric,
                e.instance,
                timestamp(e.due_at),
                timestamp(e.occurred_at),
            ],
        )

    # Helpers

    def _ticket(self, c: Cursor, e: Any) -> Any:
        row = c.execute(
            "SELECT * FROM view_sla_tickets WHERE ticket_id = ?", [str(e.originator_id)]
        ).fetchone()
        if row is None:
            raise LookupError(f"ticket {e.originator_id} has no Opened event before this one")
        return row

    def _activity(self, c: Cursor, e: Any, agent_id: str, kind: str, replies: int) -> None:
        c.execute(
            "INSERT INTO view_sla_agent_activity (ticket_id, version, agent_id, kind, at,"
            " agent_replies) VALUES (?, ?, ?, ?, ?, ?)",
            [
                str(e.originator_id),
                e.originator_version,
                agent_id,
                kind,
                timestamp(e.occurred_at),
                replies,
            ],
        )

    def _append(self, c: Cursor, ticket: Any, entry: list[Any]) -> None:
        timeline = orjson.loads(ticket["timeline"])
        timeline.append(entry)
        c.execute(
            "UPDATE view_sla_tickets SET timeline = ?, last_at = ? WHERE ticket_id = ?",
            [orjson.dumps(timeline).decode(), entry[1], ticket["ticket_id"]],
        )
        self._recompute(c, ticket["ticket_id"])

    def _recompute(self, c: Cursor, ticket_id: str) -> None:
        """Rewrite the ticket's target rows, as they stand at its latest timeline entry."""
        ticket = c.execute(
            "SELECT * FROM view_sla_tickets WHERE ticket_id = ?", [ticket_id]
        ).fetchone()
        timeline = orjson.loads(ticket["timeline"])
        results = evaluate(timeline_facts(timeline, terms_resolver(c)), parse_time(timeline[-1][1]))
        c.execute("DELETE FROM view_sla_targets WHERE ticket_id = ?", [ticket_id])
        if results:
            c.executemany(
                "INSERT INTO view_sla_targets (ticket_id, metric, instance, policy_id,"
                " policy_version, policy_name, priority, assignee_id, target_minutes, business,"
                " status, breached, started_at, due_at, fulfilled_at, elapsed_calendar_s,"
                " elapsed_business_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [self._target_row(ticket, r) for r in results],
            )

    @staticmethod
    def _target_row(ticket: Any, r: TargetResult) -> list[Any]:
        return [
            ticket["ticket_id"],
            r.metric.value,
            r.instance,
            r.policy_id,
            r.policy_version,
            r.policy_name,
            r.priority,
            ticket["assignee_id"],
            r.target_minutes,
            int(r.business),
            r.status.value,
            int(r.breached),
            timestamp(r.started_at),
            None if r.due_at is None else timestamp(r.due_at),
            None if r.fulfilled_at is None else timestamp(r.fulfilled_at),
            _seconds(r.elapsed_calendar_minutes),
            _seconds(r.elapsed_business_minutes),
        ]

    _handlers: dict[type, Any] = {
        User.Registered: _user_registered,
        SlaSchedule.Defined: _schedule_defined,
        SlaSchedule.Redefined: _schedule_defined,
        SlaPolicy.Defined: _policy_defined,
        SlaPolicy.Redefined: _policy_defined,
        Ticket.Opened: _ticket_opened,
        Ticket.CommentAdded: _comment_added,
        Ticket.Assigned: _assigned,
        Ticket.StatusChanged: _status_changed,
        Ticket.PriorityChanged: _priority_changed,
        Ticket.SlaPolicyApplied: _policy_applied,
        Ticket.SlaBreached: _breached,
        Ticket.HistoryImported: _history_imported,
    }
