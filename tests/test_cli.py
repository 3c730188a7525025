"""The `ticketlog` command as an operator runs it: real processes, real ports, real files."""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

from crypto.master import MasterKey
from ticketlog.loopback import free_port, stop_process, wait_until_answering

CLI = [sys.executable, "-m", "ticketlog.cli"]


def run_cli(
    data_dir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        env={**os.environ, "TICKETLOG_DATA_DIR": str(data_dir), **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def new_token(data_dir: Path, role: str) -> str:
    result = run_cli(data_dir, "keys", "create", "--role", role, "--name", f"cli {role}")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@contextmanager
def serving(
    data_dir: Path,
    env: dict[str, str] | None = None,
    *,
    flags: tuple[str, ...] = (),
    log: Path | None = None,
    verify: ssl.SSLContext | bool = True,
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`ticketlog serve` on a free port, up and answering /healthz; stopped afterwards.

    Its output goes to a pipe, or to the file log (a pipe nobody reads could stall a busy
    server). With --ssl-certfile among the flags it is reached over https, trusting verify."""
    port = free_port()
    scheme = "https" if "--ssl-certfile" in flags else "http"
    with ExitStack() as files:
        out = files.enter_context(log.open("a")) if log else subprocess.PIPE
        proc = subprocess.Popen(
            [*CLI, "serve", "--port", str(port), *flags],
            env={**os.environ, "TICKETLOG_DATA_DIR": str(data_dir), **(env or {})},
            stdout=out,
            stderr=out,
            text=True,
        )

    def output() -> str:
        if log:
            return log.read_text()
        return proc.stderr.read() if proc.stderr else ""

    base = f"{scheme}://127.0.0.1:{port}"
    try:
        wait_until_answering(proc, f"{base}/healthz", why_exited=output, verify=verify)
        yield base, proc
    finally:
        stop_process(proc, timeout=30)  # as an operator would: SIGTERM, then SIGKILL


def test_keys_create_prints_the_token_last_and_stores_only_its_hash(tmp_path: Path) -> None:
    data = tmp_path / "data"
    token = new_token(data, "service")
    assert token.startswith("tl_")
    assert token.encode() not in (data / "auth.db").read_bytes()
    listing = run_cli(data, "keys", "list", "--json")
    assert [t["role"] for t in json.loads(listing.stdout)] == ["service"]
    assert token not in listing.stdout
    assert oct((data / "master.key").stat().st_mode & 0o777) == "0o600"


def test_serve_restart_and_rebuilt_views(tmp_path: Path) -> None:
    data = tmp_path / "data"
    auth = {"Authorization": f"Bearer {new_token(data, 'service')}"}
    with serving(data) as (base, _):
        user = httpx.post(
            f"{base}/v1/users",
            headers=auth,
            json={"kind": "customer", "name": "Restart Rita", "email": "rita@example.com"},
        )
        assert user.status_code == 201
        ticket = httpx.post(
            f"{base}/v1/tickets",
            headers=auth,
            json={"requester_id": user.json()["id"], "subject": "Hi", "body": "There"},
        )
        assert ticket.status_code == 201
        before = httpx.get(f"{base}/v1/tickets/{ticket.json()['id']}", headers=auth).json()

    with serving(data) as (base, _):
        after = httpx.get(f"{base}/v1/tickets/{ticket.json()['id']}", headers=auth).json()
        assert after == before

    # Views are disposable: delete them and the next start rebuilds them from the log.
    for path in data.glob("views.db*"):
        path.unlink()
    with serving(data) as (base, proc):
        rebuilt = httpx.get(f"{base}/v1/tickets/{ticket.json()['id']}", headers=auth).json()
        assert rebuilt == before
        health = httpx.get(f"{base}/healthz").json()
        assert health["views"][0]["lag"] == 0
        assert health["follower"]["mode"] == "poll"  # SQLite has no LISTEN/NOTIFY
        assert health["follower"]["passes"] >= 1
    assert proc.stderr is not None
    # Two commands and the access records of the reads that showed personal data.
    assert re.search(r"views brought up to date: \d+ events applied", proc.stderr.read())


def test_serve_refuses_a_wrong_master_key(tmp_path: Path) -> None:
    data = tmp_path / "data"
    new_token(data, "service")  # creates the vault with the generated key file
    result = run_cli(data, "serve", env={"TICKETLOG_MASTER_KEY": MasterKey.new_text()})
    assert result.returncode == 2
    assert "master key does not open this key vault" in result.stderr


def test_serve_refuses_a_missing_key_vault_beside_a_non_empty_log(tmp_path: Path) -> None:
    data = tmp_path / "data"
    token = new_token(data, "service")
    with serving(data) as (base, _):
        httpx.post(
            f"{base}/v1/users",
            headers={"Authorization": f"Bearer {token}"},
            json={"kind": "customer", "name": "Kim", "email": "kim@example.com"},
        )
    for path in data.glob("keys.db*"):
        path.unlink()
    result = run_cli(data, "serve")
    assert result.returncode == 2
    assert "key vault" in result.stderr
    assert "missing" in result.stderr
    assert not (data / "keys.db").exists(), "a fresh vault must not be created"


def test_views_rebuild_and_status(tmp_path: Path) -> None:
    data = tmp_path / "data"
    demo = run_cli(data, "demo", "--data-dir", str(data), "--json")
    assert demo.returncode == 0, demo.stderr
    rebuilt = run_cli(data, "views", "rebuild", "--json")
    assert rebuilt.returncode == 0, rebuilt.stderr
    applied = json.loads(rebuilt.stdout)["events_applied"]
    assert applied > 20
    status = json.loads(run_cli(data, "views", "status", "--json").stdout)
    assert {"view": "helpdesk", "position": applied, "head": applied, "lag": 0} in status
    assert {s["view"] for s in status} == {"helpdesk", "compliance", "sla", "attachments"}
    assert all(s["lag"] == 0 for s in status)
    human = run_cli(data, "views", "rebuild", "--view", "helpdesk")
    assert f"rebuilt helpdesk from {applied:,} events" in human.stdout
    only = json.loads(run_cli(data, "views", "rebuild", "--view", "compliance", "--json").stdout)
    assert only == {"views": ["compliance"], "events_applied": applied}
    assert run_cli(data, "views", "rebuild", "--view", "nope").returncode == 2


def test_demo_erases_a_customer_and_leaves_no_plaintext(tmp_path: Path) -> None:
    result = run_cli(tmp_path / "unused", "demo", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["profile_after"] == {
        "name": None,
        "email": None,
        "phone": None,
        "organization": None,
        "erased": True,
    }
    assert sum(report["plaintext_hits_on_disk"].values()) == 0
    before = {t["ticket"]: t for t in report["before"]}
    after = {t["ticket"]: t for t in report["after"]}
    assert before["T1"]["subject"]
    assert after["T1"]["subject"] is None
    assert after["T1"]["status"] == before["T1"]["status"] == "solved"
    assert after["T3"]["subject"] == before["T3"]["subject"]  # someone else's ticket
    human = run_cli(tmp_path / "unused", "demo")
    assert "0 matches" in human.stdout


def test_retention_reconcile_and_journal_commands(tmp_path: Path) -> None:
    data = tmp_path / "data"
    auth = {"Authorization": f"Bearer {new_token(data, 'admin')}"}
    with serving(data) as (base, _):
        org = httpx.post(f"{base}/v1/organizations", headers=auth, json={"name": "Ending Co"})
        person = httpx.post(
            f"{base}/v1/users",
            headers=auth,
            json={
                "kind": "customer",
                "name": "Leaving Lou",
                "email": "lou@example.com",
                "organization_id": org.json()["id"],
            },
        ).json()
        httpx.post(
            f"{base}/v1/organizations/{org.json()['id']}/contract-end", headers=auth, json={}
        )
    rules = tmp_path / "retention.json"
    rules.write_text(json.dumps({"rules": [{"kind": "erase_after_contract_end", "after_days": 0}]}))
    env = {"TICKETLOG_RETENTION_FILE": str(rules)}

    dry = run_cli(data, "retention", "run", "--dry-run", "--json", env=env)
    assert dry.returncode == 0, dry.stderr
    planned = json.loads(dry.stdout)["actions"]
    assert [(a["action"], a["target_id"], a["done"]) for a in planned] == [
        ("erase_person", person["id"], False)
    ]
    human = run_cli(data, "retention", "run", env=env)
    assert "erase_person" in human.stdout
    assert "did shred 1" in human.stdout

    journal = tmp_path / "journal.json"
    out = run_cli(data, "compliance", "journal", "--out", str(journal))
    assert "wrote 1 erasure(s)" in out.stdout
    entries = json.loads(journal.read_text())["entries"]
    assert [(e["kind"], e["target_id"], e["reason"]) for e in entries] == [
        ("erase", person["id"], "retention:erase_after_contract_end")
    ]
    assert "Lou" not in journal.read_text()

    reconciled = run_cli(data, "keys", "reconcile", "--journal", str(journal), "--json")
    assert json.loads(reconciled.stdout) == {"entries": 2, "destroyed_again": []}
    bad = run_cli(data, "retention", "run", env={"TICKETLOG_RETENTION_FILE": str(journal)})
    assert bad.returncode == 2
    assert "retention file" in bad.stderr
