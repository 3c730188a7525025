"""Holiday dates from iCalendar text, including the awkward parts of RFC 5545."""

from __future__ import annotations

from datetime import date

import pytest

from domain.sla.ical import CalendarError, holidays_from_ical


def calendar(*events: str) -> str:
    body = "".join(f"BEGIN:VEVENT\r\n{e}END:VEVENT\r\n" for e in events)
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\n{body}END:VCALENDAR\r\n"


def test_all_day_timed_multi_day_and_quoted_parameters() -> None:
    text = calendar(
        "DTSTART;VALUE=DATE:20261225\r\nDTEND;VALUE=DATE:20261227\r\n",  # two days
        'DTSTART;TZID="GMT+01:00":20270101T090000\r\nDTEND;TZID="GMT+01:00":20270101T170000\r\n',
        "DTST\r\n ART:20270406\r\n",  # a folded line
    )
    assert holidays_from_ical(text) == {
        date(2026, 12, 25),
        date(2026, 12, 26),
        date(2027, 1, 1),
        date(2027, 4, 6),
    }


@pytest.mark.parametrize(
    "text",
    [
        "just some text",
        calendar("SUMMARY:no start\r\n"),
        calendar("DTSTART:2026\r\n"),
        calendar("DTSTART:20261332\r\n"),
        calendar("DTSTART;VALUE=DATE:20260101\r\nDTEND;VALUE=DATE:20270101\r\n"),
        calendar("DTSTART;VALUE=DATE:20261225\r\nRRULE:FREQ=YEARLY\r\n"),
    ],
)
def test_what_cannot_be_read_is_refused(text: str) -> None:
    with pytest.raises(CalendarError):
        holidays_from_ical(text)
