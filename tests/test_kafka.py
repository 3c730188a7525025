"""Kafka distribution against a real Kafka-protocol broker (Tansu), on SQLite and PostgreSQL.

Relay, projectors and API run as real processes where the behaviour under test is a process's
(killed relays and projectors); in-process otherwise.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from projections.kafka import KafkaOffsets, KafkaProjector
from projections.store import ViewStore
from tests.conftest import Api
from tests.kafka_broker import KafkaBroker
from tests.kafka_support import (
    dump_views,
    raw_records,
    seed,
    spawn,
    stop,
    views_from_log,
    wait_for,
    with_kafka,
)
from ticketlog import stream
from ticketlog.config import Settings
from ticketlog.relay import Relay, RelayLedger, event_log
from ticketlog.runtime import Runtime, all_views, open_views_db


@contextmanager
def running(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime.open(settings)
    try:
        yield rt
    finally:
        rt.close()


def relay_once(settings: Settings) -> int:
    with event_log(settings) as (recorder, db):
        relay = Relay(settings, recorder, RelayLedger(db, settings.kafka_topic))
        return relay.run(threading.Event(), once=True)


def relay_status(settings: Settings) -> tuple[int, int]:
    with event_log(settings) as (recorder, db):
        status = Relay(settings, recorder, RelayLedger(db, settings.kafka_topic)).status()
    return status.position, status.head


def views_caught_up(settings: Settings) -> bool:
    """Every view has applied everything the relay published (read from the databases)."""
    with event_log(settings) as (recorder, db):
        ledger = RelayLedger(db, settings.kafka_topic)
        position, partitions = ledger.position(), ledger.partitions()
        head = recorder.max_notification_id() or 0
    store = ViewStore(open_views_db(settings), all_views())
    try:
        marks = KafkaOffsets(store, settings.kafka_topic).marks()
    finally:
        store.close()
    return position == head and all(
        (view.name, p) in marks and marks[(view.name, p)].notification_id >= last
        for view in all_views()
        for p, last in partitions.items()
    )


def kafka_views(settings: Settings) -> dict[str, list[tuple[object, ...]]]:
    db = open_views_db(settings)
    try:
        return dump_views(db)
    finally:
        db.close()


def test_relay_publishes_each_stored_event_as_stored_and_no_plaintext(
    settings: Settings, kafka_broker: KafkaBroker
) -> None:
    settings = with_kafka(settings, kafka_broker)
    with running(settings) as rt:
        needles = seed(rt.desk, 3)
        stored = rt.desk.recorder.select_notifications(0, 1000)
    assert relay_once(settings) == len(stored)
    assert relay_status(settings) == (len(stored), len(stored))

    records = raw_records(settings, len(stored))
    by_id = {int(dict(r.headers)["notification-id"]): r for r in records}
    assert sorted(by_id) == [n.id for n in stored]
    for n in stored:
        record = by_id[n.id]
        assert record.value == n.state  # exactly as stored: personal fields still sealed
        assert record.key == str(n.originator_id).encode()
        assert dict(record.headers) == {
            "event-type": n.topic.encode(),
            "aggregate-version": str(n.originator_version).encode(),
            "notification-id": str(n.id).encode(),
        }
    # One aggregate, one partition: its events stay in order.
    partitions: dict[bytes, set[int]] = {}
    for r in records:
        partitions.setdefault(r.key, set()).add(r.partition)
    assert all(len(p) == 1 for p in partitions.values())

    raw = b"\n".join(
        b"".join([r.key, r.value, *(v for _, v in r.headers), *(k.encode() for k, _ in r.headers)])
        for r in records
    )
    assert [n for n in needles if n.encode() in raw] == []
    assert len(needles) == 2 + 6 * 3


def project_until_caught_up(settings: Settings) -> int:
    """Run an in-process Kafka projector until the views hold everything the relay sent."""
    store = ViewStore(open_views_db(settings), all_views())
    projector = KafkaProjector(settings, store)
    done = threading.Event()
    thread = threading.Thread(target=projector.run, args=(done,))
    thread.start()
    try:
        wait_for(lambda: views_caught_up(settings), "the projector to catch up")
    finally:
        done.set()
        thread.join(timeout=30)
        store.close()
    return projector.applied


def test_events_sent_twice_are_applied_once(
    settings: Settings, kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    """A relay that crashed after the broker acknowledged but before it saved its position
    sends those events again; they carry the same notification ids and are dropped."""
    settings = with_kafka(settings, kafka_broker)
    with running(settings) as rt:
        seed(rt.desk, 8)
    head = relay_once(settings)
    with event_log(settings) as (_, db):
        RelayLedger(db, settings.kafka_topic).advance(head // 3, {})  # the lost position
    assert relay_once(settings) == head - head // 3
    records = raw_records(settings, head)
    assert len(records) == head + (head - head // 3)

    assert project_until_caught_up(settings) == head
    assert kafka_views(settings) == views_from_log(settings, tmp_path / "expected.db")


def test_a_record_that_is_not_an_event_is_skipped(
    settings: Settings, kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    from kafka import KafkaProducer

    settings = with_kafka(settings, kafka_broker)
    stream.ensure_topic(settings)
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
    for partition in range(settings.kafka_partitions):
        producer.send(settings.kafka_topic, b"not json", key=b"x", partition=partition)
    producer.flush()
    producer.close()
    with running(settings) as rt:
        seed(rt.desk, 3)
    relay_once(settings)
    project_until_caught_up(settings)
    assert kafka_views(settings) == views_from_log(settings, tmp_path / "expected.db")


def test_relay_killed_mid_stream_loses_nothing_and_views_apply_each_event_once(
    settings: Settings, kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    settings = with_kafka(settings, kafka_broker)
    with running(settings) as rt:
        seed(rt.desk, 120)
    _, head = relay_status(settings)
    relay = spawn(settings, "relay", "--batch-size", "3", log=tmp_path / "relay.log")
    try:
        position = wait_for(lambda: relay_status(settings)[0], "the relay to publish", timeout=60)
        relay.send_signal(signal.SIGKILL)
        relay.wait()
    finally:
        stop(relay)
    assert 0 < position < head, "the relay must be killed mid-stream"

    again = spawn(settings, "relay", "--once", log=tmp_path / "relay.log")
    assert again.wait(timeout=120) == 0, (tmp_path / "relay.log").read_text()
    assert relay_status(settings) == (head, head)
    assert {int(dict(r.headers)["notification-id"]) for r in raw_records(settings, head)} == set(
        range(1, head + 1)
    )
    project_until_caught_up(settings)
    assert kafka_views(settings) == views_from_log(settings, tmp_path / "expected.db")


def test_projector_killed_mid_batch_resumes_without_double_or_missed_events(
    settings: Settings, kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    settings = with_kafka(settings, kafka_broker)
    with running(settings) as rt:
        seed(rt.desk, 120)
    head = relay_once(settings)

    def applied_so_far() -> int:
        store = ViewStore(open_views_db(settings), all_views())
        try:
            marks = KafkaOffsets(store, settings.kafka_topic).marks()
        finally:
            store.close()
        return sum(1 for m in marks.values() if m.notification_id)

    log = tmp_path / "projector.log"
    projector = spawn(settings, "project", "--source", "kafka", "--batch-size", "2", log=log)
    try:
        wait_for(applied_so_far, "the projector to apply a first batch", timeout=60)
        projector.send_signal(signal.SIGKILL)
        projector.wait()
    finally:
        stop(projector)
    assert not views_caught_up(settings), "the projector must be killed mid-stream"

    projector = spawn(settings, "project", "--source", "kafka", log=log)
    try:
        wait_for(lambda: views_caught_up(settings), "the restarted projector to catch up")
        assert projector.poll() is None, log.read_text()
    finally:
        stop(projector)
    expected = views_from_log(settings, tmp_path / "expected.db")
    assert kafka_views(settings) == expected
    assert sum(len(rows) for rows in expected.values()) > head // 2


def test_broker_outage_the_api_keeps_working_and_the_relay_delivers_what_waited(
    settings: Settings,
    kafka_broker: KafkaBroker,
    api: Api,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ticketlog.relay")
    kafka = with_kafka(settings, kafka_broker)
    done = threading.Event()
    with event_log(kafka) as (recorder, db):
        relay = Relay(kafka, recorder, RelayLedger(db, kafka.kafka_topic))
        thread = threading.Thread(target=relay.run, args=(done,))
        thread.start()
        try:
            for _ in range(3):
                api.user()
            before = wait_for(
                lambda: relay.status().lag == 0 and relay.status().position, "first delivery"
            )
            kafka_broker.stop()
            waiting = [api.user()["id"] for _ in range(5)]  # 201 each: commands keep coming
            wait_for(
                lambda: any("cannot publish" in r.getMessage() for r in caplog.records),
                "the relay to report the outage",
            )
            assert relay.status().position == before
            assert relay.status().lag == 5

            kafka_broker.start()  # back, and empty: the relay recreates the topic
            wait_for(lambda: relay.status().lag == 0, "the relay to catch up")
        finally:
            done.set()
            thread.join(timeout=60)
    head = before + len(waiting)
    records = raw_records(kafka, len(waiting))
    assert {int(dict(r.headers)["notification-id"]) for r in records} == set(
        range(before + 1, head + 1)
    )
    assert {r.key.decode() for r in records} == set(waiting)
    assert any("publishing resumed" in r.getMessage() for r in caplog.records)
