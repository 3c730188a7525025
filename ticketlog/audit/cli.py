"""`ticketlog audit ...`: checkpoints, verification, proofs, evidence and point-in-time replay."""

from __future__ import annotations

import argparse
import base64
import sys
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson

from crypto.checkpoint import NoteError, NoteVerifier
from crypto.merkle import verify_inclusion
from ticketlog.audit.evidence import export_evidence, verify_evidence
from ticketlog.audit.signing import (
    Checkpointer,
    CheckpointRefused,
    load_signer,
    local_verifier,
    read_verifier,
)
from ticketlog.audit.store import AuditLog, LogGap
from ticketlog.audit.verify import LATEST, Report, parse_anchor, verify_log
from ticketlog.config import ConfigError, Settings
from ticketlog.progress import ProgressBar


def _print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _fail(message: str) -> int:
    print(f"ticketlog: {message}", file=sys.stderr)
    return 2


def cmd_checkpoint(args: argparse.Namespace, settings: Settings) -> int:
    signer = load_signer(settings, may_create=True)
    with AuditLog.open(settings) as log:
        bar = ProgressBar("hashing events stored before the verifiable log")
        log.backfill(bar)
        bar.finish()
        try:
            made = Checkpointer(log, signer, settings.log_origin).make()
        except (CheckpointRefused, NoteError) as e:
            return _fail(f"refusing to sign: {e}")
    if args.json:
        _print_json(
            {
                "size": made.checkpoint.size,
                "root": _b64(made.checkpoint.root),
                "new": made.new,
                "note": made.note,
            }
        )
    else:
        sys.stdout.write(made.note)
    return 0


def cmd_public_key(args: argparse.Namespace, settings: Settings) -> int:
    print(load_signer(settings, may_create=True).verifier.to_text())
    return 0


def _verifier(args: argparse.Namespace, settings: Settings) -> NoteVerifier | None:
    if args.public_key:
        return read_verifier(args.public_key)
    return local_verifier(settings)


