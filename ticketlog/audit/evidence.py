"""One file an auditor verifies offline: every stored event, the signed checkpoints, the
consistency proofs between them, and the public key. Nothing in it can be read without keys:
personal fields are the ciphertext the store holds."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import IO, Any
from uuid import UUID

import orjson

from crypto.checkpoint import Checkpoint, NoteError, NoteVerifier, open_checkpoint
from crypto.merkle import RootBuilder, verify_consistency
from ticketlog.audit.leaves import event_leaf_hash
from ticketlog.audit.store import AuditLog, Progress
from ticketlog.audit.verify import (
    INSERTED,
    MISSING,
    MODIFIED,
    SIGNATURE,
    TRUNCATED,
    UNSIGNED,
    Anchor,
    Problem,
    Report,
)

FORMAT = "ticketlog-evidence/1"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def export_evidence(
    log: AuditLog, verifier: NoteVerifier, out: IO[bytes], progress: Progress | None = None
) -> dict[str, int]:
    """Writes the evidence as JSON, streaming the events: memory stays bounded."""
    checkpoints = log.checkpoints()
    if not checkpoints:
        raise NoteError("the log has no signed checkpoint yet: run `ticketlog audit checkpoint`")
    size = checkpoints[-1].size
    # Every checkpoint's root is re-derived from the events when the file is checked, which
    # already proves each is a prefix of the next; one consistency proof, oldest to newest,
    # lets a reader who keeps only checkpoints check that too. (One proof reads the log once;
    # a proof per pair would read it once per checkpoint.)
    oldest = checkpoints[0]
    proofs = [
        {
            "from": oldest.size,
            "to": size,
            "proof": [_b64(h) for h in log.consistency_proof(oldest.size, size)],
        }
    ]
    head = {
        "format": FORMAT,
        "public_key": verifier.to_text(),
        "tree_size": size,
        "checkpoints": [c.note for c in checkpoints],
        "consistency_proofs": proofs,
    }
    out.write(orjson.dumps(head)[:-1] + b',"events":[')
    rows = log.events()
    for leaf in log.leaves(0, size):
        row = next(rows, None)
        while row is not None and row.notification_id < leaf.notification_id:
            row = next(rows, None)  # a row with no leaf is not in the signed log
        if row is None or row.notification_id != leaf.notification_id:
            raise NoteError(f"the event at position {leaf.index} is gone; run `audit verify`")
        entry = {
            "position": leaf.index,
            "notification_id": row.notification_id,
            "originator_id": str(row.originator_id),
            "originator_version": row.version,
            "topic": row.topic,
            "state": _b64(row.state),
        }
        out.write((b"," if leaf.index else b"") + orjson.dumps(entry))
        if progress is not None and ((leaf.index + 1) % 1000 == 0 or leaf.index + 1 == size):
            progress(leaf.index + 1, size)
    out.write(b"]}\n")
    return {"events": size, "checkpoints": len(checkpoints), "proofs": len(proofs)}


def verify_evidence(
    path: Path, trusted: NoteVerifier | None, progress: Progress | None = None
) -> tuple[Report, str]:
    """Checks an evidence file; returns the report and where the public key came from."""
    report = Report()
    try:
        data = orjson.loads(path.read_bytes())
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError("not a ticketlog evidence file")
        key_source = "given" if trusted else "evidence file (compare it with your own copy)"
        verifier = trusted or NoteVerifier.from_text(str(data["public_key"]))
        _check(data, verifier, report, progress)
    except (ValueError, KeyError, TypeError, binascii.Error, orjson.JSONDecodeError) as e:
        report.add(Problem(MODIFIED, f"the evidence file is malformed: {e}"))
        return report, "unknown"
    except NoteError as e:
        report.add(Problem(SIGNATURE, str(e)))
        return report, "unknown"
    return report, key_source


def _check(
    data: dict[str, Any], verifier: NoteVerifier, report: Report, progress: Progress | None
) -> None:
    notes = data["checkpoints"]
    if not notes:
        report.add(Problem(UNSIGNED, "the evidence holds no checkpoint"))
        return
    checkpoints: list[Checkpoint] = []
    for i, note in enumerate(notes):
        origin = checkpoints[0].origin if checkpoints else None
        checkpoints.append(open_checkpoint(note, verifier, origin))
        report.anchors.append(Anchor(f"evidence checkpoint {i + 1}", checkpoints[-1]))
    by_size = {(c.size): c for c in checkpoints}
    for proof in data["consistency_proofs"]:
        first, second = by_size[int(proof["from"])], by_size[int(proof["to"])]
        hashes = [base64.b64decode(h, validate=True) for h in proof["proof"]]
        if not verify_consistency(first.size, second.size, first.root, second.root, hashes):
            report.add(Problem(MODIFIED, f"checkpoint {second.size} does not extend {first.size}"))
    events = data["events"]
    builder = RootBuilder()
    pending = sorted(report.anchors, key=lambda a: a.checkpoint.size)
    last_id = 0
    for entry in events:
        position = builder.size
        while pending and pending[0].checkpoint.size == position:
            _match(pending.pop(0), builder, report)
        if int(entry["position"]) != position:
            kind = MISSING if int(entry["position"]) > position else INSERTED
            report.add(Problem(kind, "positions are not contiguous", position))
        nid = int(entry["notification_id"])
        if nid <= last_id:
            report.add(Problem(MODIFIED, "notification ids go backwards", position, nid))
        last_id = nid
        builder.add(
            event_leaf_hash(
                nid,
                UUID(entry["originator_id"]),
                int(entry["originator_version"]),
                str(entry["topic"]),
                base64.b64decode(entry["state"], validate=True),
            )
        )
        report.events += 1
        if progress is not None and (report.events % 1000 == 0 or report.events == len(events)):
            progress(report.events, len(events))
    for anchor in pending:
        if anchor.checkpoint.size == builder.size:
            _match(anchor, builder, report)
        else:
            anchor.matched = False
            report.add(Problem(TRUNCATED, "the evidence ends before its checkpoint", builder.size))
    report.tree_size = builder.size
    report.root = _b64(builder.root())


def _match(anchor: Anchor, builder: RootBuilder, report: Report) -> None:
    anchor.matched = builder.root() == anchor.checkpoint.root
    if not anchor.matched:
        report.add(
            Problem(
                MODIFIED, f"the first {anchor.checkpoint.size} events do not match their checkpoint"
            )
        )
