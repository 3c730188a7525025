"""The HTTP contract, end to end against a live server, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
import uuid
from types import SimpleNamespace

import pytest

from api import tokens
from api.tokens import Role, TokenStore
from tests.conftest import Api


def test_health_needs_no_token_and_reports_view_lag(api: Api) -> None:
    r = api.get("/healthz", role=None)
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    assert {v["name"] for v in r.json()["views"]} >= {
        "helpdesk",
        "compliance",
        "sla",
        "attachments",
    }


def test_register_read_and_rectify_a_user(api: Api) -> None:
    created = api.user(
        name="Ada Lovelace",
        email="Ada@Example.COM",
        phone="+44 20 7946 0000",
        organization="Analytical Engines",
    )
    assert created["kind"] == "customer"
    assert created["erased"] is False
    r = api.get(f"/v1/users/{created['id']}")
    assert r.status_code == 200
    body = r.json()
    assert body["name"] == "Ada Lovelace"
    assert body["email"] == "Ada@example.com"  # the domain part is normalized
    assert body["organization"] == "Analytical Engines"

    r = api.patch(f"/v1/users/{created['id']}", {"phone": None, "name": "Ada King"})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Ada King"
    assert r.json()["phone"] is None
    assert r.json()["email"] == "Ada@example.com"


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "robot", "name": "X", "email": "x@example.com"},
        {"kind": "customer", "name": "X", "email": "not-an-email"},
        {"kind": "customer", "name": "", "email": "x@example.com"},
        {"kind": "customer", "name": "X" * 201, "email": "x@example.com"},
        {"kind": "customer", "name": "X", "email": "x@example.com", "admin": True},
        {"kind": "customer", "name": "X"},
    ],
)
def test_invalid_users_are_rejected_with_422_json(api: Api, body: dict[str, object]) -> None:
    r = api.post("/v1/users", body)
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_input"


def test_malformed_json_is_a_422_not_a_500(api: Api) -> None:
    r = api.client.post(
        "/v1/users",
        content=b"{not json",
        headers={**api.headers(Role.SERVICE), "Content-Type": "application/json"},
    )
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_input"


def test_validation_errors_do_not_echo_personal_input(api: Api) -> None:
    r = api.post("/v1/users", {"kind": "customer", "name": "Zed", "email": "zed-secret-at-nowhere"})
    assert r.status_code == 422
    assert "zed-secret" not in r.text


def test_ticket_lifecycle(api: Api) -> None:
    customer = api.user()
    agent = api.user(kind="agent")
    t = api.ticket(
        customer["id"],
        subject="Printer on fire",
        body="Smoke everywhere",
        priority="urgent",
        tags=["Hardware", " fire ", "hardware"],
    )
    assert t["status"] == "new"
    assert t["priority"] == "urgent"
    assert t["tags"] == ["hardware", "fire"]
    assert t["assignee_id"] is None
    tid = t["id"]

    r = api.post(
        f"/v1/tickets/{tid}/comments",
        {"author_id": agent["id"], "body": "On our way", "public": True},
    )
    assert r.status_code == 201
    r = api.post(
        f"/v1/tickets/{tid}/comments",
        {"author_id": agent["id"], "body": "Bring an extinguisher", "public": False},
    )
    assert r.status_code == 201
    r = api.post(f"/v1/tickets/{tid}/assign", {"assignee_id": agent["id"]})
    assert r.status_code == 200
    assert r.json()["assignee_id"] == agent["id"]
    assert r.json()["status"] == "open"  # assigning a new ticket opens it
    assert r.json()["body"] == "Smoke everywhere"
    assert "comments" not in r.json()  # commands answer without the conversation
    r = api.post(f"/v1/tickets/{tid}/status", {"status": "solved"})
    assert r.json()["status"] == "solved"

    # A public reply by the requester reopens a solved ticket.
    r = api.post(
        f"/v1/tickets/{tid}/comments",
        {"author_id": customer["id"], "body": "Still smoking", "public": True},
    )
    added = r.json()
    assert added["ticket"]["status"] == "open"
    # The answer is the new comment and the ticket it changed, not the whole conversation.
    assert added["comment"]["body"] == "Still smoking"
    assert "comments" not in added["ticket"]
    assert "body" not in added["ticket"]
    # The comment is version 7; the reopening it caused is 8, the version the ETag names.
    assert (added["comment"]["version"], added["ticket"]["version"]) == (7, 8)
    assert r.headers["ETag"] == '"8"'

    r = api.get(f"/v1/tickets/{tid}")
    ticket = r.json()
    assert ticket["subject"] == "Printer on fire"
    assert ticket["body"] == "Smoke everywhere"
    assert [(c["body"], c["public"]) for c in ticket["comments"]] == [
        ("On our way", True),
        ("Bring an extinguisher", False),
        ("Still smoking", True),
    ]
    assert ticket["version"] == 8
    assert ticket["updated_at"] >= ticket["created_at"]


def test_rule_violations_answer_409(api: Api) -> None:
    customer = api.user()
    tid = api.ticket(customer["id"])["id"]
    r = api.post(f"/v1/tickets/{tid}/status", {"status": "solved"})
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "needs_assignee"
    r = api.post(f"/v1/tickets/{tid}/status", {"status": "open"})
    assert r.status_code == 200
    r = api.post(f"/v1/tickets/{tid}/status", {"status": "new"})
    assert r.status_code == 409
    r = api.post(f"/v1/tickets/{tid}/assign", {"assignee_id": customer["id"]})
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "not_an_agent"
    r = api.post(
        f"/v1/tickets/{tid}/comments",
        {"author_id": customer["id"], "body": "psst", "public": False},
    )
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "internal_note"


def test_closed_is_final(api: Api) -> None:
    customer, agent = api.user(), api.user(kind="agent")
    tid = api.ticket(customer["id"])["id"]
    api.post(f"/v1/tickets/{tid}/assign", {"assignee_id": agent["id"]})
    assert api.post(f"/v1/tickets/{tid}/status", {"status": "solved"}).status_code == 200
    assert api.post(f"/v1/tickets/{tid}/status", {"status": "closed"}).status_code == 200
    for path, body in [
        ("comments", {"author_id": customer["id"], "body": "hello?", "public": True}),
        ("assign", {"assignee_id": agent["id"]}),
        ("status", {"status": "open"}),
    ]:
        r = api.post(f"/v1/tickets/{tid}/{path}", body)
        assert r.status_code == 409, path
        assert r.json()["error"]["code"] == "ticket_closed"


def test_unknown_ids_answer_404(api: Api) -> None:
    missing = str(uuid.uuid4())
    assert api.get(f"/v1/users/{missing}").status_code == 404
    assert api.get("/v1/users/not-a-uuid").status_code == 404
    assert api.get(f"/v1/tickets/{missing}").status_code == 404
    r = api.post("/v1/tickets", {"requester_id": missing, "subject": "s", "body": "b"})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
    customer = api.user()
    tid = api.ticket(customer["id"])["id"]
    r = api.post(f"/v1/tickets/{tid}/assign", {"assignee_id": missing})
    assert r.status_code == 404
    # A user's id is not a ticket's.
    assert api.get(f"/v1/tickets/{customer['id']}").status_code == 404
    assert api.get(f"/v1/tickets/{customer['id']}/history", role=Role.AUDITOR).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"subject": "", "body": "b"},
        {"subject": "s", "body": "b", "priority": "whenever"},
        {"subject": "s", "body": "b", "tags": ["has space"]},
        {"subject": "s", "body": "b", "tags": ["t"] * 51},
        {"subject": "s" * 251, "body": "b"},
        {"subject": "s", "body": "b", "status": "open"},
    ],
)
def test_invalid_tickets_are_rejected(api: Api, body: dict[str, object]) -> None:
    customer = api.user()
    r = api.post("/v1/tickets", {"requester_id": customer["id"], **body})
    assert r.status_code == 422


def test_list_filters_and_pages(api: Api) -> None:
    alice, bob, agent = api.user(), api.user(), api.user(kind="agent")
    alice_tickets = [api.ticket(alice["id"], subject=f"A{i}")["id"] for i in range(5)]
    bob_ticket = api.ticket(bob["id"])["id"]
    api.post(f"/v1/tickets/{bob_ticket}/assign", {"assignee_id": agent["id"]})

    seen, cursor = [], None
    while True:
        params: dict[str, object] = {"requester_id": alice["id"], "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = api.get("/v1/tickets", **params).json()
        seen += [t["id"] for t in page["items"]]
        assert len(page["items"]) <= 2
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == alice_tickets
    assert [
        t["subject"] for t in api.get("/v1/tickets", requester_id=alice["id"]).json()["items"]
    ] == ["A0", "A1", "A2", "A3", "A4"]

    by_agent = api.get("/v1/tickets", assignee_id=agent["id"]).json()["items"]
    assert [t["id"] for t in by_agent] == [bob_ticket]
    open_ = api.get("/v1/tickets", status="open", requester_id=bob["id"]).json()["items"]
    assert [t["id"] for t in open_] == [bob_ticket]

    assert api.get("/v1/tickets", status="nonsense").status_code == 422
    assert api.get("/v1/tickets", limit=0).status_code == 422
    assert api.get("/v1/tickets", limit=201).status_code == 422
    r = api.get("/v1/tickets", cursor="garbage!")
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_cursor"


def test_comments_are_read_a_page_at_a_time_oldest_first(api: Api) -> None:
    customer, agent = api.user(), api.user(kind="agent")
    tid = api.ticket(customer["id"])["id"]
    assert api.get(f"/v1/tickets/{tid}/comments").json() == {"items": [], "next_after": None}
    for i in range(5):
        r = api.post(f"/v1/tickets/{tid}/comments", {"author_id": agent["id"], "body": f"c{i}"})
        assert r.status_code == 201, r.text

    seen, after = [], 0
    while after is not None:
        page = api.get(f"/v1/tickets/{tid}/comments", after=after, limit=2).json()
        assert len(page["items"]) <= 2
        seen += [(c["version"], c["body"]) for c in page["items"]]
        after = page["next_after"]
    assert seen == [(v, f"c{v - 2}") for v in range(2, 7)]  # the ticket opened at version 1
    # The ticket's own answer lists the same comments with the same versions.
    full = api.get(f"/v1/tickets/{tid}").json()["comments"]
    assert [(c["version"], c["body"]) for c in full] == seen
    # An exact last page says there is no next one.
    assert api.get(f"/v1/tickets/{tid}/comments", after=4, limit=2).json()["next_after"] is None

    assert api.get(f"/v1/tickets/{uuid.uuid4()}/comments").status_code == 404
    assert api.get(f"/v1/tickets/{customer['id']}/comments").status_code == 404
    for bad in ({"limit": 0}, {"limit": 201}, {"after": -1}, {"after": "x"}):
        r = api.get(f"/v1/tickets/{tid}/comments", **bad)
        assert r.status_code == 422, bad
        assert r.json()["error"]["code"] == "invalid_input"


def test_history_shows_every_event_to_auditors(api: Api) -> None:
    customer, agent = api.user(), api.user(kind="agent")
    tid = api.ticket(customer["id"], subject="Hello", body="World")["id"]
    api.post(f"/v1/tickets/{tid}/assign", {"assignee_id": agent["id"]})
    r = api.get(f"/v1/tickets/{tid}/history", role=Role.AUDITOR)
    assert r.status_code == 200
    events = r.json()["events"]
    assert [e["type"] for e in events] == ["Opened", "Assigned", "StatusChanged"]
    assert [e["version"] for e in events] == [1, 2, 3]
    assert events[0]["data"]["subject"] == "Hello"
    assert events[0]["data"]["requester_id"] == customer["id"]
    assert events[0]["erased_fields"] == []
    assert all(e["occurred_at"] and e["recorded_at"] for e in events)
    assert events[2]["data"] == {"status": "open", "reason": "assigned"}


def test_auth(api: Api) -> None:
    customer = api.user()
    assert api.get(f"/v1/users/{customer['id']}", role=None).status_code == 401
    r = api.client.get(f"/v1/users/{customer['id']}", headers={"Authorization": "Bearer tl_nope"})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
    assert r.headers["WWW-Authenticate"] == "Bearer"
    assert (
        api.post(
            "/v1/users",
            {"kind": "customer", "name": "X", "email": "x@example.com"},
            role=Role.AUDITOR,
        ).status_code
        == 403
    )
    tid = api.ticket(customer["id"])["id"]
    assert api.get(f"/v1/tickets/{tid}/history", role=Role.SERVICE).status_code == 403
    assert api.get(f"/v1/tickets/{tid}/history", role=Role.ADMIN).status_code == 200
    assert api.get(f"/v1/subjects/{customer['id']}/export", role=Role.SERVICE).status_code == 403
    assert api.post(f"/v1/subjects/{customer['id']}/erase", role=Role.AUDITOR).status_code == 403
    assert api.get(f"/v1/tickets/{tid}", role=Role.AUDITOR).status_code == 403


def test_revoked_token_is_refused(api: Api) -> None:
    principal, token = api.runtime.tokens.create(Role.SERVICE, "soon revoked")
    headers = {"Authorization": f"Bearer {token}"}
    assert api.client.get("/v1/tickets", headers=headers).status_code == 200
    assert api.runtime.tokens.revoke(principal.token_id)
    assert api.client.get("/v1/tickets", headers=headers).status_code == 401


def test_token_revoked_elsewhere_is_refused_once_the_recent_check_expires(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process's revocation (a second store on the same database) is not seen by this
    process's recent-token memory until RECENT_SECONDS have passed; then the token is refused."""
    principal, token = api.runtime.tokens.create(Role.SERVICE, "revoked elsewhere")
    headers = {"Authorization": f"Bearer {token}"}
    assert api.client.get("/v1/tickets", headers=headers).status_code == 200
    assert TokenStore(api.runtime.tokens.db).revoke(principal.token_id)
    assert api.runtime.tokens.recently_authenticated(token) == principal
    later = time.monotonic() + tokens.RECENT_SECONDS + 1
    monkeypatch.setattr(tokens, "time", SimpleNamespace(monotonic=lambda: later))
    assert api.runtime.tokens.recently_authenticated(token) is None
    assert api.client.get("/v1/tickets", headers=headers).status_code == 401


