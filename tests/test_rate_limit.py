"""Rate limiting per token: past the burst, 429 with Retry-After; other tokens go on."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from api.ratelimit import RateLimit
from api.tokens import Role
from tests.conftest import Api, open_api
from ticketlog.config import ConfigError, Settings
from ticketlog.runtime import Runtime


def _api_with(settings: Settings, **changes: object) -> Iterator[Api]:
    runtime = Runtime.open(dataclasses.replace(settings, **changes))  # type: ignore[arg-type]
    try:
        yield from open_api(runtime)()
    finally:
        runtime.close()


@pytest.fixture
def slow_api(settings: Settings) -> Iterator[Api]:
    # One request per 100 s after a burst of 3: no test run is slow enough to refill.
    yield from _api_with(settings, rate_limit=0.01, rate_burst=3)


def test_past_the_burst_a_token_gets_429_with_retry_after(slow_api: Api) -> None:
    for _ in range(3):
        assert slow_api.get("/v1/tickets").status_code == 200
    r = slow_api.get("/v1/tickets")
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(r.headers["retry-after"]) <= 100
    # Commands are limited too, and a limited command stores nothing.
    before = slow_api.runtime.desk.recorder.max_notification_id()
    body = {"kind": "customer", "name": "Rate", "email": "rate@example.com"}
    assert slow_api.post("/v1/users", body).status_code == 429
    assert slow_api.runtime.desk.recorder.max_notification_id() == before


def test_each_token_has_its_own_bucket(slow_api: Api) -> None:
    for _ in range(4):
        slow_api.get("/v1/tickets", role=Role.SERVICE)
    assert slow_api.get("/v1/tickets", role=Role.SERVICE).status_code == 429
    assert slow_api.get("/v1/tickets", role=Role.ADMIN).status_code == 200
    assert slow_api.client.get("/healthz").status_code == 200


def test_zero_turns_limiting_off(settings: Settings) -> None:
    for api in _api_with(settings, rate_limit=0.0, rate_burst=1):
        assert {api.get("/v1/tickets").status_code for _ in range(20)} == {200}


def test_a_bucket_refills_at_the_rate() -> None:
    limiter = RateLimit(app=None, rate=2.0, burst=2)  # type: ignore[arg-type]
    assert limiter.take("t", 0.0) is None
    assert limiter.take("t", 0.0) is None
    assert limiter.take("t", 0.0) == 1
    assert limiter.take("t", 0.5) is None  # half a second refills one at 2/s
    assert limiter.take("t", 0.5) == 1


def test_rate_settings_default_generous_and_are_checked() -> None:
    defaults = Settings.from_env({})
    assert (defaults.rate_limit, defaults.rate_burst) == (50.0, 100)
    custom = Settings.from_env({"TICKETLOG_RATE_LIMIT": "5", "TICKETLOG_RATE_BURST": "7"})
    assert (custom.rate_limit, custom.rate_burst) == (5.0, 7)
    assert Settings.from_env({"TICKETLOG_RATE_LIMIT": "0"}).rate_limit == 0
    for bad in ("-1", "fast", "inf"):
        with pytest.raises(ConfigError, match="TICKETLOG_RATE_LIMIT"):
            Settings.from_env({"TICKETLOG_RATE_LIMIT": bad})
