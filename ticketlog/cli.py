"""The `ticketlog` command: serve the API, manage tokens, rebuild views, run the demo."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sqlite3
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import psycopg
from eventsourcing.persistence import OperationalError

from api.tokens import Role
from crypto.checkpoint import NoteError
from crypto.errors import CryptoError
from projections.runner import ProjectionRunner
from ticketlog import logs, retention
from ticketlog.audit.cli import register as register_audit
from ticketlog.audit.signing import start_checkpoints
from ticketlog.bench import GROUPS
from ticketlog.config import ConfigError, Settings
from ticketlog.email_index import backfill_once, reindex
from ticketlog.progress import ProgressBar
from ticketlog.reconcile import read_journal, reconcile, write_journal
from ticketlog.runtime import Runtime
from ticketlog.soak import register as register_soak

log = logging.getLogger("ticketlog.cli")


def _print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def _catch_up(runtime: Runtime, label: str) -> int:
    bar = ProgressBar(label)
    applied = runtime.runner.catch_up(progress=bar)
    bar.finish()
    return applied


def _catch_up_notifications(runtime: Runtime) -> None:
    bar = ProgressBar("updating notifications")
    runtime.notifications.runner.catch_up(progress=bar)
    bar.finish()


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from api.app import create_app
    from ticketlog.background import Loop, ViewFollower
    from ticketlog.erasures import ErasureWatcher
    from ticketlog.sla_jobs import record_due_breaches
    from ticketlog.tls import PASSWORD_VARIABLE, checked_tls

    # Refused before opening anything.
    tls = checked_tls(args.ssl_certfile, args.ssl_keyfile, os.environ.get(PASSWORD_VARIABLE))
    backfill = ProgressBar("hashing events stored before the verifiable log")
    runtime = Runtime.open(settings, progress=backfill)
    backfill.finish()
    watcher = ErasureWatcher(runtime.desk.recorder, runtime.vault)
    watcher.start()  # other replicas' erasures reach this one's key cache at once
    scheduler = None
    checkpoints = None
    try:
        # Kafka-fed views are the projectors' job; inline ones are brought up to date here.
        applied = _catch_up(runtime, "updating views") if settings.views_feed == "inline" else 0
        if applied:
            log.info("views brought up to date: %d events applied", applied)
        again = reconcile(runtime)
        if again.destroyed_again:
            log.warning(
                "key vault reconciled with the log: %d erased key(s) were present (a restored "
                "backup?) and are destroyed again",
                len(again.destroyed_again),
            )
        _backfill_email_index(runtime)
        if settings.retention_file:
            retention.load_rules_file(runtime, settings.retention_file)
        if settings.retention_interval > 0:
            scheduler = retention.RetentionScheduler(runtime, settings.retention_interval)
            scheduler.start()
        _catch_up_notifications(runtime)
        orphans = runtime.attachments.delete_orphans()
        if orphans:
            log.info("deleted %d orphaned attachment blobs", len(orphans))
        from ticketlog.notify.service import start_background

        checkpoints = start_checkpoints(runtime)
        follower = ViewFollower(runtime.runner, runtime.desk.recorder, args.poll_interval)
        breaches = Loop("sla-breaches", lambda: record_due_breaches(runtime), args.sla_interval)
        app = create_app(runtime)
        app.state.follower = follower
        follower.start()
        breaches.start()
        stop_workers = start_background(runtime)
        try:
            # Uvicorn's records go to our handler (log_config=None); our middleware writes
            # the access line, without the query string uvicorn's own would show.
            uvicorn.run(
                app,
                host=args.host,
                port=args.port,
                log_level="info",
                log_config=None,
                access_log=False,
                ssl_certfile=tls.certfile,
                ssl_keyfile=tls.keyfile,
                ssl_keyfile_password=tls.password,
            )
        finally:
            stop_workers()
            breaches.stop()
            follower.stop()
    finally:
        if scheduler is not None:
            scheduler.stop()
        if checkpoints is not None:
            checkpoints.stop()
        watcher.stop()
        runtime.close()
    return 0


def cmd_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    runtime = Runtime.open(settings)
    try:
        principal, token = runtime.tokens.create(Role(args.role), args.name or args.role)
    finally:
        runtime.close()
    print(f"created {principal.role} token {principal.token_id} named {principal.name!r}")
    print("store it now; it is not shown again:")
    print(token)
    return 0


def cmd_keys_list(args: argparse.Namespace, settings: Settings) -> int:
    runtime = Runtime.open(settings)
    try:
        tokens = runtime.tokens.list()
    finally:
        runtime.close()
    if args.json:
        _print_json(tokens)
        return 0
    for t in tokens:
        state = f"revoked {t['revoked_at']}" if t["revoked_at"] else "active"
        print(f"{t['id']}  {t['role']:<10}  {t['name']:<24}  created {t['created_at']}  {state}")
    if not tokens:
        print("no tokens yet: `ticketlog keys create --role service`")
    return 0


def cmd_keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    runtime = Runtime.open(settings)
    try:
        revoked = runtime.tokens.revoke(args.token_id)
    finally:
        runtime.close()
    print(f"revoked {args.token_id}" if revoked else f"no active token {args.token_id}")
    return 0 if revoked else 1


def cmd_views_status(args: argparse.Namespace, settings: Settings) -> int:
    runtime = Runtime.open(settings)
    try:
        status = runtime.runner.status()
    finally:
        runtime.close()
    rows = [{"view": s.name, "position": s.position, "head": s.head, "lag": s.lag} for s in status]
    if args.json:
        _print_json(rows)
    else:
        for r in rows:
            print(f"{r['view']:<12} position {r['position']:,} of {r['head']:,}  lag {r['lag']:,}")
    return 0


def cmd_views_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    runtime = Runtime.open(settings)
    try:
        views = [v for v in runtime.runner.views if args.view in (None, v.name)]
        if not views:
            names = ", ".join(v.name for v in runtime.runner.views)
            print(f"ticketlog: no view named {args.view!r} (views: {names})", file=sys.stderr)
            return 2
        bar = ProgressBar("rebuilding views")
        applied = runtime.runner.rebuild(views, progress=bar)
        bar.finish()
    finally:
        runtime.close()
    view_names = [v.name for v in views]
    if args.json:
        _print_json({"views": view_names, "events_applied": applied})
    else:
        print(f"rebuilt {', '.join(view_names)} from {applied:,} events")
    return 0


def cmd_retention_run(args: argparse.Namespace, settings: Settings) -> int:
    runtime = Runtime.open(settings)
    try:
        if settings.retention_file:
            retention.load_rules_file(runtime, settings.retention_file)
        rules = runtime.desk.retention_rules()
        actions = retention.run(runtime, runtime.desk.clock(), dry_run=args.dry_run)
    finally:
        runtime.close()
    if args.json:
        _print_json({"dry_run": args.dry_run, "actions": retention.as_json(actions)})
        return 0
    if not rules:
        print(
            "no retention rules are in force (PUT /v1/retention/rules or TICKETLOG_RETENTION_FILE)"
        )
    verb = "would" if args.dry_run else "did"
    for a in actions:
        state = (
            "blocked by a legal hold"
            if a.blocked_by_legal_hold
            else ("done" if a.done else "planned")
        )
        print(f"{a.action:<21} {a.target_id}  {state:<24} {a.rule}: {a.reason}")
    done = sum(a.done for a in actions)
    held = sum(a.blocked_by_legal_hold for a in actions)
    print(
        f"{len(actions)} action(s); {verb} shred {len(actions) - held if args.dry_run else done}"
        f", {held} blocked by legal holds"
    )
    return 0


def cmd_keys_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    runtime = Runtime.open(settings)
    try:
        extra = read_journal(Path(args.journal)) if args.journal else None
        report = reconcile(runtime, extra)
    finally:
        runtime.close()
    if args.json:
        _print_json({"entries": report.entries, "destroyed_again": report.destroyed_again})
    else:
        print(
            f"checked {report.entries} erasure(s) against the key vault; "
            f"destroyed again: {len(report.destroyed_again)}"
        )
        for scope in report.destroyed_again:
            print(f"  {scope}")
    return 0


def _backfill_email_index(runtime: Runtime) -> None:
    """Index the addresses of users registered before the index existed (once per vault)."""
    bar = ProgressBar("indexing email addresses", unit="events")
    report = backfill_once(runtime.desk, bar)
    bar.finish()
    if report is not None and (report.added or report.duplicates):
        log.info("email index: %d address(es) indexed", report.added)
    if report is not None and report.duplicates:
        log.warning(
            "email index: %d user(s) share an address with an earlier user (kept as they are; "
            "see `ticketlog keys index-emails`)",
            len(report.duplicates),
        )


def cmd_keys_index_emails(args: argparse.Namespace, settings: Settings) -> int:
    runtime = Runtime.open(settings)
    try:
        bar = ProgressBar("indexing email addresses", unit="events")
        report = reindex(runtime.desk, bar)
        bar.finish()
        runtime.desk.emails.mark_backfilled()
    finally:
        runtime.close()
    if args.json:
        _print_json(report.to_dict())
        return 0
    print(
        f"{report.users} user(s) with an address; indexed now: {report.added}; "
        f"stale digests released: {report.released}; duplicates: {len(report.duplicates)}"
    )
    for dup in report.duplicates:
        print(f"  user {dup['user_id']} has the address of user {dup['held_by']}")
    return 0


def cmd_compliance_journal(args: argparse.Namespace, settings: Settings) -> int:
    runtime = Runtime.open(settings)
    try:
        count = write_journal(runtime, Path(args.out))
    finally:
        runtime.close()
    print(f"wrote {count} erasure(s) to {args.out}; keep it off-site, apart from backups")
    return 0


def cmd_verify_certificate(args: argparse.Namespace, settings: Settings) -> int:
    from ticketlog.audit.signing import local_verifier, read_verifier
    from ticketlog.certificates import verify_certificate

    verifier = read_verifier(args.public_key) if args.public_key else local_verifier(settings)
    if verifier is None:
        print("ticketlog: error: no public key: pass --public-key", file=sys.stderr)
        return 2
    check = verify_certificate(Path(args.file).read_text(), verifier)
    if args.json:
        _print_json(
            {
                "ok": check.ok,
                "subject_id": check.subject_id,
                "problems": check.problems,
                **check.facts,
            }
        )
    elif check.ok:
        print(f"OK: erasure of {check.subject_id} at {check.facts['erased_at']} is certified")
        print(f"  keys destroyed: {', '.join(check.facts['keys_destroyed'] or [])}")
        print(f"  log position {check.facts['log_position']}, included in the signed checkpoint")
        print(f"  residue scan: {check.facts['places_scanned']} places, no personal data found")
    else:
        print(f"FAILED: certificate of {check.subject_id or 'unknown subject'}")
        for problem in check.problems:
            print(f"  {problem}")
    return 0 if check.ok else 1


def cmd_sla_tick(args: argparse.Namespace, settings: Settings) -> int:
    from ticketlog.sla_jobs import record_due_breaches

    runtime = Runtime.open(settings)
    try:
        _catch_up(runtime, "updating views")
        recorded = record_due_breaches(runtime)
    finally:
        runtime.close()
    rows = [
        {
            "ticket_id": d.ticket_id,
            "metric": d.metric,
            "instance": d.instance,
            "due_at": d.due_at.isoformat(),
            "policy_id": d.policy_id,
            "policy_version": d.policy_version,
        }
        for d in recorded
    ]
    if args.json:
        _print_json({"breaches_recorded": rows})
        return 0
    for r in rows:
        print(f"{r['ticket_id']}  {r['metric']} #{r['instance']}  due {r['due_at']}")
    print(f"recorded {len(rows):,} breach{'es' if len(rows) != 1 else ''}")
    return 0


def cmd_attachments_clean(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import timedelta

    runtime = Runtime.open(settings)
    try:
        orphans = runtime.attachments.delete_orphans(timedelta(seconds=args.grace_seconds))
    finally:
        runtime.close()
    if args.json:
        _print_json({"deleted": orphans})
    else:
        print(f"deleted {len(orphans):,} orphaned attachment blobs")
        for blob_id in orphans:
            print(f"  {blob_id}")
    return 0


def cmd_notify_run(args: argparse.Namespace, settings: Settings) -> int:
    import signal
    import threading

    from ticketlog.notify.service import email_worker
    from ticketlog.notify.webhook_worker import WebhookWorker

    runtime = Runtime.open(settings)
    try:
        _catch_up(runtime, "updating views")
        _catch_up_notifications(runtime)
        email = email_worker(runtime)
        if email is None:
            print("email is off: set TICKETLOG_SMTP_URL to send it", file=sys.stderr)
        webhooks = WebhookWorker(runtime)
        try:
            if args.once:
                return _notify_once(args, email, webhooks)
            stop = threading.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
            print("delivering notifications; Ctrl-C to stop", file=sys.stderr)
            threads = [threading.Thread(target=webhooks.run_forever, args=(stop, args.interval))]
            if email is not None:
                threads.append(
                    threading.Thread(target=email.run_forever, args=(stop, args.interval))
                )
            for thread in threads:
                thread.start()
            while not stop.wait(0.5):
                pass
            for thread in threads:
                thread.join()
        finally:
            webhooks.close()
    finally:
        runtime.close()
    return 0


def cmd_notify_status(args: argparse.Namespace, settings: Settings) -> int:
    runtime = Runtime.open(settings)
    try:
        runtime.notifications.runner.catch_up()
        head = runtime.runner.head()
        status: dict[str, Any] = {
            "email": {
                "configured": settings.smtp_url is not None,
                "states": runtime.notifications.counts(),
            },
            "webhooks": [
                {
                    "id": w.id,
                    "url": w.url,
                    "events": w.events,
                    "position": w.position,
                    "lag": max(head - w.position, 0),
                    "states": runtime.webhooks.counts(w.id),
                }
                for w in runtime.webhooks.all()
            ],
        }
    finally:
        runtime.close()
    if args.json:
        _print_json(status)
        return 0
    email = status["email"]
    states = ", ".join(f"{n:,} {k}" for k, n in sorted(email["states"].items())) or "none yet"
    print(f"email ({'on' if email['configured'] else 'off'}): {states}")
    for w in status["webhooks"]:
        states = ", ".join(f"{n:,} {k}" for k, n in sorted(w["states"].items())) or "none yet"
        print(f"webhook {w['id']} {w['url']}  lag {w['lag']:,}  {states}")
    return 0


def _notify_once(args: argparse.Namespace, email: Any, webhooks: Any) -> int:
    result: dict[str, Any] = {"email": None}
    if email is not None:
        outcome = email.run_once()
        result["email"] = {
            k: getattr(outcome, k) for k in ("sent", "skipped", "retrying", "failed")
        }
    hooks = webhooks.run_once()
    result["webhooks"] = {k: getattr(hooks, k) for k in ("delivered", "retrying", "failed")}
    if args.json:
        _print_json(result)
    else:
        for channel, counts in result.items():
            text = "off" if counts is None else ", ".join(f"{n:,} {k}" for k, n in counts.items())
            print(f"{channel}: {text}")
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from ticketlog.demo import run_demo

    return run_demo(args.data_dir, as_json=args.json)


def _stop_on_signals() -> threading.Event:
    """SIGTERM or SIGINT finish the current batch, then stop."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def cmd_relay(args: argparse.Namespace, settings: Settings) -> int:
    from ticketlog.relay import Relay, RelayLedger, RelayLock, event_log

    settings.require_kafka()
    stop = _stop_on_signals()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    lock = RelayLock(settings)
    if not lock.wait(stop):
        return 0
    with event_log(settings) as (recorder, db):
        ledger = RelayLedger(db, settings.kafka_topic)
        relay = Relay(settings, recorder, ledger, batch_size=args.batch_size)
        status = relay.status()
        logging.getLogger("ticketlog.relay").info(
            "relay: publishing to %s at %s from #%d (%d waiting)",
            settings.kafka_topic,
            settings.kafka_bootstrap,
            status.position,
            status.lag,
        )
        try:
            published = relay.run(stop, once=args.once)
        finally:
            lock.release()
    print(f"relay: published {published:,} events", file=sys.stderr)
    return 0


