"""Reports over HTTP on hand-computed data: SLA per group, agents, CSV, the SVG chart."""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET
from typing import Any

from api.tokens import Role
from tests.conftest import Api
from tests.sla_fixtures import HandClock, change_policy, standard_policy

WINDOW = {"from": "2026-11-16T00:00:00Z", "to": "2026-11-23T00:00:00Z"}


def scene(api: Api, clock: HandClock) -> dict[str, Any]:
    urgent = api.post(
        "/v1/sla/policies",
        {
            "name": "Urgent",
            "filter": {"priorities": ["urgent"]},
            "targets": {"urgent": {"first_reply": {"minutes": 15}}},
        },
        role=Role.ADMIN,
    ).json()
    standard = standard_policy(api)
    customer = api.user()
    a, b = api.user(kind="agent"), api.user(kind="agent")
    t1, t2, t3 = (api.ticket(customer["id"])["id"] for _ in range(3))
    t4 = api.ticket(customer["id"], priority="urgent")["id"]

    def reply(ticket: str, agent: dict[str, Any]) -> None:
        r = api.post(f"/v1/tickets/{ticket}/comments", {"author_id": agent["id"], "body": "x"})
        assert r.status_code == 201, r.text

    def solve(ticket: str, agent: dict[str, Any]) -> None:
        api.post(f"/v1/tickets/{ticket}/assign", {"assignee_id": agent["id"]})
        assert api.post(f"/v1/tickets/{ticket}/status", {"status": "solved"}).status_code == 200

    clock.advance(10)
    reply(t4, a)  # first reply after 10 min (target 15)
    clock.advance(20)
    reply(t1, a)  # 30 min (target 60)
    clock.advance(30)
    solve(t1, a)  # resolved after 60 min
    clock.advance(30)
    reply(t2, b)  # 90 min: late
    clock.advance(30)
    solve(t2, b)  # resolved after 120 min
    clock.advance(80)  # t3 has waited 200 min for a first reply: overdue
    return {
        "customer": customer,
        "a": a,
        "b": b,
        "tickets": (t1, t2, t3, t4),
        "standard": standard,
        "urgent": urgent,
    }


def metrics_of(groups: list[dict[str, Any]], label: str) -> dict[str, dict[str, Any]]:
    [group] = [g for g in groups if g["label"] == label]
    return {m["metric"]: m for m in group["metrics"]}


def test_sla_report_by_policy_priority_and_assignee(sla_api: Api, clock: HandClock) -> None:
    api = sla_api
    s = scene(api, clock)
    r = api.get("/v1/reports/sla", **WINDOW)
    assert r.status_code == 200, r.text
    standard = metrics_of(r.json()["groups"], "Standard")
    assert standard["first_reply"] == {
        "metric": "first_reply",
        "achieved": 1,
        "breached": 2,  # one late reply, one still unanswered past due
        "active": 0,
        "achievement_pct": 33.3,
        "median_calendar_minutes": 60.0,
        "p90_calendar_minutes": 84.0,
        "median_business_minutes": 60.0,
        "p90_business_minutes": 84.0,
    }
    resolution = standard["resolution"]
    assert (resolution["achieved"], resolution["breached"], resolution["active"]) == (2, 0, 1)
    assert (resolution["achievement_pct"], resolution["median_business_minutes"]) == (100.0, 90.0)
    urgent = metrics_of(r.json()["groups"], "Urgent")
    assert list(urgent) == ["first_reply"]
    assert urgent["first_reply"]["median_calendar_minutes"] == 10.0

    by_priority = api.get("/v1/reports/sla", group_by="priority", **WINDOW).json()["groups"]
    assert [g["group"] for g in by_priority] == ["normal", "urgent"]
    by_assignee = api.get("/v1/reports/sla", group_by="assignee", **WINDOW).json()["groups"]
    assert [g["group"] for g in by_assignee] == [*sorted([s["a"]["id"], s["b"]["id"]]), None]

    later = api.get("/v1/reports/sla", **{**WINDOW, "from": "2026-11-17T08:01:00Z"})
    assert later.json()["groups"] == []  # every target started at 08:00

    # Erasing the customer changes no number: SLA data is not personal data.
    assert api.post(f"/v1/subjects/{s['customer']['id']}/erase", role=Role.COMPLIANCE).is_success
    assert api.get("/v1/reports/sla", **WINDOW).json() == r.json()


def test_agents_report_and_reopens(sla_api: Api, clock: HandClock) -> None:
    api = sla_api
    s = scene(api, clock)
    t1 = s["tickets"][0]
    r = api.post(f"/v1/tickets/{t1}/comments", {"author_id": s["customer"]["id"], "body": "again"})
    assert r.json()["ticket"]["status"] == "open"
    agents = {a["agent_id"]: a for a in api.get("/v1/reports/agents", **WINDOW).json()["agents"]}
    assert agents[s["a"]["id"]] == {
        "agent_id": s["a"]["id"],
        "tickets_solved": 1,
        "public_replies": 2,
        "first_reply_median_minutes": 20.0,
        "first_reply_p90_minutes": 28.0,
        "one_touch_resolution_pct": 100.0,
        "reopens": 1,
    }
    assert agents[s["b"]["id"]]["first_reply_median_minutes"] == 90.0
    assert agents[s["b"]["id"]]["reopens"] == 0


