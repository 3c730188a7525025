"""An auditor's workflow with the real `ticketlog audit` commands, as separate processes."""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from pathlib import Path

import httpx

from crypto.merkle import verify_inclusion
from domain.ticket import Status
from tests.test_cli import new_token, run_cli, serving
from ticketlog.config import Settings
from ticketlog.runtime import Runtime


def seed(data: Path) -> dict[str, str]:
    runtime = Runtime.open(Settings(data_dir=data))
    try:
        desk = runtime.desk
        ada = desk.register_user("customer", "Ada Lovelace", "ada@example.com")
        agent = desk.register_user("agent", "Grace Hopper", "grace@example.com")
        ticket = desk.open_ticket(ada, "Printer on fire", "It is really on fire")
        desk.assign(ticket, agent)
        desk.change_status(ticket, Status.PENDING)
    finally:
        runtime.close()
    return {"ada": str(ada), "ticket": str(ticket)}


def test_checkpoint_verify_proof_and_evidence_end_to_end(tmp_path: Path) -> None:
    data, auditor = tmp_path / "data", tmp_path / "auditor"
    auditor.mkdir()
    ids = seed(data)

    made = run_cli(data, "audit", "checkpoint")
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("ticketlog.local/log\n6\n")
    assert oct((data / "signing.key").stat().st_mode & 0o777) == "0o600"
    (auditor / "checkpoint-1.txt").write_text(made.stdout)
    key = run_cli(data, "audit", "public-key").stdout.strip()
    (auditor / "log.pub").write_text(key + "\n")
    assert "PRIVATE" not in key

    # The person is erased: keys go, the log stays, and the history still verifies.
    runtime = Runtime.open(Settings(data_dir=data))
    runtime.desk.erase_subject(__import__("uuid").UUID(ids["ada"]))
    runtime.close()
    assert run_cli(data, "audit", "checkpoint").returncode == 0

    pub = str(auditor / "log.pub")
    since = str(auditor / "checkpoint-1.txt")
    ok = run_cli(data, "audit", "verify", "--public-key", pub, "--since", since)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK: the log is complete and unaltered" in ok.stdout
    assert "erased: 6 events of 1 erased people" in ok.stdout
    report = json.loads(
        run_cli(data, "audit", "verify", "--public-key", pub, "--since", since, "--json").stdout
    )
    assert report["ok"] is True
    assert [c["matched"] for c in report["checkpoints"]] == [True, True]
    assert report["tree_size"] == 7
    last = auditor / "last.txt"
    saved = run_cli(data, "audit", "verify", "--public-key", pub, "--save-checkpoint", str(last))
    assert saved.returncode == 0
    assert last.read_text().startswith("ticketlog.local/log\n7\n")
    again = run_cli(data, "audit", "verify", "--public-key", pub, "--since", str(last))
    assert again.returncode == 0

    proof = json.loads(run_cli(data, "audit", "proof", "--event", "3", "--json").stdout)
    assert proof["verified"] is True
    assert proof["tree_size"] == 7
    assert proof["checkpoint"].startswith("ticketlog.local/log\n7\n")
    unb64 = base64.b64decode
    assert verify_inclusion(
        unb64(proof["leaf_hash"]),
        proof["leaf_index"],
        7,
        [unb64(h) for h in proof["proof"]],
        unb64(proof["root"]),
    )

    evidence = auditor / "evidence.json"
    exported = run_cli(data, "audit", "export-evidence", "--out", str(evidence))
    assert exported.returncode == 0, exported.stderr
    offline = run_cli(
        tmp_path / "elsewhere", "audit", "verify", "--evidence", str(evidence), "--public-key", pub
    )
    assert offline.returncode == 0, offline.stdout + offline.stderr
    # Evidence holds ciphertext only.
    for value in ("Ada Lovelace", "ada@example.com", "Printer on fire"):
        assert value.encode() not in evidence.read_bytes()

    # One byte of one event's state changed in the evidence: the file no longer verifies.
    doc = json.loads(evidence.read_text())
    state = bytearray(base64.b64decode(doc["events"][2]["state"]))
    state[5] ^= 1
    doc["events"][2]["state"] = base64.b64encode(bytes(state)).decode()
    evidence.write_text(json.dumps(doc))
    forged = run_cli(
        tmp_path / "elsewhere", "audit", "verify", "--evidence", str(evidence), "--public-key", pub
    )
    assert forged.returncode == 1
    assert "FAILED: modified" in forged.stdout

    # Now someone edits the store itself.
    with sqlite3.connect(data / "events.db") as conn:
        conn.execute("UPDATE stored_events SET state = state || ' ' WHERE rowid = 4")
    broken = run_cli(data, "audit", "verify", "--public-key", pub, "--save-checkpoint", str(last))
    assert broken.returncode == 1
    assert last.read_text().startswith("ticketlog.local/log\n7\n")  # kept: nothing held
    assert "FAILED: modified at position 3 (notification 4)" in broken.stdout
    refused = run_cli(data, "audit", "checkpoint")
    assert refused.returncode == 2
    assert "refusing to sign" in refused.stderr