def cmd_relay_status(args: argparse.Namespace, settings: Settings) -> int:
    from ticketlog.relay import Relay, RelayLedger, event_log

    with event_log(settings) as (recorder, db):
        status = Relay(settings, recorder, RelayLedger(db, settings.kafka_topic)).status()
    if args.json:
        _print_json(status.as_dict())
    else:
        print(
            f"relay to {status.topic}: position {status.position:,} of {status.head:,}"
            f"  lag {status.lag:,}  last advanced {status.updated_at or 'never'}"
        )
    return _lag_verdict(status.lag, args.max_lag)


def _lag_verdict(lag: int, max_lag: int | None) -> int:
    """Exit 1 when lag exceeds --max-lag, so health checks can use the status commands."""
    if max_lag is not None and lag > max_lag:
        print(f"ticketlog: lag {lag:,} exceeds {max_lag:,}", file=sys.stderr)
        return 1
    return 0


def cmd_project_status(args: argparse.Namespace, settings: Settings) -> int:
    from ticketlog.relay import projector_status

    status = projector_status(settings, args.source)
    rows = [{"view": s.name, "position": s.position, "head": s.head, "lag": s.lag} for s in status]
    if args.json:
        _print_json(rows)
    else:
        for r in rows:
            print(f"{r['view']:<12} position {r['position']:,} of {r['head']:,}  lag {r['lag']:,}")
    return _lag_verdict(max((s.lag for s in status), default=0), args.max_lag)


