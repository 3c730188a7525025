"""Wiring: backends, restarts, rebuilds, the PostgreSQL key vault, and no back doors."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import psycopg
import pytest

from crypto.errors import KeyVaultError
from crypto.master import MasterKey
from domain.personal import ERASED
from domain.ticket import Status
from domain.user import UserKind
from tests.conftest import drop_schema, postgres_hits
from ticketlog.config import PostgresURL, Settings
from ticketlog.runtime import Runtime


def _seed(rt: Runtime) -> dict[str, UUID]:
    desk = rt.desk
    customer = desk.register_user(UserKind.CUSTOMER, "Rosalind Vaultwright", "ros@vault.example")
    agent = desk.register_user(UserKind.AGENT, "Agent Kay", "kay@desk.example")
    ticket = desk.open_ticket(customer, "Vault subject", "Vault body")
    desk.add_comment(ticket, agent, "Vault reply", public=True)
    desk.assign(ticket, agent)
    desk.change_status(ticket, Status.SOLVED)
    rt.runner.catch_up()
    return {"customer": customer, "ticket": ticket}


def _snapshot_of_views(rt: Runtime, ids: dict[str, UUID]) -> tuple[object, ...]:
    return (rt.queries.user(str(ids["customer"])), rt.queries.ticket(str(ids["ticket"])))


def test_restart_and_rebuild_give_identical_views(settings: Settings) -> None:
    rt = Runtime.open(settings)
    ids = _seed(rt)
    before = _snapshot_of_views(rt, ids)
    rt.close()

    rt = Runtime.open(settings)
    try:
        assert rt.runner.catch_up() == 0
        assert _snapshot_of_views(rt, ids) == before
        assert rt.runner.rebuild() == 7  # events in the log, each applied to every view
        assert _snapshot_of_views(rt, ids) == before
        assert all(s.lag == 0 for s in rt.runner.status())
    finally:
        rt.close()


def test_a_crashed_batch_is_applied_again_exactly_once(settings: Settings) -> None:
    """A view write that fails mid-batch rolls back with its position: nothing half-applied."""
    rt = Runtime.open(settings)
    try:
        ids = _seed(rt)
        before = _snapshot_of_views(rt, ids)
        rt.desk.add_comment(ids["ticket"], ids["customer"], "reopen please", public=True)
        view = rt.runner.views[0]
        original = view.apply
        calls = 0

        def failing_apply(c: object, event: object) -> None:
            nonlocal calls
            calls += 1
            original(c, event)  # type: ignore[arg-type]
            if calls == 2:
                raise RuntimeError("power cut")

        view.apply = failing_apply  # type: ignore[method-assign]
        with pytest.raises(RuntimeError):
            rt.runner.catch_up()
        assert _snapshot_of_views(rt, ids) == before  # the half batch was rolled back
        view.apply = original  # type: ignore[method-assign]
        assert rt.runner.catch_up() == 2
        ticket = rt.queries.ticket(str(ids["ticket"]))
        assert ticket is not None
        assert len(ticket["comments"]) == 2
        assert ticket["status"] == "open"
    finally:
        rt.close()


def test_environment_cannot_switch_on_snapshots_or_the_aggregate_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both would keep plaintext personal data (in a table, or in memory after erasure)."""
    monkeypatch.setenv("IS_SNAPSHOTTING_ENABLED", "y")
    monkeypatch.setenv("AGGREGATE_CACHE_MAXSIZE", "1000")
    monkeypatch.setenv("TICKETLOG_IS_SNAPSHOTTING_ENABLED", "y")
    rt = Runtime.open(Settings(data_dir=tmp_path / "data"))
    try:
        assert rt.desk.snapshots is None
        assert rt.desk.repository.cache is None
        assert rt.desk.sealed.cache is None
    finally:
        rt.close()


@pytest.mark.postgres
def test_postgres_key_vault(tmp_path: Path, postgres_url: str, pg_schema: str) -> None:
    vault_schema = pg_schema + "_keys"
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"{postgres_url}?schema={pg_schema}",
        keyvault_url=f"{postgres_url}?schema={vault_schema}",
        master_key=MasterKey.new_text(),
    )
    try:
        rt = Runtime.open(settings)
        try:
            ids = _seed(rt)
            report = rt.desk.erase_subject(ids["customer"])
            assert f"ticket:{ids['ticket']}" in report.keys_destroyed_now
            events = rt.desk.history(ids["ticket"])
            assert events[0].subject is ERASED  # type: ignore[attr-defined]
        finally:
            rt.close()
        assert not (settings.data_dir / "keys.db").exists()
        url = PostgresURL.parse(postgres_url)
        with psycopg.connect(url.conninfo()) as conn:
            rows = conn.execute(
                f'SELECT scope, wrapped IS NULL FROM "{vault_schema}".data_keys ORDER BY scope'
            ).fetchall()
        destroyed = {scope for scope, gone in rows if gone}
        assert destroyed == {f"user:{ids['customer']}", f"ticket:{ids['ticket']}"}
        # The agent's keys (profile, and what they wrote) are untouched.
        assert {scope for scope, gone in rows if not gone} == {
            scope for scope, _ in rows if scope.split(":")[0] in ("user", "authored")
        } - destroyed
        vault_settings = Settings(
            data_dir=settings.data_dir, database_url=f"{postgres_url}?schema={vault_schema}"
        )
        assert postgres_hits(vault_settings, ["Rosalind", "Vault subject"]) == []

        # The wrong master key is refused, here as with SQLite.
        wrong = Settings(**{**settings.__dict__, "master_key": MasterKey.new_text()})
        with pytest.raises(KeyVaultError, match="master key does not open"):
            Runtime.open(wrong)
    finally:
        drop_schema(postgres_url, vault_schema)


def test_postgres_key_vault_needs_an_explicit_master_key(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data", keyvault_url="postgresql://postgres@127.0.0.1/test"
    )
    with pytest.raises(KeyVaultError, match="TICKETLOG_MASTER_KEY"):
        Runtime.open(settings)


@pytest.mark.postgres
def test_a_missing_vault_beside_a_postgres_log_is_refused(
    pg_settings: Settings,
) -> None:
    settings = pg_settings
    rt = Runtime.open(settings)
    _seed(rt)
    rt.close()
    settings.keys_path.unlink()
    with pytest.raises(KeyVaultError, match="missing or empty"):
        Runtime.open(settings)
    assert not settings.keys_path.exists()


def test_catch_up_unless_busy_leaves_new_events_to_the_pass_running(settings: Settings) -> None:
    rt = Runtime.open(settings)
    try:
        rt.desk.register_user(UserKind.CUSTOMER, "Busy Runner", "busy@runner.example")
        with rt.runner._lock:  # another caller's pass is running
            assert rt.runner.catch_up_unless_busy() == 0
        assert all(s.lag == 1 for s in rt.runner.status())
        assert rt.runner.catch_up_unless_busy() == 1
        assert all(s.lag == 0 for s in rt.runner.status())
    finally:
        rt.close()
