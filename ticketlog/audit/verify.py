"""`ticketlog audit verify`: re-hash every stored event, rebuild the tree, check the signatures.

Trust comes from the signed checkpoints, not from the leaves table: the root is rebuilt from
the events themselves. The leaves table (written with each event) only says *where* a
break is and what kind: an event changed, gone, moved, slipped in, or cut off the end.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any
from uuid import UUID

import orjson

from crypto.checkpoint import Checkpoint, NoteError, NoteVerifier, open_checkpoint
from crypto.merkle import RootBuilder
from ticketlog.audit.store import AuditLog, Leaf, Progress, StoredRow

MODIFIED, MISSING, REORDERED, INSERTED, TRUNCATED = (
    "modified",
    "missing",
    "reordered",
    "inserted",
    "truncated",
)
SIGNATURE, UNSIGNED = "signature", "unsigned"
LATEST = "latest in store"
MAX_PROBLEMS = 50

ERASED_TOPIC = "domain.user:User.SubjectErased"
OPENED_TOPIC = "domain.ticket:Ticket.Opened"
COMMENT_TOPIC = "domain.ticket:Ticket.CommentAdded"


@dataclass
class Problem:
    kind: str
    message: str
    position: int | None = None
    notification_id: int | None = None


@dataclass
class Anchor:
    """A signed tree head the rebuilt tree must match at its size."""

    label: str
    checkpoint: Checkpoint
    matched: bool | None = None
    note: str = ""


@dataclass
class Report:
    tree_size: int = 0
    events: int = 0
    root: str = ""
    erased_events: int = 0
    erased_subjects: int = 0
    unsigned_events: int = 0
    anchors: list[Anchor] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, problem: Problem) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "tree_size": self.tree_size,
            "events": self.events,
            "root": self.root,
            "erased_events": self.erased_events,
            "erased_subjects": self.erased_subjects,
            "unsigned_events": self.unsigned_events,
            "checkpoints": [
                {
                    "label": a.label,
                    "size": a.checkpoint.size,
                    "root": base64.b64encode(a.checkpoint.root).decode(),
                    "matched": a.matched,
                }
                for a in self.anchors
            ],
            "first_problem": asdict(self.problems[0]) if self.problems else None,
            "problems": [asdict(p) for p in self.problems],
        }


def parse_anchor(label: str, note: str, verifier: NoteVerifier, origin: str) -> Anchor:
    return Anchor(label, open_checkpoint(note, verifier, origin), note=note)


class ErasedSubjects:
    """Which events belong to erased people, read from the log alone (no key vault)."""

    def __init__(self, log: AuditLog) -> None:
        self.users = {row.originator_id for row in log.events_of_topic(ERASED_TOPIC)}
        self.tickets: set[UUID] = set()

    def covers(self, row: StoredRow) -> bool:
        if row.originator_id in self.users or row.originator_id in self.tickets:
            return True
        if row.topic == OPENED_TOPIC and _uuid_field(row, "requester_id") in self.users:
            self.tickets.add(row.originator_id)
            return True
        return row.topic == COMMENT_TOPIC and _uuid_field(row, "author_id") in self.users


def _uuid_field(row: StoredRow, name: str) -> UUID | None:
    try:
        value = orjson.loads(row.state).get(name)
        return UUID(value["_data_"]) if isinstance(value, dict) else None
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
        return None


def _merged(
    events: Iterator[StoredRow], leaves: Iterator[Leaf]
) -> Iterator[tuple[StoredRow | None, Leaf | None]]:
    """Pairs events and leaves by notification id; a side is None where the other has no match."""
    event, leaf = next(events, None), next(leaves, None)
    while event is not None or leaf is not None:
        if leaf is None or (event is not None and event.notification_id < leaf.notification_id):
            yield event, None
            event = next(events, None)
        elif event is None or leaf.notification_id < event.notification_id:
            yield None, leaf
            leaf = next(leaves, None)
        else:
            yield event, leaf
            event, leaf = next(events, None), next(leaves, None)


def verify_log(
    log: AuditLog,
    verifier: NoteVerifier,
    origin: str,
    extra_anchors: list[Anchor],
    progress: Progress | None = None,
) -> Report:
    report = Report()
    latest = log.latest_checkpoint()
    anchors = list(extra_anchors)
    if latest is not None:
        try:
            anchors.insert(0, parse_anchor(LATEST, latest.note, verifier, origin))
        except NoteError as e:
            report.add(Problem(SIGNATURE, f"the latest stored checkpoint: {e}"))
    if not anchors and not report.problems:
        report.add(Problem(UNSIGNED, "no signed checkpoint: run `ticketlog audit checkpoint`"))
    report.anchors = anchors

    # Freeze the view: rows committed after this point are simply not part of this check.
    stop = max(log.max_event_id(), _max_leaf_id(log))
    total = log.event_count()
    erased = ErasedSubjects(log)
    builder = RootBuilder()
    pending = sorted(anchors, key=lambda a: a.checkpoint.size)
    expected_index = 0
    missing_run: Problem | None = None
    first_modified: tuple[StoredRow, int] | None = None

    def check_anchors() -> None:
        while pending and pending[0].checkpoint.size == builder.size:
            anchor = pending.pop(0)
            anchor.matched = builder.root() == anchor.checkpoint.root
            if not anchor.matched:
                report.add(
                    Problem(
                        MODIFIED,
                        f"the first {anchor.checkpoint.size} events do not match the "
                        f"checkpoint ({anchor.label}) signed for them",
                    )
                )

    check_anchors()
    leaves = (leaf for leaf in log.leaves() if leaf.notification_id <= stop)
    for event, leaf in _merged(log.events(stop=stop), leaves):
        if leaf is not None:
            if leaf.index != expected_index:
                report.add(
                    Problem(MISSING, "a leaf is missing", expected_index, leaf.notification_id)
                )
            expected_index = leaf.index + 1
        if event is None:
            assert leaf is not None
            problem = Problem(MISSING, "the event is gone", leaf.index, leaf.notification_id)
            missing_run = missing_run or problem
            continue
        if missing_run is not None:
            report.add(missing_run)  # events follow: a hole, not a cut-off end
            missing_run = None
        digest = event.leaf_hash()
        position = builder.size
        if leaf is None:
            report.add(
                Problem(
                    INSERTED,
                    "an event with no leaf: it was not written by the service",
                    position,
                    event.notification_id,
                )
            )
        elif digest != leaf.digest:
            if first_modified is None and len(report.problems) < MAX_PROBLEMS:
                first_modified = (event, len(report.problems))
            report.add(
                Problem(MODIFIED, "the stored event changed", leaf.index, event.notification_id)
            )
        report.erased_events += erased.covers(event)
        builder.add(digest)
        report.events += 1
        check_anchors()
        if progress is not None and (report.events % 1000 == 0 or report.events == total):
            progress(report.events, max(total, report.events))
    if missing_run is not None:
        missing_run.kind = TRUNCATED
        missing_run.message = "the log ends early: this event and every later one are gone"
        report.add(missing_run)
    for anchor in pending:
        if anchor.checkpoint.size > builder.size:
            anchor.matched = False
            report.add(
                Problem(
                    TRUNCATED,
                    f"the checkpoint ({anchor.label}) signed {anchor.checkpoint.size} events "
                    f"but the log holds {builder.size}",
                    builder.size,
                )
            )
    if first_modified is not None:
        _diagnose_swap(log, report, *first_modified)
    report.problems.sort(key=lambda p: (p.position is None, p.position or 0))
    report.tree_size = builder.size
    report.root = base64.b64encode(builder.root()).decode()
    report.erased_subjects = len(erased.users)
    signed = max((a.checkpoint.size for a in anchors if a.matched), default=0)
    report.unsigned_events = max(builder.size - signed, 0)
    return report


def _max_leaf_id(log: AuditLog) -> int:
    size = log.tree_size()
    last = next(log.leaves(size - 1, size), None) if size else None
    return last.notification_id if last else 0


def _diagnose_swap(log: AuditLog, report: Report, event: StoredRow, problem_at: int) -> None:
    """A changed event whose content is another position's original was moved, not edited."""
    for leaf in log.leaves():
        if leaf.notification_id != event.notification_id and (
            event.leaf_hash(leaf.notification_id) == leaf.digest
        ):
            problem = report.problems[problem_at]
            problem.kind = REORDERED
            problem.message = (
                f"the event recorded at notification {leaf.notification_id} "
                f"(position {leaf.index}) now sits at notification {event.notification_id}"
            )
            return
