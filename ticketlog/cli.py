"""The `ticketlog` command: serve the API, manage tokens, rebuild views, run the demo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import orjson

from api.tokens import Role
from crypto.errors import CryptoError
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


def _catch_up_notifications(runtime: Runtime) -> None:
    bar = ProgressBar("updating notifications")
    runtime.notifications.runner.catch_up(progress=bar)
    bar.finish()


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from api.app import create_app

    runtime = Runtime.open(settings)
    try:
        applied = _catch_up(runtime, "updating views")
        if applied:
            print(f"views brought up to date: {applied:,} events applied", file=sys.stderr)
        _catch_up_notifications(runtime)
        orphans = runtime.attachments.delete_orphans()
        if orphans:
            print(f"deleted {len(orphans):,} orphaned attachment blobs", file=sys.stderr)
        from ticketlog.notify.service import start_background

        stop_workers = start_background(runtime)
        try:
            uvicorn.run(create_app(runtime), host=args.host, port=args.port, log_level="info")
        finally:
            stop_workers()
    finally:
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
