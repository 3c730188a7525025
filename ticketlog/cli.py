"""The `ticketlog` command: serve the API, manage tokens, rebuild views, run the demo."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

import orjson

from api.tokens import Role
from crypto.errors import CryptoError
from projections.runner import ProjectionRunner
from ticketlog.config import ConfigError, Settings
from ticketlog.progress import ProgressBar
from ticketlog.runtime import Runtime


def _print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def _catch_up(runtime: Runtime, label: str) -> int:
    bar = ProgressBar(label)
    applied = runtime.runner.catch_up(progress=bar)
    bar.finish()
    return applied


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from api.app import create_app
    from ticketlog.erasures import ErasureWatcher

    runtime = Runtime.open(settings)
    watcher = ErasureWatcher(runtime.desk.recorder, runtime.vault)
    watcher.start()  # other replicas' erasures reach this one's key cache at once
    try:
        # Kafka-fed views are the projectors' job; inline ones are brought up to date here.
        applied = _catch_up(runtime, "updating views") if settings.views_feed == "inline" else 0
        if applied:
            print(f"views brought up to date: {applied:,} events applied", file=sys.stderr)
        uvicorn.run(create_app(runtime), host=args.host, port=args.port, log_level="info")
    finally:
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


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from ticketlog.demo import run_demo

    return run_demo(args.data_dir, as_json=args.json)


def _stop_on_signals() -> threading.Event:
    """SIGTERM or SIGINT finish the current batch, then stop."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _log_to_stderr() -> None:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # our own lines say what matters


def cmd_relay(args: argparse.Namespace, settings: Settings) -> int:
    from ticketlog.relay import Relay, RelayLedger, RelayLock, event_log

    settings.require_kafka()
    _log_to_stderr()
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

    _log_to_stderr()
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
    _log_to_stderr()
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ticketlog",
        description="Event-sourced support tickets with erasure by crypto-shredding.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        code: int = args.func(args, settings)
    except (ConfigError, CryptoError) as e:
        print(f"ticketlog: error: {e}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
