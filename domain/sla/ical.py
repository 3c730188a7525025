"""Holiday dates from an iCalendar file (RFC 5545): each VEVENT's DTSTART, to its DTEND.

Only what a holiday calendar needs: all-day and timed events (the start's date counts), multi-
day all-day events (DTEND is exclusive), folded lines. Recurring events are refused rather
than silently read as one day.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

MAX_EVENT_DAYS = 31
_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})")
# NAME;PARAM="may:contain:colons":VALUE -> (NAME;PARAMS, VALUE)
_CONTENT_LINE = re.compile(r'^((?:[^:"]|"[^"]*")*):(.*)$')


class CalendarError(ValueError):
    """The file is not an iCalendar holiday list this parser understands."""


def _unfold(text: str) -> list[str]:
    lines: list[str] = []
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if raw[:1] in (" ", "\t") and lines:
            lines[-1] += raw[1:]
        elif raw.strip():
            lines.append(raw)
    return lines


def _date_of(value: str) -> date:
    found = _DATE.match(value.strip())
    if found is None:
        raise CalendarError("a DTSTART or DTEND is not a date")
    try:
        return date(int(found[1]), int(found[2]), int(found[3]))
    except ValueError:
        raise CalendarError("a DTSTART or DTEND is not a date") from None


def holidays_from_ical(text: str) -> set[date]:
    lines = _unfold(text)
    if not lines or lines[0].strip().upper() != "BEGIN:VCALENDAR":
        raise CalendarError("not an iCalendar file (no BEGIN:VCALENDAR)")
    days: set[date] = set()
    event: dict[str, str] | None = None
    for line in lines:
        parsed = _CONTENT_LINE.match(line)
        name, value = parsed.groups() if parsed else (line, "")
        key = name.split(";", 1)[0].strip().upper()
        if key == "BEGIN" and value.strip().upper() == "VEVENT":
            event = {}
        elif key == "END" and value.strip().upper() == "VEVENT":
            if event is None or "DTSTART" not in event:
                raise CalendarError("a VEVENT has no DTSTART")
            if "RRULE" in event:
                raise CalendarError("recurring events (RRULE) are not supported; list each date")
            start = _date_of(event["DTSTART"])
            end = _date_of(event["DTEND"]) if "DTEND" in event else start + timedelta(days=1)
            span = max((end - start).days, 1)
            if span > MAX_EVENT_DAYS:
                raise CalendarError(f"an event spans more than {MAX_EVENT_DAYS} days")
            days.update(start + timedelta(days=n) for n in range(span))
            event = None
        elif event is not None and key in ("DTSTART", "DTEND", "RRULE"):
            event[key] = value
    return days
