"""SLA schedules and policies over HTTP: which policy version each ticket records, and why."""

from __future__ import annotations

from typing import Any

from api.tokens import Role
from tests.conftest import Api

OFFICE = {
    "name": "Berlin office",
    "timezone": "Europe/Berlin",
    "hours": {d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")},
    "holidays": ["2026-12-25"],
}


def policy_body(name: str, **overrides: Any) -> dict[str, Any]:
    return {
        "name": name,
        "targets": {
            "normal": {"first_reply": {"minutes": 60}, "resolution": {"minutes": 480}},
            "urgent": {"first_reply": {"minutes": 15}},
        },
        **overrides,
    }


def applied(api: Api, ticket_id: object) -> list[dict[str, Any]]:
    r = api.get(f"/v1/tickets/{ticket_id}/history", role=Role.AUDITOR)
    assert r.status_code == 200, r.text
    return [e["data"] for e in r.json()["events"] if e["type"] == "SlaPolicyApplied"]


def test_first_matching_policy_applies_and_is_re_evaluated_on_priority_and_tags(api: Api) -> None:
    vip = api.post(
        "/v1/sla/policies",
        policy_body("VIP", filter={"match": "any", "priorities": ["urgent"], "tags": ["VIP"]}),
        role=Role.ADMIN,
    )
    assert vip.status_code == 201, vip.text
    assert (vip.json()["position"], vip.json()["version"]) == (1, 1)
    assert vip.json()["filter"] == {
        "match": "any",
        "priorities": ["urgent"],
        "tags": ["vip"],
        "organizations": [],
    }
    default = api.post("/v1/sla/policies", policy_body("Everyone"), role=Role.ADMIN)
    assert default.json()["position"] == 2
    vip_id, default_id = vip.json()["id"], default.json()["id"]

    customer = api.user()
    ticket = api.ticket(customer["id"])
    assert [a["policy_id"] for a in applied(api, ticket["id"])] == [default_id]

    r = api.post(f"/v1/tickets/{ticket['id']}/tags", {"tags": ["vip", "billing"]})
    assert r.status_code == 200, r.text
    assert r.json()["tags"] == ["vip", "billing"]
    assert [a["policy_id"] for a in applied(api, ticket["id"])] == [default_id, vip_id]

    r = api.post(f"/v1/tickets/{ticket['id']}/tags", {"tags": []})
    assert [a["policy_id"] for a in applied(api, ticket["id"])][-1] == default_id
    r = api.post(f"/v1/tickets/{ticket['id']}/priority", {"priority": "urgent"})
    assert r.status_code == 200, r.text
    assert r.json()["priority"] == "urgent"
    assert [a["policy_id"] for a in applied(api, ticket["id"])][-1] == vip_id

    r = api.post("/v1/sla/policies/reorder", {"policy_ids": [default_id, vip_id]}, role=Role.ADMIN)
    assert r.status_code == 200, r.text
    assert [p["name"] for p in r.json()] == ["Everyone", "VIP"]
    urgent = api.ticket(customer["id"], priority="urgent")
    assert [a["policy_id"] for a in applied(api, urgent["id"])] == [default_id]


def test_an_updated_policy_leaves_tickets_on_the_version_they_had(api: Api) -> None:
    created = api.post("/v1/sla/policies", policy_body("Standard"), role=Role.ADMIN).json()
    customer = api.user()
    before = api.ticket(customer["id"])
    r = api.put(
        f"/v1/sla/policies/{created['id']}",
        policy_body("Standard", targets={"normal": {"first_reply": {"minutes": 30}}}),
        role=Role.ADMIN,
    )
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2
    after = api.ticket(customer["id"])
    assert [a["policy_version"] for a in applied(api, before["id"])] == [1]
    assert [a["policy_version"] for a in applied(api, after["id"])] == [2]


def test_no_policy_means_no_sla_event(api: Api) -> None:
    ticket = api.ticket(api.user()["id"])
    assert applied(api, ticket["id"]) == []


def test_schedules_with_holidays_from_an_icalendar_file(api: Api) -> None:
    r = api.post("/v1/sla/schedules", OFFICE, role=Role.ADMIN)
    assert r.status_code == 201, r.text
    schedule = r.json()
    assert schedule["hours"]["mon"] == [["09:00", "17:00"]]
    calendar = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\n"
        "BEGIN:VEVENT\r\nDTSTART;VALUE=DATE:20261226\r\nDTEND;VALUE=DATE:20261228\r\n"
        "SUMMARY:Boxing days\r\nEND:VEVENT\r\n"
        "BEGIN:VEVENT\r\nDTSTART:20270101T000000Z\r\n SUMMARY:folded\r\nEND:VEVENT\r\n"
        "END:VCALENDAR\r\n"
    )
    r = api.client.post(
        f"/v1/sla/schedules/{schedule['id']}/holidays",
        content=calendar.encode(),
        headers={**api.headers(Role.ADMIN), "Content-Type": "text/calendar"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["holidays"] == ["2026-12-25", "2026-12-26", "2026-12-27", "2027-01-01"]
    assert r.json()["version"] == 2

    bad = api.client.post(
        f"/v1/sla/schedules/{schedule['id']}/holidays",
        content=b"BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:2026\nEND:VEVENT\nEND:VCALENDAR\n",
        headers={**api.headers(Role.ADMIN), "Content-Type": "text/calendar"},
    )
    assert (bad.status_code, bad.json()["error"]["code"]) == (422, "invalid_calendar")
    recurring = api.client.post(
        f"/v1/sla/schedules/{schedule['id']}/holidays",
        content=b"BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART;VALUE=DATE:20261225\n"
        b"RRULE:FREQ=YEARLY\nEND:VEVENT\nEND:VCALENDAR\n",
        headers={**api.headers(Role.ADMIN), "Content-Type": "text/calendar"},
    )
    assert recurring.status_code == 422

    business = policy_body(
        "Office hours",
        targets={"normal": {"first_reply": {"minutes": 60, "business": True}}},
        schedule_id=schedule["id"],
    )
    r = api.post("/v1/sla/policies", business, role=Role.ADMIN)
    assert r.status_code == 201, r.text
    assert r.json()["schedule_id"] == schedule["id"]


def test_bad_policies_and_schedules_are_json_4xx(api: Api) -> None:
    no_schedule = policy_body(
        "x", targets={"normal": {"first_reply": {"minutes": 60, "business": True}}}
    )
    assert api.post("/v1/sla/policies", no_schedule, role=Role.ADMIN).status_code == 422
    for body in (
        policy_body("x", targets={"normal": {"first_reply": {"minutes": 0}}}),
        policy_body("x", targets={"normal": {"lunch": {"minutes": 5}}}),
        policy_body("x", filter={"match": "some"}),
        policy_body("x", targets={"whenever": {"first_reply": {"minutes": 5}}}),
    ):
        r = api.post("/v1/sla/policies", body, role=Role.ADMIN)
        assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_input"), body
    unknown = policy_body("x", schedule_id="00000000-0000-0000-0000-000000000001")
    r = api.post("/v1/sla/policies", unknown, role=Role.ADMIN)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "unknown_schedule")
    for schedule in (
        {**OFFICE, "timezone": "Mars/Olympus"},
        {**OFFICE, "hours": {"mon": [["17:00", "09:00"]]}},
        {**OFFICE, "holidays": ["2026-02-30"]},
        {**OFFICE, "hours": {}},
    ):
        r = api.post("/v1/sla/schedules", schedule, role=Role.ADMIN)
        assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_input"), schedule
    r = api.post("/v1/sla/policies/reorder", {"policy_ids": []}, role=Role.ADMIN)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "invalid_policy_order")
    assert api.get("/v1/sla/policies/not-a-uuid", role=Role.ADMIN).status_code == 404
    assert api.post("/v1/sla/policies", policy_body("x"), role=Role.SERVICE).status_code == 403
    r = api.post(f"/v1/tickets/{api.ticket(api.user()['id'])['id']}/priority", {"priority": "x"})
    assert r.status_code == 422