def cmd_project(args: argparse.Namespace, settings: Settings) -> int:
    from projections.kafka import KafkaProjector
    from projections.store import ViewStore
    from ticketlog.relay import event_log
    from ticketlog.runtime import all_views, open_views_db
    from ticketlog.stream import SealedReader

    stop = _stop_on_signals()
    store = ViewStore(open_views_db(settings), all_views())
    try:
        if args.source == "kafka":
            settings.require_kafka()
            projector = KafkaProjector(settings, store, batch_size=args.batch_size)
            applied = projector.run(stop, from_beginning=args.from_beginning)
        else:
            with event_log(settings) as (recorder, _):
                runner = ProjectionRunner(recorder, SealedReader(), store)
                applied = runner.catch_up()
                while not args.once and not stop.wait(0.2):
                    applied += runner.catch_up()
    finally:
        store.close()
    print(f"projector: applied {applied:,} events", file=sys.stderr)
    return 0


def cmd_tail(args: argparse.Namespace, settings: Settings) -> int:
    from ticketlog.runtime import open_vault
    from ticketlog.tail import Tail

    settings.require_kafka()
    stop = _stop_on_signals()
    vault = open_vault(settings)
    try:
        Tail(settings, vault).run(stop, from_beginning=args.from_beginning, as_json=args.json)
    finally:
        vault.close()
    return 0


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError("must be a positive whole number")
    return int(text)


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    from ticketlog.bench.suite import main as run_bench

    return run_bench(quick=args.quick, json_path=args.json, only=args.only)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ticketlog",
        description="Event-sourced support tickets with erasure by crypto-shredding.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--poll-interval",
        type=float,
        default=1.0,
        help="seconds between view polls (a fallback to LISTEN/NOTIFY on PostgreSQL)",
    )
    serve.add_argument(
        "--sla-interval", type=float, default=30.0, help="seconds between SLA breach checks"
    )
    serve.add_argument(
        "--log-format", choices=logs.LOG_FORMATS, help="text or json lines (TICKETLOG_LOG_FORMAT)"
    )
    serve.add_argument("--ssl-certfile", help="serve HTTPS with this PEM certificate (chain)")
    serve.add_argument(
        "--ssl-keyfile",
        help="the certificate's PEM private key (if encrypted, its passphrase in"
        " TICKETLOG_SSL_KEYFILE_PASSWORD)",
    )
    serve.set_defaults(func=cmd_serve)

    keys = sub.add_parser("keys", help="API tokens").add_subparsers(dest="keys", required=True)
    create = keys.add_parser("create", help="make a token; prints it as the last line")
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--name", help="who or what the token is for")
    create.set_defaults(func=cmd_keys_create)
    listing = keys.add_parser("list", help="list tokens (never their secrets)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_keys_list)
    revoke = keys.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("token_id")
    revoke.set_defaults(func=cmd_keys_revoke)

    views = sub.add_parser("views", help="read models").add_subparsers(dest="views", required=True)
    status = views.add_parser("status", help="each view's position and lag behind the log")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_views_status)
    rebuild = views.add_parser("rebuild", help="empty views and replay the whole log into them")
    rebuild.add_argument("--view", help="only this view")
    rebuild.add_argument("--json", action="store_true")
    rebuild.set_defaults(func=cmd_views_rebuild)

    reconcile_cmd = keys.add_parser(
        "reconcile", help="destroy again any key the log says was erased (after a restore)"
    )
    reconcile_cmd.add_argument("--journal", help="also apply an erasure journal kept off-site")
    reconcile_cmd.add_argument("--json", action="store_true")
    reconcile_cmd.set_defaults(func=cmd_keys_reconcile)

    index_cmd = keys.add_parser(
        "index-emails",
        help="fill the email blind index from the log; report addresses users share",
    )
    index_cmd.add_argument("--json", action="store_true")
    index_cmd.set_defaults(func=cmd_keys_index_emails)

    ret = sub.add_parser("retention", help="retention schedules")
    ret_sub = ret.add_subparsers(dest="retention", required=True)
    ret_run = ret_sub.add_parser("run", help="shred what the retention rules say is due")
    ret_run.add_argument("--dry-run", action="store_true", help="only list what would happen")
    ret_run.add_argument("--json", action="store_true")
    ret_run.set_defaults(func=cmd_retention_run)

    comp = sub.add_parser("compliance", help="compliance tools")
    comp_sub = comp.add_subparsers(dest="compliance", required=True)
    journal_cmd = comp_sub.add_parser("journal", help="export the erasure journal (no PII)")
    journal_cmd.add_argument("--out", required=True)
    journal_cmd.set_defaults(func=cmd_compliance_journal)

    verify_cert = comp_sub.add_parser(
        "verify-certificate", help="check a signed erasure certificate offline"
    )
    verify_cert.add_argument("file")
    verify_cert.add_argument("--public-key", help="the log's public key (text or file)")
    verify_cert.add_argument("--json", action="store_true")
    verify_cert.set_defaults(func=cmd_verify_certificate)
    sla = sub.add_parser("sla", help="service-level agreements").add_subparsers(
        dest="sla", required=True
    )
    tick = sla.add_parser("tick", help="record SlaBreached events for targets now overdue")
    tick.add_argument("--json", action="store_true")
    tick.set_defaults(func=cmd_sla_tick)
    attachments = sub.add_parser("attachments", help="attachment blobs").add_subparsers(
        dest="attachments", required=True
    )
    clean = attachments.add_parser(
        "clean", help="delete blobs no recorded event names (uploads cut short by a crash)"
    )
    clean.add_argument(
        "--grace-seconds",
        type=int,
        default=3600,
        help="only blobs older than this (an upload in progress has no event yet)",
    )
    clean.add_argument("--json", action="store_true")
    clean.set_defaults(func=cmd_attachments_clean)

    notify = sub.add_parser("notify", help="outbound notifications").add_subparsers(
        dest="notify", required=True
    )
    run = notify.add_parser("run", help="deliver email and webhooks until stopped")
    run.add_argument("--once", action="store_true", help="deliver what is due now, then exit")
    run.add_argument("--interval", type=float, default=1.0, help="seconds between passes")
    run.add_argument("--json", action="store_true")
    run.set_defaults(func=cmd_notify_run)
    nstatus = notify.add_parser("status", help="delivery states of email and each webhook")
    nstatus.add_argument("--json", action="store_true")
    nstatus.set_defaults(func=cmd_notify_status)

    relay = sub.add_parser("relay", help="publish the event log to Kafka (needs KAFKA_BOOTSTRAP)")
    relay.add_argument("--once", action="store_true", help="stop once the log's head is sent")
    relay.add_argument(
        "--batch-size", type=_positive, default=500, help="events per acknowledged send"
    )
    relay.set_defaults(func=cmd_relay)
    relay_sub = relay.add_subparsers(dest="relay")
    relay_status = relay_sub.add_parser("status", help="the relay's position and lag")
    relay_status.add_argument("--json", action="store_true")
    relay_status.add_argument("--max-lag", type=int, help="exit 1 if more events wait than this")
    relay_status.set_defaults(func=cmd_relay_status)

    project = sub.add_parser("project", help="run the views as a projector process")
    project.add_argument("--source", choices=["kafka", "log"], default="kafka")
    project.add_argument(
        "--from-beginning", action="store_true", help="kafka: re-read partitions from the start"
    )
    project.add_argument("--once", action="store_true", help="log: stop once caught up")
    project.add_argument(
        "--batch-size", type=_positive, default=500, help="kafka: events per view transaction"
    )
    project.set_defaults(func=cmd_project)
    project_status = project.add_subparsers(dest="project").add_parser(
        "status", help="each view's position and lag, from the databases (no keys needed)"
    )
    project_status.add_argument("--source", choices=["kafka", "log"], default="kafka")
    project_status.add_argument("--json", action="store_true")
    project_status.add_argument("--max-lag", type=int, help="exit 1 if any view lags more")
    project_status.set_defaults(func=cmd_project_status)

    tail = sub.add_parser("tail", help="print the topic's events, decoded (erased shown as such)")
    tail.add_argument("--from-beginning", action="store_true")
    tail.add_argument("--json", action="store_true")
    tail.set_defaults(func=cmd_tail)

    demo = sub.add_parser("demo", help="seed a small help desk, erase a customer, show the effect")
    demo.add_argument("--data-dir", help="keep the demo's data here (default: a temporary dir)")
    demo.add_argument("--json", action="store_true")
    demo.set_defaults(func=cmd_demo)

    bench = sub.add_parser("bench", help="benchmarks: each cost as a ratio to its baseline")
    bench.add_argument("--quick", action="store_true", help="small sizes, for CI")
    bench.add_argument("--json", metavar="FILE", help="also write the rows to FILE")
    bench.add_argument(
        "--only", metavar="ROWS", help=f"comma-separated groups of rows: {','.join(GROUPS)}"
    )
    bench.set_defaults(func=cmd_bench)

    register_audit(sub)
    register_soak(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        logs.configure(getattr(args, "log_format", None) or settings.log_format)
        code: int = args.func(args, settings)
    except (ConfigError, CryptoError, NoteError, ValueError) as e:
        return _refuse(str(e))
    except (OperationalError, sqlite3.OperationalError, psycopg.OperationalError) as e:
        # Unreachable, locked or unwritable storage: say which, in one line. These messages
        # name hosts, files and states, never stored values.
        reason = " ".join(str(e).split()) or type(e).__name__
        return _refuse(
            f"the database cannot be used: {reason}; check TICKETLOG_DATABASE_URL or the data "
            "directory, and that no other process holds it locked"
        )
    return code


def _refuse(message: str) -> int:
    if logs.is_json():
        log.error("error: %s", message)
    else:
        print(f"ticketlog: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