def test_csv_and_svg(sla_api: Api, clock: HandClock) -> None:
    api = sla_api
    scene(api, clock)
    headers = {**api.headers(Role.AUDITOR), "Accept": "text/csv"}
    r = api.client.get("/v1/reports/sla", params=WINDOW, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert sorted((row["label"], row["metric"]) for row in rows) == [
        ("Standard", "first_reply"),
        ("Standard", "resolution"),
        ("Urgent", "first_reply"),
    ]
    assert {row["achievement_pct"] for row in rows if row["metric"] == "first_reply"} == {
        "33.3",
        "100.0",
    }
    agents = api.client.get("/v1/reports/agents", params=WINDOW, headers=headers)
    assert agents.text.splitlines()[0].startswith("agent_id,tickets_solved,public_replies")
    assert len(agents.text.splitlines()) == 3

    chart = api.get("/v1/reports/sla.svg", role=Role.AUDITOR, **WINDOW)
    assert chart.status_code == 200
    assert chart.headers["content-type"].startswith("image/svg+xml")
    svg = ET.fromstring(chart.text)
    texts = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert "Standard" in texts
    assert "Urgent" in texts
    assert "2026-11-16" in texts
    points = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}title")]
    assert "Standard 2026-11-16: 60.0%" in points  # 3 of 5 decided targets achieved


def test_bad_report_requests_are_json_4xx(sla_api: Api) -> None:
    api = sla_api
    r = api.get("/v1/reports/sla", **{"from": "2026-11-20T00:00:00Z", "to": "2026-11-19T00:00:00Z"})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_range")
    assert api.get("/v1/reports/sla", group_by="weather").status_code == 422
    assert api.get("/v1/reports/agents", **{"from": "last tuesday"}).status_code == 422
    assert api.get("/v1/reports/sla", role=Role.COMPLIANCE).status_code == 403
    empty = api.get("/v1/reports/sla.svg")
    assert empty.status_code == 200
    assert "no fulfilled or breached targets" in empty.text


def test_configured_now_recomputes_with_todays_policy_beside_then(
    sla_api: Api, clock: HandClock
) -> None:
    api = sla_api
    s = scene(api, clock)
    standard = s["standard"]
    stricter = {"normal": {"first_reply": {"minutes": 20}, "resolution": {"minutes": 100}}}
    change_policy(api, standard, targets=stricter)
    then = metrics_of(api.get("/v1/reports/sla", **WINDOW).json()["groups"], "Standard")
    now = metrics_of(
        api.get("/v1/reports/sla", configured="now", **WINDOW).json()["groups"], "Standard"
    )
    assert (then["first_reply"]["achieved"], then["first_reply"]["breached"]) == (1, 2)
    assert (now["first_reply"]["achieved"], now["first_reply"]["breached"]) == (0, 3)
    # Resolution, now in calendar minutes with a 100-minute target: t1 (60) in time, t2 (120)
    # late, t3 overdue at 200 minutes.
    assert (now["resolution"]["achieved"], now["resolution"]["breached"]) == (1, 2)
    assert (then["resolution"]["achieved"], then["resolution"]["active"]) == (2, 1)
    # The stored rows are untouched: "then" is still what it was.
    assert then["first_reply"]["median_calendar_minutes"] == 60.0


def test_a_renamed_policy_is_labelled_by_its_latest_name_in_the_window(
    sla_api: Api, clock: HandClock
) -> None:
    api = sla_api
    s = scene(api, clock)
    standard = s["standard"]
    change_policy(api, standard, name="Standard (renamed)")
    before = [g["label"] for g in api.get("/v1/reports/sla", **WINDOW).json()["groups"]]
    assert sorted(before) == ["Standard", "Urgent"]  # its targets in the window began before
    clock.advance(60)
    api.ticket(s["customer"]["id"])  # a target under the new name
    after = [g["label"] for g in api.get("/v1/reports/sla", **WINDOW).json()["groups"]]
    assert sorted(after) == ["Standard (renamed)", "Urgent"]
    configured = api.get("/v1/reports/sla", configured="now", **WINDOW).json()["groups"]
    assert sorted(g["label"] for g in configured) == ["Standard (renamed)", "Urgent"]


def test_a_report_follows_new_events_and_the_clock(sla_api: Api, clock: HandClock) -> None:
    """Whole days are kept between reports: a late reply to an old ticket, and a target that
    falls due with no event at all, both show in the next report."""
    api = sla_api
    s = scene(api, clock)
    t3 = s["tickets"][2]

    def first_reply() -> dict[str, Any]:
        return metrics_of(api.get("/v1/reports/sla", **WINDOW).json()["groups"], "Standard")[
            "first_reply"
        ]

    assert (first_reply()["median_calendar_minutes"], first_reply()["p90_calendar_minutes"]) == (
        60.0,
        84.0,
    )
    clock.advance(10)
    r = api.post(f"/v1/tickets/{t3}/comments", {"author_id": s["a"]["id"], "body": "late"})
    assert r.status_code == 201, r.text
    answered = first_reply()  # 30, 90 and now 210 minutes
    assert (answered["median_calendar_minutes"], answered["p90_calendar_minutes"]) == (90.0, 186.0)
    assert (answered["achieved"], answered["breached"], answered["active"]) == (1, 2, 0)

    api.ticket(s["customer"]["id"])  # first reply due in 60 minutes
    assert first_reply()["active"] == 1
    clock.advance(60)
    assert first_reply()["active"] == 1  # due now, not yet late
    clock.advance(1)
    overdue = first_reply()
    assert (overdue["breached"], overdue["active"]) == (3, 0)
