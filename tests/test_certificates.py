"""Proof of erasure: signed certificates with residue scans and an inclusion proof."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from api.tokens import Role
from tests.conftest import Api
from ticketlog.audit.signing import local_verifier
from ticketlog.certificates import verify_certificate


def _erase(api: Api, user_id: object) -> dict[str, object]:
    r = api.post(f"/v1/subjects/{user_id}/erase", role=Role.COMPLIANCE)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_each_erasure_returns_a_signed_certificate(api: Api) -> None:
    person = api.user(name="Certa Fied", email="certa@cert.example", phone="+1 555 0147")
    tid = api.ticket(person["id"], subject="Certify my erasure", body="A body to find")["id"]
    api.post(
        f"/v1/tickets/{tid}/comments",
        {"author_id": person["id"], "body": "A comment to find", "public": True},
    )
    erasure = _erase(api, person["id"])
    note = str(erasure["certificate"])
    assert note.startswith("ticketlog erasure certificate v1\n")
    assert "Certa" not in note
    assert "find" not in note
    assert '"email_digests_searched":1' in note  # the after scan also sought their digest

    verifier = local_verifier(api.runtime.settings)
    assert verifier is not None
    check = verify_certificate(note, verifier)
    assert check.ok, check.problems
    assert check.subject_id == person["id"]
    assert sorted(check.facts["keys_destroyed"]) == sorted(erasure["keys_destroyed"])
    assert check.facts["places_scanned"] >= 4  # events, keys, views, auth (+ tables on PG)

    stored = api.get(f"/v1/subjects/{person['id']}/erasure-certificate", role=Role.COMPLIANCE)
    assert stored.json()["certificate"] == note
    assert _erase(api, person["id"])["certificate"] == note  # repeated: the same certificate
    assert (
        api.get(f"/v1/subjects/{person['id']}/erasure-certificate", role=Role.SERVICE).status_code
        == 403
    )

    forged = note.replace('"log_position":', '"log_position":1', 1)
    assert not verify_certificate(forged, verifier).ok


def test_the_residue_scan_reports_a_planted_plaintext_copy(api: Api, tmp_path: Path) -> None:
    person = api.user(name="Leaky Lorraine", email="lorraine@leak.example")
    # Someone copied her record in plain text into the data dir (a debug dump, say).
    planted = api.runtime.settings.data_dir / "debug-dump.txt"
    planted.write_text("customer: lorraine@leak.example\n")
    note = str(_erase(api, person["id"])["certificate"])
    verifier = local_verifier(api.runtime.settings)
    assert verifier is not None
    check = verify_certificate(note, verifier)
    assert not check.ok
    assert any(
        "before erasure found personal data in debug-dump.txt (1)" in p for p in check.problems
    )
    assert any(
        "after erasure found personal data in debug-dump.txt (1)" in p for p in check.problems
    )

    cert = tmp_path / "certificate.txt"
    cert.write_text(note)
    env = {**os.environ, "TICKETLOG_DATA_DIR": str(api.runtime.settings.data_dir)}
    result = subprocess.run(
        [sys.executable, "-m", "ticketlog.cli", "compliance", "verify-certificate", str(cert)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "debug-dump.txt" in result.stdout

    planted.unlink()
    clean = api.user(name="Clean Clara", email="clara@clean.example")
    cert.write_text(str(_erase(api, clean["id"])["certificate"]))
    public_key = subprocess.run(
        [sys.executable, "-m", "ticketlog.cli", "audit", "public-key"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ticketlog.cli",
            "compliance",
            "verify-certificate",
            str(cert),
            "--public-key",
            public_key,
        ],
        env={**os.environ, "TICKETLOG_DATA_DIR": str(tmp_path / "elsewhere")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is certified" in result.stdout
