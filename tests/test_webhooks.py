"""Webhooks against a real HTTP receiver on loopback: signatures, retries, replay, crashes."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from api.tokens import Role
from tests.conftest import Api, postgres_hits, raw_hits
from tests.test_cli import CLI
from ticketlog.config import Settings
from ticketlog.notify.webhook_worker import WebhookWorker
from ticketlog.notify.webhooks import SIGNATURE_HEADER, sign, verify
from ticketlog.notify.worker import LEASE
from ticketlog.runtime import Runtime

SECRET = "whsec_" + "k" * 32


class Receiver:
    """A webhook endpoint: checks signatures, keeps every request, drops repeated delivery ids."""

    def __init__(self, secret: str = SECRET) -> None:
        self.secret = secret
        self.requests: list[dict[str, Any]] = []
        self.processed: dict[str, dict[str, Any]] = {}
        self.fail_next = 0
        self.hold_request: int | None = None
        self.holding = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = receiver.receive(body, dict(self.headers))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def receive(self, body: bytes, headers: dict[str, str]) -> int:
        with self.lock:
            valid = verify(self.secret, body, headers.get(SIGNATURE_HEADER, ""))
            payload = json.loads(body)
            self.requests.append({"valid": valid, "payload": payload, "headers": headers})
            number = len(self.requests)
            if self.fail_next:
                self.fail_next -= 1
                return 500
        if number == self.hold_request:
            self.holding.set()
            self.release.wait(60)
        if not valid:
            return 400
        with self.lock:
            # Receivers deduplicate on the delivery id: a copy sent after a crash is dropped.
            self.processed.setdefault(headers["Ticketlog-Delivery"], payload)
        return 200

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def subscribe(api: Api, url: str, events: list[str], **extra: object) -> dict[str, Any]:
    body = {"url": url, "events": events, "secret": SECRET, **extra}
    r = api.post("/v1/webhooks", body, role=Role.ADMIN)
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_signature_checks_the_body_the_secret_and_the_time() -> None:
    body = b'{"a":1}'
    header = sign(SECRET, body)
    assert verify(SECRET, body, header)
    assert not verify(SECRET, b'{"a":2}', header)
    assert not verify("another secret value", body, header)
    assert not verify(SECRET, body, sign(SECRET, body, at=int(time.time()) - 3600))
    assert not verify(SECRET, body, "garbage")


def test_deliveries_are_signed_and_carry_no_personal_data_by_default(
    api: Api, receiver: Receiver
) -> None:
    hook = subscribe(api, receiver.url, ["ticket.opened", "ticket.comment_added"])
    assert "secret" not in hook
    requester = api.user(name="Webhook Wendy")
    tid = api.ticket(requester["id"], subject="Secret subject", body="Secret body")["id"]
    api.post(f"/v1/tickets/{tid}/comments", {"author_id": requester["id"], "body": "Secret reply"})
    worker = WebhookWorker(api.runtime)
    try:
        outcome = worker.run_once()
    finally:
        worker.close()
    assert outcome.delivered == 2
    assert [r["valid"] for r in receiver.requests] == [True, True]
    opened, comment = (r["payload"] for r in receiver.requests)
    assert opened["type"] == "ticket.opened"
    assert opened["aggregate_id"] == tid
    assert opened["data"]["requester_id"] == requester["id"]
    assert opened["data"]["priority"] == "normal"
    assert set(opened["data"]) == {"requester_id", "priority", "tags"}
    assert "body" not in opened["data"]
    assert comment["type"] == "ticket.comment_added"
    assert comment["data"] == {"author_id": requester["id"], "public": True}
    assert comment["position"] > opened["position"]
    raw = json.dumps([r["payload"] for r in receiver.requests])
    assert "Secret" not in raw
    assert "Wendy" not in raw
    assert receiver.requests[0]["headers"]["Ticketlog-Event"] == "ticket.opened"


def test_personal_data_subscriptions_get_opened_fields_and_are_access_logged(
    api: Api, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    hook = subscribe(api, receiver.url, ["ticket.opened"], include_personal_data=True)
    requester = api.user()
    tid = api.ticket(requester["id"], subject="Open subject", body="Open body")["id"]
    worker = WebhookWorker(api.runtime)
    try:
        with caplog.at_level(logging.INFO, logger="ticketlog.access"):
            assert worker.run_once().delivered == 1
        payload = receiver.requests[0]["payload"]
        assert payload["personal_data"] is True
        assert payload["data"]["subject"] == "Open subject"
        assert payload["erased_fields"] == []
        [record] = [r for r in caplog.records if r.name == "ticketlog.access"]
        assert payload["delivery_id"] in record.getMessage()
        assert "Open subject" not in record.getMessage()
        # ...and in the person's own access log, which their export shows them.
        export = api.get(f"/v1/subjects/{requester['id']}/export", role=Role.COMPLIANCE).json()
        assert (f"webhook {hook['id']}", "webhook", "webhook delivery ticket.opened") in [
            (a["token_name"], a["role"], a["endpoint"]) for a in export["access_log"]
        ]

        # After erasure a replay carries nulls, and says which fields were erased.
        api.post(f"/v1/subjects/{requester['id']}/erase", role=Role.COMPLIANCE)
        r = api.post(f"/v1/webhooks/{hook['id']}/replay?from=1", role=Role.ADMIN)
        assert r.status_code == 200, r.text
        assert r.json()["queued"] == 1
        assert worker.run_once().delivered == 1
    finally:
        worker.close()
    replayed = receiver.requests[1]["payload"]
    assert replayed["replay"] is True
    assert replayed["aggregate_id"] == tid
    assert replayed["data"]["subject"] is None
    assert replayed["erased_fields"] == ["body", "subject"]


def test_a_failed_delivery_is_retried_with_backoff_and_every_attempt_logged(
    api: Api, receiver: Receiver
) -> None:
    hook = subscribe(api, receiver.url, ["user.registered"])
    api.user()
    clock = Clock()
    worker = WebhookWorker(api.runtime, clock=clock)
    receiver.fail_next = 1
    try:
        assert worker.run_once().retrying == 1
        assert worker.run_once().delivered == 0  # backing off
        clock.now += timedelta(seconds=11)
        assert worker.run_once().delivered == 1
    finally:
        worker.close()
    ids = [r["headers"]["Ticketlog-Delivery"] for r in receiver.requests]
    assert len(ids) == 2
    assert ids[0] == ids[1]
    r = api.get(f"/v1/webhooks/{hook['id']}/deliveries", role=Role.ADMIN)
    assert r.status_code == 200
    [delivery] = r.json()["items"]
    assert delivery["state"] == "delivered"
    assert [a["status"] for a in delivery["log"]] == [500, 200]


def test_replay_from_a_position_delivers_those_events_again(api: Api, receiver: Receiver) -> None:
    hook = subscribe(api, receiver.url, ["*"])
    users = [api.user() for _ in range(3)]
    worker = WebhookWorker(api.runtime)
    try:
        assert worker.run_once().delivered == 3
        positions = [r["payload"]["position"] for r in receiver.requests]
        r = api.post(f"/v1/webhooks/{hook['id']}/replay?from={positions[1]}", role=Role.ADMIN)
        assert r.json() == {"webhook_id": hook["id"], "from": positions[1], "queued": 2}
        assert worker.run_once().delivered == 2
    finally:
        worker.close()
    again = [r["payload"] for r in receiver.requests[3:]]
    assert [p["position"] for p in again] == positions[1:]
    assert [p["aggregate_id"] for p in again] == [u["id"] for u in users[1:]]
    assert all(p["replay"] for p in again)
    first_ids = {r["payload"]["delivery_id"] for r in receiver.requests[:3]}
    assert not first_ids & {p["delivery_id"] for p in again}


def test_bad_subscriptions_are_json_4xx(api: Api, receiver: Receiver) -> None:
    good = {"url": receiver.url, "events": ["*"], "secret": SECRET}
    for bad in (
        {**good, "url": "ftp://127.0.0.1/hook"},
        {**good, "url": "file:///etc/passwd"},
        {**good, "events": ["ticket.exploded"]},
        {**good, "events": []},
        {**good, "secret": "short"},
        {**good, "extra": 1},
    ):
        r = api.post("/v1/webhooks", bad, role=Role.ADMIN)
        assert r.status_code == 422, bad
        assert r.json()["error"]["code"] == "invalid_input"
    assert api.post("/v1/webhooks", good, role=Role.SERVICE).status_code == 403
    hook = subscribe(api, receiver.url, ["*"])
    assert api.post(f"/v1/webhooks/{hook['id']}/replay", role=Role.ADMIN).status_code == 422
    r = api.post(f"/v1/webhooks/{hook['id']}/replay?from=0", role=Role.ADMIN)
    assert r.status_code == 422
    assert (
        api.post(f"/v1/webhooks/{uuid.uuid4()}/replay?from=1", role=Role.ADMIN).status_code == 404
    )
    assert [h["id"] for h in api.get("/v1/webhooks", role=Role.ADMIN).json()] == [hook["id"]]


def test_deleting_a_webhook_stops_deliveries_and_shreds_its_secret(
    api: Api, receiver: Receiver, settings: Settings
) -> None:
    hook = subscribe(api, receiver.url, ["*"])
    api.user()
    assert raw_hits(settings.data_dir, [SECRET]) == []
    assert postgres_hits(settings, [SECRET]) == []
    r = api.client.delete(f"/v1/webhooks/{hook['id']}", headers=api.headers(Role.ADMIN))
    assert r.status_code == 204
    assert api.runtime.vault.is_destroyed(f"webhook:{hook['id']}")
    assert api.runtime.webhooks.secret(hook["id"]) is None
    worker = WebhookWorker(api.runtime)
    try:
        assert worker.run_once().delivered == 0
    finally:
        worker.close()
    assert receiver.requests == []
    assert api.get("/v1/webhooks", role=Role.ADMIN).json() == []


def test_nothing_is_processed_twice_when_the_worker_process_is_killed_mid_delivery(
    tmp_path: Path, receiver: Receiver
) -> None:
    data_dir = tmp_path / "data"
    runtime = Runtime.open(Settings(data_dir=data_dir))
    try:
        runtime.webhooks.create(receiver.url, ["*"], SECRET, False, datetime.now(UTC))
        for i in range(5):
            runtime.desk.register_user("customer", f"Crash {i}", f"crash{i}@example.com")
    finally:
        runtime.close()
    env = {**os.environ, "TICKETLOG_DATA_DIR": str(data_dir)}
    receiver.hold_request = 3
    worker = subprocess.Popen(
        [*CLI, "notify", "run", "--interval", "0.1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert receiver.holding.wait(60), "the worker never reached the third delivery"
    finally:
        worker.kill()  # SIGKILL: no clean-up, the third delivery's outcome is never recorded
        worker.wait()
    receiver.release.set()

    # A new worker process: the two acknowledged deliveries are not sent again; the one in
    # doubt waits for its lease; the rest go out.
    result = subprocess.run(
        [*CLI, "notify", "run", "--once", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["webhooks"]["delivered"] == 2
    assert len(receiver.requests) == 5

    # Once the lease has run out, the in-doubt delivery goes again, with the same id.
    runtime = Runtime.open(Settings(data_dir=data_dir))
    later = datetime.now(UTC) + LEASE + timedelta(seconds=1)
    resumed = WebhookWorker(runtime, clock=lambda: later)
    try:
        assert resumed.run_once().delivered == 1
    finally:
        resumed.close()
        runtime.close()
    ids = [r["headers"]["Ticketlog-Delivery"] for r in receiver.requests]
    assert len(ids) == 6
    assert ids[5] == ids[2]
    assert len(set(ids)) == 5
    assert all(r["valid"] for r in receiver.requests)
    # What the receiver processed: each of the five events exactly once.
    positions = sorted(p["position"] for p in receiver.processed.values())
    assert len(positions) == len(set(positions)) == 5
    status = subprocess.run(
        [*CLI, "notify", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    [hook] = json.loads(status.stdout)["webhooks"]
    assert hook["states"] == {"delivered": 5}
    assert hook["lag"] == 0
    assert json.loads(status.stdout)["email"]["configured"] is False
