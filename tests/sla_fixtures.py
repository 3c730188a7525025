"""A runtime with a hand-driven clock, and helpers shared by the SLA tests."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from api.tokens import Role
from tests.conftest import Api, open_api
from ticketlog.config import Settings
from ticketlog.runtime import Runtime

T0 = datetime(2026, 11, 17, 8, 0, tzinfo=UTC)  # a Tuesday, 09:00 in Berlin


class HandClock:
    """The business clock of the help desk, moved only by the test."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, minutes: float) -> datetime:
        self.now += timedelta(minutes=minutes)
        return self.now


@pytest.fixture
def clock() -> HandClock:
    return HandClock()


@pytest.fixture
def clocked_runtime(settings: Settings, clock: HandClock) -> Iterator[Runtime]:
    rt = Runtime.open(settings, clock=clock)
    yield rt
    rt.close()


@pytest.fixture
def sla_api(clocked_runtime: Runtime) -> Iterator[Api]:
    yield from open_api(clocked_runtime)()


OFFICE = {
    "name": "Berlin office",
    "timezone": "Europe/Berlin",
    "hours": {d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")},
    "holidays": [],
}


def standard_policy(api: Api, name: str = "Standard", **overrides: Any) -> dict[str, Any]:
    """First reply 60 min, next reply 30 min (calendar); resolution 8 business hours."""
    schedule = api.post("/v1/sla/schedules", OFFICE, role=Role.ADMIN)
    assert schedule.status_code == 201, schedule.text
    body = {
        "name": name,
        "targets": {
            "normal": {
                "first_reply": {"minutes": 60},
                "next_reply": {"minutes": 30},
                "resolution": {"minutes": 480, "business": True},
            },
            "urgent": {"first_reply": {"minutes": 15}, "resolution": {"minutes": 120}},
        },
        "schedule_id": schedule.json()["id"],
        **overrides,
    }
    r = api.post("/v1/sla/policies", body, role=Role.ADMIN)
    assert r.status_code == 201, r.text
    return dict(r.json())


def change_policy(api: Api, policy: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """PUT the policy back with the given fields changed; the answer must be 200."""
    body = {
        "name": policy["name"],
        "targets": policy["targets"],
        "schedule_id": policy["schedule_id"],
        **changes,
    }
    r = api.put(f"/v1/sla/policies/{policy['id']}", body, role=Role.ADMIN)
    assert r.status_code == 200, r.text
    return dict(r.json())


def targets(api: Api, ticket_id: object, **params: object) -> dict[tuple[str, int], Any]:
    r = api.get(f"/v1/tickets/{ticket_id}/sla", **params)
    assert r.status_code == 200, r.text
    return {(t["metric"], t["instance"]): t for t in r.json()["targets"]}