def _read_note(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    verifier = _verifier(args, settings)
    bar = ProgressBar("verifying")
    if args.evidence:
        report, key_source = verify_evidence(Path(args.evidence), verifier, bar)
    else:
        if verifier is None:
            return _fail("no public key: pass --public-key (from `ticketlog audit public-key`)")
        key_source = "given" if args.public_key else "local signing key"
        anchors = []
        try:
            for label, path in (("--checkpoint", args.checkpoint), ("--since", args.since)):
                if path:
                    anchors.append(
                        parse_anchor(label, _read_note(path), verifier, settings.log_origin)
                    )
        except NoteError as e:
            return _fail(f"the checkpoint you gave does not verify: {e}")
        with AuditLog.open(settings) as log:
            if not log.has_leaves():
                return _fail(
                    "this store predates the verifiable log: start `ticketlog serve` or run "
                    "`ticketlog audit checkpoint` once to hash its events and sign them"
                )
            report = verify_log(log, verifier, settings.log_origin, anchors, bar)
    bar.finish()
    latest = next((a for a in report.anchors if a.label == LATEST and a.matched), None)
    if args.save_checkpoint and report.ok and latest is not None:
        # Written only after everything held: next time, `--since` this file.
        Path(args.save_checkpoint).write_text(latest.note)
    if args.json:
        _print_json({**report.to_dict(), "public_key": key_source})
    else:
        _print_report(report, key_source)
    return 0 if report.ok else 1


def _print_report(report: Report, key_source: str) -> None:
    print(f"re-hashed {report.events:,} events; tree size {report.tree_size:,}, root {report.root}")
    print(f"public key: {key_source}")
    for a in report.anchors:
        state = {True: "matches", False: "DOES NOT MATCH", None: "not reached"}[a.matched]
        print(f"checkpoint ({a.label}) of size {a.checkpoint.size:,}: {state}")
    if report.erased_events:
        print(
            f"erased: {report.erased_events:,} events of {report.erased_subjects:,} erased "
            "people verified as stored (ciphertext; their keys are destroyed)"
        )
    if report.unsigned_events and report.ok:
        print(f"not yet covered by a checkpoint: {report.unsigned_events:,} newest events")
    if report.ok:
        print("OK: the log is complete and unaltered")
        return
    first = report.problems[0]
    where = "" if first.position is None else f" at position {first.position}"
    nid = "" if first.notification_id is None else f" (notification {first.notification_id})"
    print(f"FAILED: {first.kind}{where}{nid}: {first.message}")
    for p in report.problems[1:10]:
        where = "" if p.position is None else f" position {p.position}"
        print(f"  also {p.kind}{where}: {p.message}")


def cmd_proof(args: argparse.Namespace, settings: Settings) -> int:
    with AuditLog.open(settings) as log:
        leaf = log.leaf_of_event(args.event)
        if leaf is None:
            return _fail(f"no event with notification id {args.event} in the log")
        latest = log.latest_checkpoint()
        size = args.tree_size or (latest.size if latest else log.tree_size())
        if not leaf.index < size <= log.tree_size():
            return _fail(f"event {args.event} is not in a tree of size {size}")
        try:
            proof = log.inclusion_proof(leaf.index, size)
            root = log.root(size)
        except LogGap as e:
            return _fail(f"{e}; run `ticketlog audit verify`")
        note = next((c.note for c in log.checkpoints() if c.size == size), None)
    ok = verify_inclusion(leaf.digest, leaf.index, size, proof, root)
    body = {
        "notification_id": args.event,
        "leaf_index": leaf.index,
        "leaf_hash": _b64(leaf.digest),
        "tree_size": size,
        "root": _b64(root),
        "proof": [_b64(h) for h in proof],
        "verified": ok,
        "checkpoint": note,
    }
    if args.json:
        _print_json(body)
    else:
        print(f"event {args.event} is leaf {leaf.index} of the tree of size {size:,}")
        print(f"leaf hash {body['leaf_hash']}\nroot      {body['root']}")
        for i, h in enumerate(body["proof"]):
            print(f"  proof[{i}] {h}")
        print("the proof verifies" if ok else "THE PROOF DOES NOT VERIFY")
        print("signed checkpoint:\n" + note if note else "no checkpoint signs this tree size")
    return 0 if ok else 1


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    verifier = load_signer(settings, may_create=False).verifier
    out = Path(args.out)
    bar = ProgressBar("exporting evidence")
    with AuditLog.open(settings) as log, out.open("wb") as f:
        try:
            counts = export_evidence(log, verifier, f, bar)
        except (NoteError, LogGap) as e:
            return _fail(str(e))
    bar.finish()
    if args.json:
        _print_json({"out": str(out), **counts})
    else:
        print(
            f"wrote {out}: {counts['events']:,} events, {counts['checkpoints']:,} checkpoints, "
            f"{counts['proofs']:,} consistency proofs; check it with "
            f"`ticketlog audit verify --evidence {out} --public-key KEY`"
        )
    return 0


def _when(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from api.present import Opener
    from ticketlog.audit.replay import (
        PointInTime,
        all_tickets_as_of,
        status_counts,
        summary_row,
        ticket_as_of,
        ticket_row,
    )
    from ticketlog.runtime import Runtime

    when = PointInTime.of(args.as_of or args.as_of_occurred, business=bool(args.as_of_occurred))
    runtime = Runtime.open(settings)
    try:
        if args.ticket:
            ticket = ticket_as_of(runtime.desk, args.ticket, when)
            if ticket is None:
                return _fail(f"ticket {args.ticket} did not exist at {when.at.isoformat()}")
            body: Any = orjson.loads(
                orjson.dumps(
                    Opener(runtime.vault, may_see_restricted=True).ticket(ticket_row(ticket)),
                    default=str,
                )
            )
        else:
            tickets = all_tickets_as_of(runtime.desk, when)
            body = {
                "as_of": when.at.isoformat(),
                "by": "occurred_at" if when.business else "recorded",
                "tickets": len(tickets),
                "by_status": status_counts(tickets),
                "items": [summary_row(t) for t in tickets],
            }
    finally:
        runtime.close()
    if args.json or args.ticket:
        _print_json(body)
    else:
        print(f"{body['tickets']:,} tickets at {body['as_of']} ({body['by']} time)")
        for status, count in sorted(body["by_status"].items()):
            print(f"  {status:<8} {count:,}")
    return 0


def register(sub: Any) -> None:
    audit = sub.add_parser("audit", help="the verifiable log: checkpoints, verify, proofs")
    cmds = audit.add_subparsers(dest="audit", required=True)

    checkpoint = cmds.add_parser("checkpoint", help="sign a checkpoint of the log now")
    checkpoint.add_argument("--json", action="store_true")
    checkpoint.set_defaults(func=cmd_checkpoint)

    public_key = cmds.add_parser("public-key", help="print the log's public (verifier) key")
    public_key.set_defaults(func=cmd_public_key)

    verify = cmds.add_parser("verify", help="re-hash every event and check the signed tree")
    verify.add_argument("--public-key", help="verifier key text or a file holding it")
    verify.add_argument("--checkpoint", help="a signed checkpoint the log must match")
    verify.add_argument("--since", help="your earlier checkpoint the log must still extend")
    verify.add_argument("--evidence", help="check an evidence file offline instead of the store")
    verify.add_argument(
        "--save-checkpoint", help="when all holds, write the verified latest checkpoint here"
    )
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(func=cmd_verify)

    proof = cmds.add_parser("proof", help="inclusion proof of one event")
    proof.add_argument("--event", type=int, required=True, help="notification id")
    proof.add_argument("--tree-size", type=int, help="default: the latest checkpoint's size")
    proof.add_argument("--json", action="store_true")
    proof.set_defaults(func=cmd_proof)

    export = cmds.add_parser("export-evidence", help="events, checkpoints, proofs in one file")
    export.add_argument("--out", required=True)
    export.add_argument("--json", action="store_true")
    export.set_defaults(func=cmd_export)

    replay = cmds.add_parser("replay", help="tickets as they stood at a past time")
    when = replay.add_mutually_exclusive_group(required=True)
    when.add_argument("--as-of", type=_when, help="recorded time (ISO 8601)")
    when.add_argument("--as-of-occurred", type=_when, help="business time (ISO 8601)")
    replay.add_argument("--ticket", type=UUID, help="one ticket, with its content")
    replay.add_argument("--json", action="store_true")
    replay.set_defaults(func=cmd_replay)
