"""The SLA view: each ticket's timeline and targets, policy and schedule versions, agent work.

Nothing here is personal data: ids, priorities, statuses and times only (comment bodies are
never read), so the tables need no change when someone is erased and reports keep working.
A ticket's targets are recomputed from its timeline after each batch of events that touched it
(the same rows as after each event: they depend only on the timeline as it stands) and written
in the runner's transaction, with the view's position.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from domain.ids import id_text
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


def remembered(resolve: Resolve) -> Resolve:
    """Resolve each policy reference once: a recorded policy version never changes."""
    known: dict[tuple[Any, ...], PolicyTerms | None] = {}

    def lookup(ref: list[Any]) -> PolicyTerms | None:
        key = tuple(ref)
        if key not in known:
            known[key] = resolve(ref)
        return known[key]

    return lookup


def _seconds(minutes: float | None) -> int | None:
    return None if minutes is None else round(minutes * 60)


TICKET_COLUMNS = (
    "ticket_id",
    "requester_id",
    "assignee_id",
    "status",
    "priority",
    "created_at",
    "policy",
    "timeline",
    "agent_replies",
    "imported",
    "last_at",
)


@dataclass
class _Batch:
    """The tickets a batch touched, held in memory and written once when it ends.

    Rows are `view_sla_tickets` rows with the timeline parsed. Evaluating a timeline once per
    batch instead of once per event was half of a rebuild's time.
    """

    tickets: dict[str, dict[str, Any]] = field(default_factory=dict)
    opened: set[str] = field(default_factory=set)  # to insert
    changed: set[str] = field(default_factory=set)  # to update
    # Tickets whose targets to recompute, each with the batch's count of such events when its
    # latest one came and that event's version: the days the targets fall on are marked with
    # the latest event (in log order) that rewrote them, so marks do not depend on batch sizes.
    to_evaluate: dict[str, tuple[int, int]] = field(default_factory=dict)
    evaluations: int = 0

    def evaluate(self, ticket_id: str, e: Any) -> None:
        self.evaluations += 1
        self.to_evaluate[ticket_id] = (self.evaluations, e.originator_version)


class SlaView:
    name = "sla"
    version = 3  # 2: the covering report index; 3: the day marks
    tables: tuple[str, ...] = (
        "view_sla_people",
        "view_sla_schedules",
        "view_sla_policies",
        "view_sla_tickets",
        "view_sla_targets",
        "view_sla_breaches",
        "view_sla_agent_activity",
        "view_sla_target_days",
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
        # Everything a report reads (projections/tally.py), so it is answered from the index
        # alone: a window of 100,000 targets then costs no lookup into the table per target.
        "CREATE INDEX IF NOT EXISTS view_sla_targets_report ON view_sla_targets (started_at,"
        " metric, policy_id, policy_name, priority, assignee_id, breached, due_at, fulfilled_at,"
        " elapsed_calendar_s, elapsed_business_s)",
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
        # Each UTC day (of `started_at`) with targets, marked with the latest event that may
        # have rewritten them: reports keep whole days' tallies until the mark changes
        # (projections/report_days.py). Marks come from the log alone, so rebuilt views match.
        "CREATE TABLE IF NOT EXISTS view_sla_target_days ("
        " day TEXT PRIMARY KEY, token TEXT NOT NULL)",
    )

    def apply(self, c: Cursor, event: Any) -> None:
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(self, c, event)

    # People, schedules, policies

    def _user_registered(self, c: Cursor, e: User.Registered) -> None:
        c.execute(
            "INSERT INTO view_sla_people (id, is_agent) VALUES (?, ?)",
            [id_text(e.originator_id), int(e.kind == UserKind.AGENT.value)],
        )

    def _schedule_defined(self, c: Cursor, e: SlaSchedule.Defined | SlaSchedule.Redefined) -> None:
        c.execute(
            "INSERT INTO view_sla_schedules (schedule_id, version, name, definition)"
            " VALUES (?, ?, ?, ?)",
            [
                id_text(e.originator_id),
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
                id_text(e.originator_id),
                e.originator_version,
                e.name,
                orjson.dumps(e.targets).decode(),
                None if e.schedule_id is None else str(e.schedule_id),
            ],
        )

    # Tickets

    def _ticket_opened(self, c: Cursor, e: Ticket.Opened) -> None:
        at = timestamp(e.occurred_at)
        ticket_id = id_text(e.originator_id)
        batch = self._batch(c)
        batch.tickets[ticket_id] = {
            "ticket_id": ticket_id,
            "requester_id": id_text(e.requester_id),
            "assignee_id": None,
            "status": "new",
            "priority": e.priority,
            "created_at": at,
            "policy": None,
            "timeline": [["opened", at, e.priority]],
            "agent_replies": 0,
            "imported": 0,
            "last_at": at,
        }
        batch.opened.add(ticket_id)
        batch.evaluate(ticket_id, e)

    def _comment_added(self, c: Cursor, e: Ticket.CommentAdded) -> None:
        ticket = self._ticket(c, e)
        if not e.public:
            return
        author = id_text(e.author_id)
        if author == ticket["requester_id"]:
            # The commonest case, `_append` written out (its calls were a fifth of this view).
            at, ticket_id, batch = timestamp(e.occurred_at), ticket["ticket_id"], self._batch(c)
            ticket["timeline"].append(["requester", at, None])
            ticket["last_at"] = at
            batch.changed.add(ticket_id)
            batch.evaluations += 1  # batch.evaluate, written out too
            batch.to_evaluate[ticket_id] = (batch.evaluations, e.originator_version)
            return
        person = c.execute("SELECT is_agent FROM view_sla_people WHERE id = ?", [author]).fetchone()
        if person is None or not person["is_agent"]:
            return
        self._change(c, ticket, agent_replies=ticket["agent_replies"] + 1)
        self._activity(c, e, author, "reply", ticket["agent_replies"])
        self._append(c, e, ticket, ["reply", timestamp(e.occurred_at), None])

    def _assigned(self, c: Cursor, e: Ticket.Assigned) -> None:
        ticket = self._ticket(c, e)
        self._change(c, ticket, assignee_id=id_text(e.assignee_id))
        self._batch(c).evaluate(ticket["ticket_id"], e)

    def _status_changed(self, c: Cursor, e: Ticket.StatusChanged) -> None:
        ticket = self._ticket(c, e)
        if ticket["assignee_id"] is not None:
            if e.status == "solved":
                self._activity(c, e, ticket["assignee_id"], "solved", ticket["agent_replies"])
            elif ticket["status"] in ("solved",) and e.status == "open":
                self._activity(c, e, ticket["assignee_id"], "reopened", ticket["agent_replies"])
        self._change(c, ticket, status=e.status)
        self._append(c, e, ticket, ["status", timestamp(e.occurred_at), e.status])

    def _priority_changed(self, c: Cursor, e: Ticket.PriorityChanged) -> None:
        ticket = self._ticket(c, e)
        self._change(c, ticket, priority=e.priority)
        self._append(c, e, ticket, ["priority", timestamp(e.occurred_at), e.priority])

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
        self._change(c, ticket, policy=orjson.dumps(ref).decode())
        self._append(c, e, ticket, ["policy", timestamp(e.occurred_at), ref])

    def _history_imported(self, c: Cursor, e: Ticket.HistoryImported) -> None:
        ticket_id = id_text(e.originator_id)
        ticket = self._batch(c).tickets.get(ticket_id)
        if ticket is not None:
            self._change(c, ticket, imported=1)
            return
        c.execute("UPDATE view_sla_tickets SET imported = 1 WHERE ticket_id = ?", [ticket_id])

    def _breached(self, c: Cursor, e: Ticket.SlaBreached) -> None:
        c.execute(
            "INSERT INTO view_sla_breaches (ticket_id, metric, instance, due_at, recorded_at)"
            " VALUES (?, ?, ?, ?, ?)",
            [
                id_text(e.originator_id),
                e.metric,
                e.instance,
                timestamp(e.due_at),
                timestamp(e.occurred_at),
            ],
        )

    # The batch

    def flush(self, c: Cursor) -> None:
        """Write the batch's tickets, then their targets as they stand at each ticket's latest
        timeline entry."""
        batch: _Batch | None = c.deferred.pop(self.name, None)
        if batch is None:
            return
        rows = batch.tickets
        if batch.opened:
            c.executemany(
                f"INSERT INTO view_sla_tickets ({', '.join(TICKET_COLUMNS)})"
                f" VALUES ({', '.join('?' for _ in TICKET_COLUMNS)})",
                [self._ticket_values(rows[t]) for t in sorted(batch.opened)],
            )
        if changed := sorted(batch.changed - batch.opened):
            c.executemany(
                f"UPDATE view_sla_tickets SET {', '.join(f'{n} = ?' for n in TICKET_COLUMNS[1:])}"
                " WHERE ticket_id = ?",
                [[*self._ticket_values(rows[t])[1:], t] for t in changed],
            )
        evaluated = sorted(batch.to_evaluate)
        if earlier := [[t] for t in evaluated if t not in batch.opened]:
            c.executemany("DELETE FROM view_sla_targets WHERE ticket_id = ?", earlier)
        resolve = remembered(terms_resolver(c))
        targets: list[list[Any]] = []
        marks: dict[str, tuple[int, int, str]] = {}  # day -> (order, version, ticket)
        for ticket_id in evaluated:
            ticket = rows[ticket_id]
            timeline = ticket["timeline"]
            results = evaluate(timeline_facts(timeline, resolve), parse_time(timeline[-1][1]))
            targets += [self._target_row(ticket, r) for r in results]
            # A target starts at a timeline entry, and the timeline only grows, so the days of
            # its entries hold both the targets deleted above and those written below.
            mark = (*batch.to_evaluate[ticket_id], ticket_id)
            for day in {entry[1][:10] for entry in timeline}:
                if day not in marks or marks[day] < mark:
                    marks[day] = mark
        if marks:
            c.executemany(
                "INSERT INTO view_sla_target_days (day, token) VALUES (?, ?)"
                " ON CONFLICT (day) DO UPDATE SET token = excluded.token",
                [[day, f"{t}@{version}"] for day, (_, version, t) in sorted(marks.items())],
            )
        if targets:
            c.executemany(
                "INSERT INTO view_sla_targets (ticket_id, metric, instance, policy_id,"
                " policy_version, policy_name, priority, assignee_id, target_minutes, business,"
                " status, breached, started_at, due_at, fulfilled_at, elapsed_calendar_s,"
                " elapsed_business_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                targets,
            )

    def _batch(self, c: Cursor) -> _Batch:
        batch: _Batch | None = c.deferred.get(self.name)
        if batch is None:
            batch = c.deferred[self.name] = _Batch()
        return batch

    def _ticket(self, c: Cursor, e: Any) -> dict[str, Any]:
        ticket_id = id_text(e.originator_id)
        batch = self._batch(c)
        ticket = batch.tickets.get(ticket_id)
        if ticket is None:
            row = c.execute(
                "SELECT * FROM view_sla_tickets WHERE ticket_id = ?", [ticket_id]
            ).fetchone()
            if row is None:
                raise LookupError(f"ticket {ticket_id} has no Opened event before this one")
            ticket = batch.tickets[ticket_id] = dict(row)
            ticket["timeline"] = orjson.loads(ticket["timeline"])
        return ticket

    @staticmethod
    def _ticket_values(ticket: dict[str, Any]) -> list[Any]:
        values = [ticket[n] for n in TICKET_COLUMNS]
        values[TICKET_COLUMNS.index("timeline")] = orjson.dumps(ticket["timeline"]).decode()
        return values

    def _change(self, c: Cursor, ticket: dict[str, Any], **columns: Any) -> None:
        ticket.update(columns)
        self._batch(c).changed.add(ticket["ticket_id"])

    def _activity(self, c: Cursor, e: Any, agent_id: str, kind: str, replies: int) -> None:
        c.execute(
            "INSERT INTO view_sla_agent_activity (ticket_id, version, agent_id, kind, at,"
            " agent_replies) VALUES (?, ?, ?, ?, ?, ?)",
            [
                id_text(e.originator_id),
                e.originator_version,
                agent_id,
                kind,
                timestamp(e.occurred_at),
                replies,
            ],
        )

    def _append(self, c: Cursor, e: Any, ticket: dict[str, Any], entry: list[Any]) -> None:
        ticket["timeline"].append(entry)
        self._change(c, ticket, last_at=entry[1])
        self._batch(c).evaluate(ticket["ticket_id"], e)

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
