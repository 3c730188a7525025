"""SLA policies that target the requester's organization (the compliance work's organizations)."""

from __future__ import annotations

import uuid

from api.tokens import Role
from tests.conftest import Api


def test_a_policy_can_target_the_requesters_organization(api: Api) -> None:
    org = api.post("/v1/organizations", {"name": "Premium Customer Co"}).json()
    member = api.user(organization_id=org["id"])
    outsider = api.user()
    targets = {"normal": {"first_reply": {"minutes": 30}}}
    r = api.client.post(
        "/v1/sla/policies",
        headers=api.headers(Role.ADMIN),
        json={"name": "Premium", "filter": {"organizations": [org["id"]]}, "targets": targets},
    )
    assert r.status_code == 201, r.text
    premium = r.json()["id"]
    r = api.client.post(
        "/v1/sla/policies",
        headers=api.headers(Role.ADMIN),
        json={"name": "Everyone", "targets": {"normal": {"first_reply": {"minutes": 240}}}},
    )
    assert r.status_code == 201, r.text

    def policy_of(requester: object) -> object:
        tid = api.ticket(requester)["id"]
        sla = api.get(f"/v1/tickets/{tid}/sla").json()
        return (sla["applied_policy"] or {}).get("policy_id")

    assert policy_of(member["id"]) == premium
    assert policy_of(outsider["id"]) != premium
    r = api.client.post(
        "/v1/sla/policies",
        headers=api.headers(Role.ADMIN),
        json={
            "name": "Ghost",
            "filter": {"organizations": [str(uuid.uuid4())]},
            "targets": targets,
        },
    )
    assert r.status_code == 404
