"""Request body limits and the error shape: every refusal is JSON with a stable code."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from api.tokens import Role
from tests.conftest import Api, open_api
from tests.test_attachments import upload
from ticketlog.config import ConfigError, Settings
from ticketlog.runtime import Runtime

LIMIT = 64 * 1024


@pytest.fixture
def small_api(settings: Settings) -> Iterator[Api]:
    runtime = Runtime.open(dataclasses.replace(settings, max_body_bytes=LIMIT))
    try:
        yield from open_api(runtime)()
    finally:
        runtime.close()


def _user_body(padding: int) -> dict[str, object]:
    return {"kind": "customer", "name": "N" * padding, "email": "limit@example.com"}


def test_a_body_over_the_limit_is_refused_with_413_and_stores_nothing(small_api: Api) -> None:
    before = small_api.runtime.desk.recorder.max_notification_id()
    r = small_api.post("/v1/users", _user_body(LIMIT))
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"
    assert small_api.runtime.desk.recorder.max_notification_id() == before


def test_a_chunked_body_without_a_length_is_counted_too(small_api: Api) -> None:
    chunks = iter([b'{"kind": "customer", "name": "', b"N" * LIMIT, b'"}'])
    r = small_api.client.post(
        "/v1/users",
        content=chunks,
        headers={**small_api.headers(Role.SERVICE), "Content-Type": "application/json"},
    )
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"


def test_a_body_under_the_limit_passes(small_api: Api) -> None:
    r = small_api.post("/v1/users", _user_body(20))
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "N" * 20


def test_attachment_uploads_stream_past_the_body_limit(small_api: Api) -> None:
    requester = small_api.user()
    ticket = small_api.ticket(requester["id"])
    r = upload(small_api, ticket["id"], requester["id"], b"x" * (4 * LIMIT))
    assert r.status_code == 201, r.text
    assert r.json()["size"] == 4 * LIMIT


def test_the_default_limit_is_one_mebibyte_and_configurable() -> None:
    assert Settings.from_env({}).max_body_bytes == 1 << 20
    env = {"TICKETLOG_MAX_BODY_BYTES": "2048"}
    assert Settings.from_env(env).max_body_bytes == 2048
    with pytest.raises(ConfigError, match="TICKETLOG_MAX_BODY_BYTES"):
        Settings.from_env({"TICKETLOG_MAX_BODY_BYTES": "lots"})


@pytest.mark.parametrize(
    ("method", "path", "content", "status", "code"),
    [
        ("GET", "/v1/nowhere", None, 404, "not_found"),
        ("DELETE", "/v1/users", None, 405, "method_not_allowed"),
        ("POST", "/v1/users", b"{not json", 422, "invalid_input"),
        ("POST", "/v1/users", b'{"kind": "customer", "surprise": 1}', 422, "invalid_input"),
        ("GET", "/v1/tickets?limit=-5", None, 422, "invalid_input"),
    ],
)
def test_errors_are_json_with_a_stable_code(
    api: Api, method: str, path: str, content: bytes | None, status: int, code: str
) -> None:
    headers = {**api.headers(Role.SERVICE), "Content-Type": "application/json"}
    r = api.client.request(method, path, content=content, headers=headers)
    assert r.status_code == status
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]["code"] == code
    assert isinstance(r.json()["error"]["message"], str)


def test_an_unknown_token_is_a_json_401(api: Api) -> None:
    r = api.client.get("/v1/tickets", headers={"Authorization": "Bearer tl_nope"})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"


def test_large_bodies_do_not_break_the_connection_for_the_client(small_api: Api) -> None:
    with httpx.Client(base_url=str(small_api.client.base_url), timeout=30) as client:
        r = client.post(
            "/v1/users", json=_user_body(LIMIT * 8), headers=small_api.headers(Role.SERVICE)
        )
    assert r.status_code == 413


# Every request body is bounded and closed: checked on the published schema, so a new field
# without a limit, or a model that accepts unknown fields, fails here.

UNBOUNDED_OK_FORMATS = {"uuid", "date-time", "binary"}


def _request_schema_problems(spec: dict[str, Any]) -> list[str]:
    components = spec["components"]["schemas"]
    problems: list[str] = []
    seen: set[str] = set()

    def walk(schema: dict[str, Any], where: str) -> None:
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            if name not in seen:
                seen.add(name)
                walk(components[name], name)
            return
        for key in ("anyOf", "oneOf", "allOf"):
            for n, sub in enumerate(schema.get(key, [])):
                walk(sub, f"{where}|{n}")
        kind = schema.get("type")
        if kind == "object":
            if "properties" in schema and schema.get("additionalProperties") is not False:
                problems.append(f"{where}: accepts unknown fields")
            for prop, sub in schema.get("properties", {}).items():
                walk(sub, f"{where}.{prop}")
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict):
                walk(extra, f"{where}[*]")
        elif kind == "array":
            if "maxItems" not in schema:
                problems.append(f"{where}: no maximum item count")
            if "items" in schema:
                walk(schema["items"], f"{where}[]")
            for n, sub in enumerate(schema.get("prefixItems", [])):
                walk(sub, f"{where}[{n}]")
        elif kind == "string":
            bounded = (
                "maxLength" in schema
                or "enum" in schema
                or "const" in schema
                or schema.get("format") in UNBOUNDED_OK_FORMATS
                or "{" in schema.get("pattern", "*")  # a fixed-width pattern like \\d{2}
            )
            if not bounded:
                problems.append(f"{where}: no maximum length")

    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                walk(content["application/json"]["schema"], f"{method.upper()} {path}")
    return problems


def test_every_json_request_field_is_bounded_and_unknown_fields_are_refused(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    assert _request_schema_problems(spec) == []


# Text fields: no NUL (PostgreSQL TEXT refuses it: that was a 500), no control characters in
# one-line fields. Refused with 422 invalid_input naming the field, never echoing the value.

NUL = "ada\x00lovelace"


def _scene(api: Api) -> dict[str, str]:
    customer = api.user()
    agent = api.user(kind="agent")
    ticket = api.ticket(customer["id"])
    return {"customer": str(customer["id"]), "agent": str(agent["id"]), "ticket": str(ticket["id"])}


HOURS = {"mon": [["09:00", "17:00"]]}
TARGETS = {"high": {"first_reply": {"minutes": 60}}}
CONTROL_CASES: list[tuple[str, str, Role, Any]] = [
    (
        "/v1/users",
        "name",
        Role.SERVICE,
        lambda s, v: {"kind": "customer", "name": v, "email": "a@example.com"},
    ),
    (
        "/v1/users",
        "organization",
        Role.SERVICE,
        lambda s, v: {"kind": "customer", "name": "N", "email": "a@example.com", "organization": v},
    ),
    (
        "/v1/tickets",
        "subject",
        Role.SERVICE,
        lambda s, v: {"requester_id": s["customer"], "subject": v, "body": "b"},
    ),
    (
        "/v1/tickets",
        "body",
        Role.SERVICE,
        lambda s, v: {"requester_id": s["customer"], "subject": "s", "body": v},
    ),
    (
        "/v1/tickets/{ticket}/comments",
        "body",
        Role.SERVICE,
        lambda s, v: {"author_id": s["agent"], "body": v},
    ),
    (
        "/v1/subjects/{customer}/consents",
        "policy_version",
        Role.COMPLIANCE,
        lambda s, v: {"purpose": "marketing", "policy_version": v, "granted": True},
    ),
    ("/v1/subjects/{customer}/hold", "reason", Role.COMPLIANCE, lambda s, v: {"reason": v}),
    ("/v1/organizations", "name", Role.SERVICE, lambda s, v: {"name": v}),
    (
        "/v1/sla/schedules",
        "name",
        Role.ADMIN,
        lambda s, v: {"name": v, "timezone": "UTC", "hours": HOURS},
    ),
    ("/v1/sla/policies", "name", Role.ADMIN, lambda s, v: {"name": v, "targets": TARGETS}),
    (
        "/v1/import/tickets",
        "source",
        Role.ADMIN,
        lambda s, v: {
            "requester_id": s["customer"],
            "subject": "s",
            "body": "b",
            "created_at": "2024-01-01T00:00:00Z",
            "source": v,
        },
    ),
    (
        "/v1/webhooks",
        "url",
        Role.ADMIN,
        lambda s, v: {
            "url": f"https://example.com/{v}",
            "events": ["ticket.opened"],
            "secret": "s" * 20,
        },
    ),
    (
        "/v1/webhooks",
        "secret",
        Role.ADMIN,
        lambda s, v: {
            "url": "https://example.com/h",
            "events": ["ticket.opened"],
            "secret": "s" * 20 + v,
        },
    ),
]


@pytest.mark.parametrize(("path", "field", "role", "body"), CONTROL_CASES)
def test_a_nul_in_any_text_field_is_a_422_and_stores_nothing(
    api: Api, path: str, field: str, role: Role, body: Any
) -> None:
    scene = _scene(api)
    before = api.runtime.desk.recorder.max_notification_id()
    r = api.post(path.format(**scene), body(scene, NUL), role=role)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_input"
    assert [d["loc"][-1] for d in error["details"]] == [field]
    assert "lovelace" not in r.text
    assert api.runtime.desk.recorder.max_notification_id() == before


def test_one_line_fields_refuse_line_breaks_and_texts_keep_them(api: Api) -> None:
    scene = _scene(api)
    for field, value in (("name", "Ada\nLovelace"), ("organization", "Acme\x1b[31m")):
        body = {"kind": "customer", "name": "Ada", "email": "a@example.com", field: value}
        r = api.post("/v1/users", body)
        assert r.status_code == 422, field
        assert r.json()["error"]["details"][0]["loc"] == ["body", field]
    r = api.post("/v1/tickets", {"requester_id": scene["customer"], "subject": "a\rb", "body": "b"})
    assert r.status_code == 422
    text = "Hello,\r\n\tthe invoice\nis wrong."
    r = api.post(
        f"/v1/tickets/{scene['ticket']}/comments", {"author_id": scene["agent"], "body": text}
    )
    assert r.status_code == 201, r.text
    assert r.json()["comment"]["body"] == text


def test_emails_are_validated_stripped_and_their_domain_lowercased(api: Api) -> None:
    r = api.post("/v1/users", {"kind": "customer", "name": "Ada", "email": "  Ada.L@Example.COM "})
    assert r.status_code == 201, r.text
    assert r.json()["email"] == "Ada.L@example.com"  # the local part is the mailbox's own
    patched = api.patch(f"/v1/users/{r.json()['id']}", {"email": "ada@EXAMPLE.org"})
    assert patched.json()["email"] == "ada@example.org"
    too_long = "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 63 + ".com"
    for email in ("ada", "ada@localhost", "ada@example..com", "a b@example.com", too_long):
        r = api.post("/v1/users", {"kind": "customer", "name": "Ada", "email": email})
        assert r.status_code == 422, email
        assert r.json()["error"]["details"][0]["loc"] == ["body", "email"]


def test_a_schedule_day_takes_at_most_48_spans(api: Api) -> None:
    spans = [[f"{h:02d}:{m:02d}", f"{h:02d}:{m + 20:02d}"] for h in range(24) for m in (0, 30)]
    body = {"name": "Busy", "timezone": "UTC", "hours": {"mon": spans}}
    assert api.post("/v1/sla/schedules", body, role=Role.ADMIN).status_code == 201
    body["hours"] = {"mon": [*spans, ["23:59", "24:00"]]}
    r = api.post("/v1/sla/schedules", body, role=Role.ADMIN)
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["type"] == "too_long"
