"""Request body limits and the error shape: every refusal is JSON with a stable code."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

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