def test_verify_without_a_public_key_or_a_store_says_what_to_do(tmp_path: Path) -> None:
    seed(tmp_path / "data")
    result = run_cli(tmp_path / "data", "audit", "verify")
    assert result.returncode == 2
    assert "--public-key" in result.stderr
    unsigned = run_cli(tmp_path / "data", "audit", "public-key")
    assert unsigned.returncode == 0
    result = run_cli(tmp_path / "data", "audit", "verify")
    assert result.returncode == 1
    assert "FAILED: unsigned" in result.stdout


def test_serve_signs_checkpoints_in_the_background(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"TICKETLOG_CHECKPOINT_EVERY": "1", "TICKETLOG_CHECKPOINT_INTERVAL": "3600"}
    service = {"Authorization": f"Bearer {new_token(data, 'service')}"}
    auditor = {"Authorization": f"Bearer {new_token(data, 'auditor')}"}
    with serving(data, env) as (base, _):
        r = httpx.post(
            f"{base}/v1/users",
            headers=service,
            json={"kind": "customer", "name": "Ann", "email": "ann@example.com"},
        )
        assert r.status_code == 201
        deadline = time.monotonic() + 30
        while True:
            latest = httpx.get(f"{base}/v1/audit/checkpoints/latest", headers=auditor)
            # The registration and the access record of the 201 that showed her data.
            if latest.status_code == 200 and latest.json()["tree_size"] >= 2:
                break
            assert time.monotonic() < deadline, latest.text
            time.sleep(0.2)
    pub = run_cli(data, "audit", "public-key").stdout.strip()
    result = run_cli(data, "audit", "verify", "--public-key", pub)
    assert result.returncode == 0, result.stdout


def test_replay_shows_tickets_as_recorded_at_a_past_time(tmp_path: Path) -> None:
    data = tmp_path / "data"
    runtime = Runtime.open(Settings(data_dir=data))
    try:
        ada = runtime.desk.register_user("customer", "Ada", "ada@example.com")
        agent = runtime.desk.register_user("agent", "Grace", "grace@example.com")
        ticket = runtime.desk.open_ticket(ada, "Printer", "Broken")
        middle = runtime.desk.sealed.get(ticket).modified_on
        runtime.desk.assign(ticket, agent)
    finally:
        runtime.close()
    at = middle.isoformat()
    one = run_cli(data, "audit", "replay", "--as-of", at, "--ticket", str(ticket))
    assert one.returncode == 0, one.stderr
    body = json.loads(one.stdout)
    assert (body["status"], body["assignee_id"], body["subject"]) == ("new", None, "Printer")
    every = json.loads(run_cli(data, "audit", "replay", "--as-of", at, "--json").stdout)
    assert every["by_status"] == {"new": 1}
    now = run_cli(data, "audit", "replay", "--as-of", "2999-01-01T00:00:00+00:00")
    assert "1 tickets at" in now.stdout
    assert "open" in now.stdout
    before = run_cli(data, "audit", "replay", "--as-of", "2000-01-01", "--ticket", str(ticket))
    assert before.returncode == 2
    assert "did not exist" in before.stderr


def test_a_data_dir_from_before_the_verifiable_log_is_upgraded_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seed(data)
    with sqlite3.connect(data / "events.db") as conn:
        conn.execute("DROP TABLE merkle_leaves")
        conn.execute("DROP TABLE checkpoints")
    pub = run_cli(data, "audit", "public-key").stdout.strip()
    early = run_cli(data, "audit", "verify", "--public-key", pub)
    assert early.returncode == 2
    assert "predates the verifiable log" in early.stderr

    upgraded = run_cli(data, "audit", "checkpoint")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "hashing events stored before the verifiable log" in upgraded.stderr
    assert "100% 6/6 events" in upgraded.stderr
    assert upgraded.stdout.startswith("ticketlog.local/log\n6\n")
    result = run_cli(data, "audit", "verify", "--public-key", pub)
    assert result.returncode == 0, result.stdout