def test_revocation_overtaking_a_lookup_is_not_forgotten(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lookup that read the token's row just before this process revoked it must not then
    remember the token: revoking in this process takes effect at once."""
    store = api.runtime.tokens
    principal, token = store.create(Role.SERVICE, "revoked mid-lookup")
    compare = tokens.hmac.compare_digest

    def revoke_then_compare(a: str, b: str) -> bool:  # runs after the SELECT, before remembering
        monkeypatch.setattr(tokens, "hmac", SimpleNamespace(compare_digest=compare))
        assert store.revoke(principal.token_id)
        return compare(a, b)

    # Only api.tokens sees the stand-in, not the live server's other threads.
    monkeypatch.setattr(tokens, "hmac", SimpleNamespace(compare_digest=revoke_then_compare))
    assert store.authenticate(token) == principal  # answered as it read the row
    assert store.recently_authenticated(token) is None
    headers = {"Authorization": f"Bearer {token}"}
    assert api.client.get("/v1/tickets", headers=headers).status_code == 401


def test_export_has_everything_about_the_person(api: Api) -> None:
    maria = api.user(name="Maria Export", email="maria@export.example")
    other = api.user()
    agent = api.user(kind="agent")
    own = api.ticket(maria["id"], subject="My own ticket", body="Mine")["id"]
    api.post(
        f"/v1/tickets/{own}/comments",
        {"author_id": agent["id"], "body": "Agent reply", "public": True},
    )
    elsewhere = api.ticket(other["id"], subject="Someone else's")["id"]
    api.post(
        f"/v1/tickets/{elsewhere}/comments",
        {"author_id": maria["id"], "body": "Me too!", "public": True},
    )

    r = api.get(f"/v1/subjects/{maria['id']}/export", role=Role.COMPLIANCE)
    assert r.status_code == 200
    export = r.json()
    assert export["profile"]["name"] == "Maria Export"
    assert export["profile"]["email"] == "maria@export.example"
    assert [t["subject"] for t in export["tickets_requested"]] == ["My own ticket"]
    assert [c["body"] for c in export["tickets_requested"][0]["comments"]] == ["Agent reply"]
    assert [(c["ticket_id"], c["body"]) for c in export["comments_elsewhere"]] == [
        (elsewhere, "Me too!")
    ]
    assert api.get(f"/v1/subjects/{uuid.uuid4()}/export", role=Role.COMPLIANCE).status_code == 404


def test_erasure(api: Api) -> None:
    maria = api.user(
        name="Maria Erased",
        email="maria@erased.example",
        phone="+1 555 0199",
        organization="Erased Org",
    )
    other = api.user(name="Other Person")
    agent = api.user(kind="agent")
    own = api.ticket(
        maria["id"], subject="Secret subject", body="Secret body", priority="high", tags=["billing"]
    )["id"]
    api.post(
        f"/v1/tickets/{own}/comments",
        {"author_id": agent["id"], "body": "Agent answer", "public": True},
    )
    api.post(f"/v1/tickets/{own}/assign", {"assignee_id": agent["id"]})
    elsewhere = api.ticket(other["id"], subject="Other's subject", body="Other's body")["id"]
    api.post(
        f"/v1/tickets/{elsewhere}/comments",
        {"author_id": maria["id"], "body": "Maria's remark", "public": True},
    )
    api.post(
        f"/v1/tickets/{elsewhere}/comments",
        {"author_id": agent["id"], "body": "Agent on other", "public": True},
    )
    before = api.get(f"/v1/tickets/{own}").json()

    r = api.post(f"/v1/subjects/{maria['id']}/erase", role=Role.COMPLIANCE)
    assert r.status_code == 200, r.text
    erasure = r.json()
    assert erasure["erased"] is True
    assert erasure["already_erased"] is False
    assert f"user:{maria['id']}" in erasure["keys_destroyed"]
    assert f"ticket:{own}" in erasure["keys_destroyed"]
    assert f"ticket:{elsewhere}" not in erasure["keys_destroyed"]

    user = api.get(f"/v1/users/{maria['id']}").json()
    assert user["erased"] is True
    assert [user[f] for f in ("name", "email", "phone", "organization")] == [None] * 4
    assert user["kind"] == "customer"

    t = api.get(f"/v1/tickets/{own}").json()
    assert (t["subject"], t["body"]) == (None, None)
    assert [c["body"] for c in t["comments"]] == [None]
    for kept in ("status", "priority", "assignee_id", "tags", "created_at", "requester_id"):
        assert t[kept] == before[kept], kept

    other_ticket = api.get(f"/v1/tickets/{elsewhere}").json()
    assert other_ticket["subject"] == "Other's subject"
    assert [c["body"] for c in other_ticket["comments"]] == [None, "Agent on other"]

    history = api.get(f"/v1/tickets/{own}/history", role=Role.AUDITOR).json()["events"]
    assert history[0]["data"]["subject"] is None
    assert history[0]["erased_fields"] == ["body", "subject"]
    assert history[0]["data"]["priority"] == "high"

    again = api.post(f"/v1/subjects/{maria['id']}/erase", role=Role.COMPLIANCE)
    assert again.status_code == 200
    assert again.json()["already_erased"] is True
    assert again.json()["keys_destroyed_now"] == []
    assert sorted(again.json()["keys_destroyed"]) == sorted(erasure["keys_destroyed"])

    export = api.get(f"/v1/subjects/{maria['id']}/export", role=Role.COMPLIANCE).json()
    assert export["profile"]["name"] is None
    assert export["comments_elsewhere"][0]["body"] is None


def test_after_erasure_nothing_new_is_stored_for_the_person(api: Api) -> None:
    maria, agent = api.user(), api.user(kind="agent")
    tid = api.ticket(maria["id"])["id"]
    api.post(f"/v1/subjects/{maria['id']}/erase", role=Role.COMPLIANCE)
    # Agents can still work the ticket's non-personal state...
    assert api.post(f"/v1/tickets/{tid}/assign", {"assignee_id": agent["id"]}).status_code == 200
    assert api.post(f"/v1/tickets/{tid}/status", {"status": "solved"}).status_code == 200
    # ...but no new content can be written for an erased person.
    r = api.post(
        f"/v1/tickets/{tid}/comments", {"author_id": agent["id"], "body": "hello", "public": True}
    )
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "subject_erased"
    r = api.post("/v1/tickets", {"requester_id": maria["id"], "subject": "s", "body": "b"})
    assert r.status_code == 409
    r = api.patch(f"/v1/users/{maria['id']}", {"name": "Back again"})
    assert r.status_code == 409
    assert api.post(f"/v1/subjects/{uuid.uuid4()}/erase", role=Role.COMPLIANCE).status_code == 404


def test_openapi_schema_is_served(api: Api) -> None:
    r = api.get("/openapi.json", role=None)
    assert r.status_code == 200
    paths = r.json()["paths"]
    assert "/v1/subjects/{subject_id}/erase" in paths
    assert "/v1/tickets/{ticket_id}/history" in paths


def test_concurrent_comments_on_one_ticket_are_all_kept(api: Api) -> None:
    from concurrent.futures import ThreadPoolExecutor

    customer, agent = api.user(), api.user(kind="agent")
    tid = api.ticket(customer["id"])["id"]

    def comment(i: int) -> int:
        r = api.post(
            f"/v1/tickets/{tid}/comments",
            {"author_id": agent["id"], "body": f"reply {i}", "public": True},
        )
        return r.status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(comment, range(40)))
    assert statuses == [201] * 40
    bodies = [c["body"] for c in api.get(f"/v1/tickets/{tid}").json()["comments"]]
    assert sorted(bodies) == sorted(f"reply {i}" for i in range(40))
