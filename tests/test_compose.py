"""docker-compose.yml, checked statically (Docker cannot run here): commands, variables, wiring."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from ticketlog.cli import build_parser
from ticketlog.config import PostgresURL, Settings

ROOT = Path(__file__).resolve().parent.parent
TICKETLOG_ROLES = {"serve": "cmd_serve", "relay": "cmd_relay", "project": "cmd_project"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def ticketlog_services(compose: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, service in compose["services"].items():
        if service.get("image", "").startswith("ticketlog"):
            yield name, service


class RecordingEnv(dict[str, str]):
    """An environment that remembers every variable the code asked for."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = {k: str(v) for k, v in service.get("environment", {}).items()}
    return {
        k: v.replace("${TICKETLOG_MASTER_KEY:?set TICKETLOG_MASTER_KEY}", "x")
        for k, v in env.items()
    }


def test_every_role_runs_and_each_command_is_one_the_cli_has(compose: dict[str, Any]) -> None:
    roles = {}
    for name, service in ticketlog_services(compose):
        args = build_parser().parse_args(service["command"])
        roles[name] = args.func.__name__
        if name == "project":
            assert args.source == "kafka"
        assert "healthcheck" in service, f"{name} has no health check"
        if service["healthcheck"]["test"][1] == "ticketlog":
            check = build_parser().parse_args(service["healthcheck"]["test"][2:])
            assert check.func.__name__.endswith("_status"), name
    assert roles == TICKETLOG_ROLES
    assert all("healthcheck" in s for s in compose["services"].values())


def test_every_variable_set_is_one_the_code_reads(compose: dict[str, Any]) -> None:
    for name, service in ticketlog_services(compose):
        env = RecordingEnv(env_of(service))
        Settings.from_env(env)
        unread = {k for k in env if k.startswith("TICKETLOG_")} - env.asked
        assert unread == set(), f"{name} sets variables nothing reads: {unread}"


def test_wiring_databases_brokers_and_where_keys_live(compose: dict[str, Any]) -> None:
    services = compose["services"]
    postgres = services["postgres"]["environment"]
    kafka = services["kafka"]["environment"]
    advertised = urlparse(kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")[0])
    settings = {name: Settings.from_env(env_of(s)) for name, s in ticketlog_services(compose)}

    for name, s in settings.items():
        pg = s.postgres
        assert pg is not None, f"{name} must use PostgreSQL"
        assert (pg.host, pg.port) == ("postgres", 5432)
        assert (pg.user, pg.password, pg.dbname) == (
            postgres["POSTGRES_USER"],
            postgres["POSTGRES_PASSWORD"],
            postgres["POSTGRES_DB"],
        )
        assert s.kafka_bootstrap == f"{advertised.hostname}:{advertised.port}" == "kafka:9092"
        depends = services[name]["depends_on"]
        assert (
            depends["postgres"]["condition"] == depends["kafka"]["condition"] == "service_healthy"
        )
    # One log, one topic, one set of views for every role.
    assert len({s.database_url for s in settings.values()}) == 1
    assert len({s.kafka_topic for s in settings.values()}) == 1
    assert settings["serve"].views_feed == "kafka"
    assert PostgresURL.parse(settings["serve"].database_url or "").schema == "public"

    # Keys: only serve holds the vault and the master key, and never on the events volume.
    mounts = {
        name: {v.split(":")[0]: v.split(":")[1] for v in s.get("volumes", [])}
        for name, s in services.items()
    }
    assert mounts["postgres"] == {"events": "/var/lib/postgresql/data"}
    assert mounts["serve"]["keys"] == "/keys"
    assert settings["serve"].keys_path == Path("/keys/keys.db")
    assert settings["serve"].master_key is not None
    for name in ("relay", "project"):
        assert mounts[name] == {}, f"{name} needs no volume: no keys, no event files"
        assert settings[name].master_key is None
        assert settings[name].keyvault_url is None
    assert mounts["serve"]["signing"] == "/signing"  # the log's signing key, apart from data keys
    assert settings["serve"].signing_key_path == Path("/signing/signing.key")
    assert set(compose["volumes"]) == {"events", "keys", "signing", "kafka", "scratch"}
    assert "container_name" not in services["project"], "projectors must scale"


def test_kafka_is_a_single_kraft_node_of_the_official_image(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert kafka["volumes"] == ["kafka:/var/lib/kafka/data"]
    assert env["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"
