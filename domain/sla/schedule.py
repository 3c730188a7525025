"""Business-hours schedules: weekly hours in an IANA time zone, minus holidays.

All arithmetic is done on UTC instants: each working interval is a local wall-clock span
converted to UTC on its own date, so a day on which the clocks change simply has more or
fewer real minutes in it (a 00:00-24:00 day in Berlin lasts 23 hours in late March).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# However many holidays a schedule has, five years without one working minute is a mistake.
MAX_DAYS_SEARCHED = 366 * 5


class ScheduleError(ValueError):
    """A schedule definition that cannot work (bad zone, bad hours, no working time)."""


def parse_clock(text: str) -> int:
    """'09:30' -> 570 minutes after midnight; '24:00' is allowed as the end of a day."""
    try:
        hours, minutes = text.split(":")
        value = int(hours) * 60 + int(minutes)
    except ValueError:
        raise ScheduleError(f"not a HH:MM time: {text[:20]!r}") from None
    if not (0 <= int(minutes) < 60 and 0 <= value <= 24 * 60):
        raise ScheduleError(f"not a HH:MM time: {text[:20]!r}")
    return value


def format_clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True)
class Schedule:
    """Working intervals per weekday (0 = Monday), in minutes after local midnight."""

    timezone: str
    weekly: tuple[tuple[tuple[int, int], ...], ...]
    holidays: frozenset[date] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ScheduleError(f"unknown time zone {self.timezone[:64]!r}") from None
        if len(self.weekly) != 7:
            raise ScheduleError("a schedule lists hours for exactly seven weekdays")
        for day in self.weekly:
            previous_end = -1
            for start, end in day:
                if not 0 <= start < end <= 24 * 60 or start < previous_end:
                    raise ScheduleError("each day's intervals must be ordered and not overlap")
                previous_end = end
        if not any(self.weekly):
            raise ScheduleError("a schedule needs some working hours")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @classmethod
    def from_definition(cls, definition: Mapping[str, Any]) -> Schedule:
        """From the stored/wire form: {timezone, hours: {mon: [["09:00","17:00"]]}, holidays}."""
        hours = definition.get("hours") or {}
        unknown = set(hours) - set(WEEKDAYS)
        if unknown:
            raise ScheduleError(f"unknown weekdays: {sorted(unknown)}")
        weekly = tuple(
            tuple((parse_clock(s), parse_clock(e)) for s, e in hours.get(day, ()))
            for day in WEEKDAYS
        )
        holidays = frozenset(date.fromisoformat(d) for d in definition.get("holidays") or ())
        return cls(str(definition.get("timezone", "")), weekly, holidays)

    def definition(self) -> dict[str, Any]:
        return {
            "timezone": self.timezone,
            "hours": {
                WEEKDAYS[i]: [[format_clock(s), format_clock(e)] for s, e in day]
                for i, day in enumerate(self.weekly)
                if day
            },
            "holidays": sorted(d.isoformat() for d in self.holidays),
        }

    # Working time

    def intervals_on(self, day: date) -> list[tuple[datetime, datetime]]:
        """The working intervals of one local date, as UTC instants."""
        if day in self.holidays:
            return []
        zone = self.zone
        out = []
        for start, end in self.weekly[day.weekday()]:
            out.append((self._instant(day, start, zone), self._instant(day, end, zone)))
        return [(s, e) for s, e in out if s < e]

    @staticmethod
    def _instant(day: date, minutes: int, zone: ZoneInfo) -> datetime:
        if minutes == 24 * 60:
            day, minutes = day + timedelta(days=1), 0
        local = datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=zone)
        # A wall time skipped by a spring-forward gap maps past the gap, as clocks do.
        return local.astimezone(UTC)

    def _intervals_from(self, start: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Working intervals from `start` on, for as long as the caller reads them."""
        day = start.astimezone(self.zone).date() - timedelta(days=1)
        idle_days = 0
        while idle_days < MAX_DAYS_SEARCHED:
            found = False
            for s, e in self.intervals_on(day):
                if e > start:
                    found = True
                    yield max(s, start), e
            idle_days = 0 if found else idle_days + 1
            day += timedelta(days=1)
        raise ScheduleError("no working time within five years")

    def business_seconds(self, start: datetime, end: datetime) -> float:
        """Working seconds between two instants (zero if end is not after start)."""
        if end <= start:
            return 0.0
        total = 0.0
        for s, e in self._intervals_from(start):
            if s >= end:
                break
            total += (min(e, end) - s).total_seconds()
        return total

    def add_business_seconds(self, start: datetime, seconds: float) -> datetime:
        """The instant at which `seconds` of working time have passed since `start`."""
        remaining = timedelta(seconds=seconds)
        if remaining <= timedelta(0):
            return start
        for s, e in self._intervals_from(start):
            if e - s >= remaining:
                return s + remaining
            remaining -= e - s
        raise AssertionError("unreachable: _intervals_from raises first")
