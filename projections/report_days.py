"""Whole days of the SLA report, tallied once and kept until the SLA view rewrites them.

A report over a year reads some 200,000 targets, and most of its cost is SQLite handing them
to Python one by one. Yet a past day's targets rarely change: the SLA view marks every UTC day
with the latest event that may have rewritten its targets (`view_sla_target_days`), so a
report counts again only the days whose mark changed, the days where the clock has since
turned an active target into a breached one, and the part-days at the window's edges; and
everything once the view is built again (`build_of`). The marks and the targets are read in
one transaction, so a report never mixes two states.

The kept tallies are counts and elapsed seconds under ids: nothing personal, in memory only.
"""

from __future__ import annotations

import threading
from array import array
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from projections.sla_view import SlaView
from projections.sql import Cursor
from projections.store import build_of
from projections.tally import Tallies, Tally, count_targets, first_due
from projections.views import timestamp


@dataclass(frozen=True)
class _Day:
    token: str
    counted_at: str  # the report's `now` when counted
    # When the earliest target still active then falls due: from then on some outcome differs.
    flips_at: str | None
    tallies: Tallies

    @property
    def times(self) -> int:
        return sum(len(t.calendar_s) + len(t.business_s) for t in self.tallies.values())


class DayTallies:
    """A process's kept day tallies, per grouping, the least recently used dropped first once
    they hold more than `max_times` elapsed times (8 bytes each: 32 MB by default, some
    three years of 100,000 tickets a year in all three groupings)."""

    def __init__(self, max_times: int = 4_000_000) -> None:
        self.max_times = max_times
        self._times = 0
        self._days: OrderedDict[tuple[str, date], _Day] = OrderedDict()
        self._build: str | None = None  # of the SLA view the kept days were counted from
        self._lock = threading.Lock()
        self.counted = 0  # days counted from the view (for tests and the benchmark)
        self.reused = 0  # days answered from memory

    def by_day(
        self,
        c: Cursor,
        start: datetime,
        end: datetime,
        now: datetime,
        grouping: str,
    ) -> Iterator[tuple[date, Tallies]]:
        """Per UTC day of [start, end) with targets, their tallies (to read, not to change):
        whole days as kept (or counted and kept), the part-days at the edges counted afresh."""

        def count(start: datetime, end: datetime) -> Tallies:
            return count_targets(c, start, end, now, grouping)

        first, last = _whole_days(start, end)
        if first > last:  # inside one day
            yield start.astimezone(UTC).date(), count(start, end)
            return
        if start < _midnight(first):
            yield start.astimezone(UTC).date(), count(start, _midnight(first))
        self._forget_unless(build_of(c, SlaView.name))
        tokens = dict(
            c.tuples(
                "SELECT day, token FROM view_sla_target_days WHERE day >= ? AND day < ?",
                [first.isoformat(), last.isoformat()],
            )
        )
        at = timestamp(now)
        for day in _days(first, last):
            token = tokens.get(day.isoformat())
            if token is None:  # no target ever started that day
                continue
            kept = self._get((grouping, day))
            if kept is None or not _still_true(kept, token, at):
                span = _midnight(day), _midnight(day + timedelta(days=1))
                kept = _Day(token, at, first_due(c, *span, now), _compact(count(*span)))
                self._put((grouping, day), kept)
                self.counted += 1
            else:
                self.reused += 1
            yield day, kept.tallies
        if _midnight(last) < end:
            yield last, count(_midnight(last), end)

    def _forget_unless(self, build: str | None) -> None:
        """Forget every kept day once the SLA view has been built again: a mark names the
        latest event that rewrote a day, but a build that applies partitions in another order
        can end on the same event with more of the others in."""
        with self._lock:
            if build != self._build:
                self._days.clear()
                self._times = 0
                self._build = build

    def _get(self, key: tuple[str, date]) -> _Day | None:
        with self._lock:
            kept = self._days.get(key)
            if kept is not None:
                self._days.move_to_end(key)
            return kept

    def _put(self, key: tuple[str, date], day: _Day) -> None:
        with self._lock:
            replaced = self._days.pop(key, None)
            self._times += day.times - (0 if replaced is None else replaced.times)
            self._days[key] = day
            while self._times > self.max_times and len(self._days) > 1:
                self._times -= self._days.popitem(last=False)[1].times


def _compact(tallies: Tallies) -> Tallies:
    """The tallies with their times in arrays: a quarter of the memory of lists of ints."""
    kept: Tallies = {}
    for key, t in tallies.items():
        kept[key] = compact = Tally()
        compact.counts = t.counts
        compact.calendar_s = array("q", t.calendar_s)
        compact.business_s = array("q", t.business_s)
    return kept


def _still_true(kept: _Day, token: str, at: str) -> bool:
    """Whether a kept day still holds at `at`: the view has not rewritten the day, and no
    active target has fallen due between when it was counted and `at`."""
    if kept.token != token or at < kept.counted_at:
        return False
    return kept.flips_at is None or at <= kept.flips_at


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def _whole_days(start: datetime, end: datetime) -> tuple[date, date]:
    """The first whole UTC day in [start, end) and the day after the last one."""
    first = start.astimezone(UTC).date()
    if _midnight(first) < start:
        first += timedelta(days=1)
    return first, end.astimezone(UTC).date()


def _days(first: date, last: date) -> Iterator[date]:
    day = first
    while day < last:
        yield day
        day += timedelta(days=1)
