"""Evidence files: exported from either store, checked offline, and forgeries refused."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from crypto.checkpoint import Checkpoint, NoteSigner
from crypto.merkle import root_of
from tests.test_audit_log import checkpoint, seed
from tests.test_cli import run_cli
from ticketlog.audit.evidence import export_evidence, verify_evidence
from ticketlog.audit.leaves import event_leaf_hash
from ticketlog.audit.signing import load_signer
from ticketlog.config import Settings
from ticketlog.runtime import Runtime


def exported(runtime: Runtime, path: Path) -> dict:  # type: ignore[type-arg]
    assert runtime.audit is not None
    verifier = load_signer(runtime.settings, may_create=False).verifier
    with path.open("wb") as f:
        export_evidence(runtime.audit, verifier, f)
    return dict(json.loads(path.read_text()))


def test_evidence_verifies_offline_and_names_what_was_done_to_it(
    runtime: Runtime, tmp_path: Path
) -> None:
    seed(runtime)
    checkpoint(runtime)
    runtime.desk.register_user("customer", "Zed", "zed@example.com")
    checkpoint(runtime)
    path = tmp_path / "evidence.json"
    doc = exported(runtime, path)
    assert [json.loads(json.dumps(p))["from"] for p in doc["consistency_proofs"]] == [10]
    key = load_signer(runtime.settings, may_create=False).verifier
    report, source = verify_evidence(path, key)
    assert report.ok, report.problems
    assert (report.events, source) == (11, "given")

    def check(changed: dict) -> tuple[str, int | None]:  # type: ignore[type-arg]
        forged = tmp_path / "forged.json"
        forged.write_text(json.dumps(changed))
        result, _ = verify_evidence(forged, key)
        assert not result.ok
        return result.problems[0].kind, result.problems[0].position

    dropped = {**doc, "events": doc["events"][:4] + doc["events"][5:]}
    assert check(dropped) == ("missing", 4)
    cut = {**doc, "events": doc["events"][:7]}
    assert check(cut)[0] == "truncated"

    # Someone rebuilds the whole file around an edit and signs it with their own key: the
    # auditor's copy of the public key refuses it; the key inside the file is never enough.
    impostor = NoteSigner.generate(runtime.settings.log_origin)
    events = [dict(e) for e in doc["events"]]
    events[3]["topic"] = "domain.user:User.Registered"
    leaves = [
        event_leaf_hash(
            e["notification_id"],
            e["originator_id"],
            e["originator_version"],
            e["topic"],
            base64.b64decode(e["state"]),
        )
        for e in events
    ]
    note = Checkpoint(runtime.settings.log_origin, 11, root_of(leaves)).sign(impostor)
    rebuilt = {
        **doc,
        "events": events,
        "checkpoints": [note],
        "consistency_proofs": [],
        "public_key": impostor.verifier.to_text(),
    }
    assert check(rebuilt)[0] == "signature"
    (tmp_path / "rebuilt.json").write_text(json.dumps(rebuilt))
    trusting, source = verify_evidence(tmp_path / "rebuilt.json", None)
    assert trusting.ok  # only as good as the key: which is why the report says where it came from
    assert source.startswith("evidence file")

    for garbage in ["[]", "{}", '{"format": "ticketlog-evidence/1"}', "not json"]:
        (tmp_path / "garbage.json").write_text(garbage)
        result, _ = verify_evidence(tmp_path / "garbage.json", key)
        assert not result.ok


def test_verify_runs_as_a_process_against_postgresql_too(
    runtime: Runtime, settings: Settings
) -> None:
    seed(runtime)
    checkpoint(runtime)
    env = {"TICKETLOG_DATABASE_URL": settings.database_url or ""}
    result = run_cli(settings.data_dir, "audit", "verify", "--json", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["tree_size"] == 10
