"""Group commit: concurrent commands' events share one event-store transaction.

A durable commit (an fsync) costs far more than writing a few rows, and SQLite takes one
writer at a time, so one transaction per command caps a busy server at a few thousand commands
a second however many threads it runs. Here the first thread to arrive writes; threads that
arrive meanwhile queue, and the next writer saves the whole queue in one transaction: one
fsync for many commands. Each caller still returns only after its own events are durable.

A batch that fails (a version conflict, a refused write) is saved again member by member, so
each caller gets its own outcome: only a conflicting command sees IntegrityError (and re-runs).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.application import ProcessingEvent
from eventsourcing.persistence import Recording

Record = Callable[[ProcessingEvent[Any]], list[Recording[Any]]]
MAX_BATCH = 256  # commands per transaction; a bound on one writer's turn


@dataclass(frozen=True)
class CommitStats:
    transactions: int  # batches written (a fallback's member-by-member saves count one each)
    commands: int  # members saved in them
    largest: int  # most members in one transaction


@dataclass
class _Pending:
    work: ProcessingEvent[Any]
    turn: threading.Event = field(default_factory=threading.Event)
    finished: bool = False
    recordings: list[Recording[Any]] = field(default_factory=list)
    error: BaseException | None = None

    def outcome(self) -> list[Recording[Any]]:
        if self.error is not None:
            raise self.error
        return self.recordings


class GroupCommitter:
    def __init__(self, record: Record) -> None:
        self._record = record
        self._lock = threading.Lock()
        self._queue: list[_Pending] = []
        self._writing = False
        self._writer: int | None = None  # the thread writing now
        self._transactions = 0
        self._commands = 0
        self._largest = 0

    def stats(self) -> CommitStats:
        with self._lock:
            return CommitStats(self._transactions, self._commands, self._largest)

    def record(self, work: ProcessingEvent[Any]) -> list[Recording[Any]]:
        """Store `work`'s events durably, in a transaction shared with concurrent callers."""
        if self._writer == threading.get_ident():  # a save made while writing: never wait on it
            return self._record(work)
        me = _Pending(work)
        with self._lock:
            self._queue.append(me)
            lead = not self._writing
            self._writing = True
        if not lead:
            me.turn.wait()  # set when my batch is written, or when it is my turn to write
            if me.finished:
                return me.outcome()
        try:
            with self._lock:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            self._writer = threading.get_ident()
            self._write(batch)
        finally:
            self._writer = None
            with self._lock:
                if self._queue:
                    self._queue[0].turn.set()  # the next writer takes everything queued
                else:
                    self._writing = False
        return me.outcome()

    def _write(self, batch: list[_Pending]) -> None:
        try:
            try:
                self._save(batch)
            except Exception as e:
                if len(batch) == 1:
                    batch[0].error = e
                else:  # find whose write failed: each member alone, with its own outcome
                    for member in batch:
                        try:
                            self._save([member])
                        except Exception as alone:  # raised in its own caller
                            member.error = alone
        except BaseException as e:  # an interrupt: nobody in the batch may think it is saved
            for member in batch:
                member.recordings, member.error = [], e
            raise
        finally:
            for member in batch:
                member.finished = True
                member.turn.set()

    def _save(self, members: list[_Pending]) -> None:
        if len(members) == 1:
            combined = members[0].work
        else:
            combined = ProcessingEvent()
            for member in members:  # events already (no `collect_events` Protocol checks)
                combined.events.extend(member.work.events)
        recordings = self._record(combined)
        start = 0
        for member in members:
            end = start + len(member.work.events)
            member.recordings = recordings[start:end]
            start = end
        with self._lock:
            self._transactions += 1
            self._commands += len(members)
            self._largest = max(self._largest, len(members))
