"""The Kafka commands without a broker: the embedded default never needs Kafka."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from domain.user import UserKind
from projections.kafka import KafkaFedViews
from projections.sql import Database
from tests.conftest import open_api
from tests.kafka_support import dump_views, seed
from tests.test_cli import run_cli
from ticketlog.config import ConfigError, Settings
from ticketlog.runtime import Runtime
from ticketlog.stream import SealedReader


def test_relay_needs_a_bootstrap_and_says_how_to_set_it(tmp_path: Path) -> None:
    result = run_cli(tmp_path / "data", "relay")
    assert result.returncode == 2
    assert "TICKETLOG_KAFKA_BOOTSTRAP" in result.stderr


def test_bad_kafka_settings_are_refused_with_the_variable_named() -> None:
    with pytest.raises(ConfigError, match="TICKETLOG_VIEWS_FEED"):
        Settings.from_env({"TICKETLOG_VIEWS_FEED": "carrier-pigeon"})
    with pytest.raises(ConfigError, match="TICKETLOG_KAFKA_PARTITIONS"):
        Settings.from_env({"TICKETLOG_KAFKA_PARTITIONS": "0"})
    with pytest.raises(ConfigError, match="TICKETLOG_KAFKA_MAX_POLL_MS"):
        Settings.from_env({"TICKETLOG_KAFKA_MAX_POLL_MS": "ten"})
    defaults = Settings.from_env({})
    assert (defaults.kafka_bootstrap, defaults.kafka_topic, defaults.views_feed) == (
        None,
        "ticketlog.events",
        "inline",
    )


def test_project_from_the_log_and_status_without_kafka(tmp_path: Path) -> None:
    data = tmp_path / "data"
    rt = Runtime.open(Settings(data_dir=data))
    try:
        seed(rt.desk, 4)
        head = rt.desk.recorder.max_notification_id()
    finally:
        rt.close()

    status = run_cli(data, "relay", "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout) == {
        "topic": "ticketlog.events",
        "position": 0,
        "head": head,
        "lag": head,
        "updated_at": None,
    }
    assert run_cli(data, "relay", "status", "--max-lag", str(head)).returncode == 0
    behind = run_cli(data, "relay", "status", "--max-lag", str(head - 1))
    assert behind.returncode == 1
    assert "exceeds" in behind.stderr

    lagging = run_cli(data, "project", "status", "--source", "log", "--json")
    assert json.loads(lagging.stdout)[0]["lag"] == head
    done = run_cli(data, "project", "--source", "log", "--once")
    assert done.returncode == 0, done.stderr
    assert f"applied {head:,} events" in done.stderr
    caught_up = run_cli(data, "project", "status", "--source", "log", "--max-lag", "0")
    assert caught_up.returncode == 0, caught_up.stdout
    db = Database.sqlite(data / "views.db")
    try:
        assert len(dump_views(db)["view_tickets"]) == 4
    finally:
        db.close()


def test_the_keyless_reader_decodes_exactly_as_the_sealing_mapper(settings: Settings) -> None:
    rt = Runtime.open(settings)
    try:
        seed(rt.desk, 2)
        rt.desk.erase_subject(rt.desk.register_user(UserKind.CUSTOMER, "Gone Soon", "g@x.example"))
        notifications = rt.desk.recorder.select_notifications(0, 1000)
        reader = SealedReader()
        for n in notifications:
            assert vars(reader.to_domain_event(n)) == vars(
                rt.desk.sealing_mapper.to_domain_event(n)
            )
    finally:
        rt.close()


def test_kafka_fed_api_stores_the_command_and_says_when_views_lag(settings: Settings) -> None:
    """No relay or projector running: the write is kept, the answer says the views are behind."""
    fed = dataclasses.replace(settings, views_feed="kafka", kafka_bootstrap="127.0.0.1:9")
    rt = Runtime.open(fed)
    try:
        assert isinstance(rt.runner, KafkaFedViews)
        rt.runner.wait_seconds = 0.3
        for api in open_api(rt)():
            r = api.post("/v1/users", {"kind": "customer", "name": "Lena Lag", "email": "l@x.io"})
            assert r.status_code == 503
            assert r.json()["error"]["code"] == "views_lagging"
            assert r.headers["Retry-After"] == "1"
            assert api.get("/healthz").json()["views"][0]["lag"] == 1
        assert rt.desk.recorder.max_notification_id() == 1  # the command was stored
    finally:
        rt.close()
