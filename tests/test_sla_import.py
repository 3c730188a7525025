"""POST /v1/import/tickets: migrated history keeps its times, is marked, and SLA maths holds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from api.tokens import Role
from tests.conftest import Api, postgres_hits, raw_hits
from tests.sla_fixtures import HandClock, standard_policy, targets


def history(api: Api, ticket_id: object) -> list[dict[str, Any]]:
    r = api.get(f"/v1/tickets/{ticket_id}/history", role=Role.AUDITOR)
    assert r.status_code == 200, r.text
    return list(r.json()["events"])


def test_an_imported_history_keeps_its_times_and_is_measured(
    sla_api: Api, clock: HandClock
) -> None:
    api = sla_api
    standard_policy(api)
    customer, agent = api.user(), api.user(kind="agent")
    clock.advance(60 * 24 * 30)  # the import happens a month after the history
    body = {
        "requester_id": customer["id"],
        "subject": "Migrated subject Quokka",
        "body": "Migrated body Wombat",
        "created_at": "2026-11-17T08:00:00Z",
        "source": "zendesk",
        "events": [
            {
                "type": "comment",
                "occurred_at": "2026-11-17T08:45:00Z",
                "author_id": agent["id"],
                "body": "Looking",
            },
            {"type": "assign", "occurred_at": "2026-11-17T08:46:00Z", "assignee_id": agent["id"]},
            {"type": "status", "occurred_at": "2026-11-17T09:00:00Z", "status": "pending"},
            {
                "type": "comment",
                "occurred_at": "2026-11-17T11:00:00Z",
                "author_id": customer["id"],
                "body": "Here you go",
            },
            {"type": "tags", "occurred_at": "2026-11-17T11:05:00Z", "tags": ["migrated"]},
            {"type": "status", "occurred_at": "2026-11-17T12:00:00Z", "status": "solved"},
        ],
    }
    real_before = datetime.now(UTC)
    r = api.post("/v1/import/tickets", body, role=Role.ADMIN)
    assert r.status_code == 201, r.text
    ticket = r.json()
    assert (ticket["status"], ticket["tags"]) == ("solved", ["migrated"])
    assert ticket["created_at"] == "2026-11-17T08:00:00Z"

    events = history(api, ticket["id"])
    assert [e["type"] for e in events] == [
        "Opened",
        "SlaPolicyApplied",
        "CommentAdded",
        "Assigned",
        "StatusChanged",  # assigning a new ticket opens it
        "StatusChanged",
        "CommentAdded",
        "StatusChanged",  # the requester's comment reopened it
        "TagsChanged",
        "StatusChanged",
        "HistoryImported",
    ]
    assert all(e["imported"] for e in events[:-1])
    assert not events[-1]["imported"]
    assert events[2]["occurred_at"] == "2026-11-17T08:45:00Z"
    # The store records the real time of the import, whatever the events say.
    assert all(datetime.fromisoformat(e["recorded_at"]) >= real_before for e in events)
    assert events[-1]["data"] == {"through_version": 10, "source": "zendesk"}

    sla = targets(api, ticket["id"])
    assert sla[("first_reply", 1)]["elapsed_calendar_minutes"] == 45
    assert sla[("first_reply", 1)]["breached"] is False
    resolution = sla[("resolution", 1)]  # 08:00-09:00 and 11:00-12:00 running
    assert (resolution["status"], resolution["elapsed_business_minutes"]) == ("fulfilled", 120)

    settings = api.runtime.settings
    needles = ["Quokka", "Wombat", "Here you go"]
    assert raw_hits(settings.data_dir, needles) == []
    assert postgres_hits(settings, needles) == []


def test_imports_that_break_rules_or_time_are_refused_whole(sla_api: Api) -> None:
    api = sla_api
    customer = api.user()
    base = {
        "requester_id": customer["id"],
        "subject": "S",
        "body": "B",
        "created_at": "2026-11-17T07:00:00Z",
    }
    solved_unassigned = {
        **base,
        "events": [{"type": "status", "occurred_at": "2026-11-17T07:10:00Z", "status": "solved"}],
    }
    r = api.post("/v1/import/tickets", solved_unassigned, role=Role.ADMIN)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "needs_assignee")
    assert r.json()["error"]["message"].startswith("event 0:")
    listed = api.get("/v1/tickets", requester_id=customer["id"]).json()["items"]
    assert listed == []  # nothing of the refused import was kept

    backwards = {
        **base,
        "events": [{"type": "status", "occurred_at": "2026-11-17T06:00:00Z", "status": "open"}],
    }
    assert api.post("/v1/import/tickets", backwards, role=Role.ADMIN).status_code == 422
    future = {**base, "created_at": "2027-01-01T00:00:00Z"}
    r = api.post("/v1/import/tickets", future, role=Role.ADMIN)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_import")
    naive = {**base, "created_at": "2026-11-17T07:00:00"}
    assert api.post("/v1/import/tickets", naive, role=Role.ADMIN).status_code == 422
    unknown = {**base, "events": [{"type": "launch", "occurred_at": "2026-11-17T07:10:00Z"}]}
    assert api.post("/v1/import/tickets", unknown, role=Role.ADMIN).status_code == 422
    assert api.post("/v1/import/tickets", base, role=Role.SERVICE).status_code == 403
