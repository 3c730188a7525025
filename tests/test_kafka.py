"""Kafka distribution against a real Kafka-protocol broker (Tansu), on SQLite and PostgreSQL.

Relay, projectors and API run as real processes where the behaviour under test is a process's
(killed relays and projectors); in-process otherwise.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.tokens import Role
from crypto.master import MasterKey
from crypto.vault import KeyVault
from domain.personal import ERASED
from domain.user import UserKind
from projections.kafka import KafkaOffsets, KafkaProjector
from projections.store import ViewStore
from tests.conftest import Api
from tests.kafka_support import (
    CLI,
    dump_views,
    env_of,
    raw_records,
    seed,
    spawn,
    views_from_log,
    wait_for,
    with_kafka,
)
from ticketlog import stream
from ticketlog.config import Settings
from ticketlog.loopback import free_port, stop_process
from ticketlog.relay import Relay, RelayLedger, RelayLock, event_log
from ticketlog.runtime import Runtime, all_views, open_views_db
from ticketlog.tail import Tail, describe, line
from ticketlog.tansu import KafkaBroker


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
    relay = spawn(settings, "relay", "--batch-size", "1", log=tmp_path / "relay.log")
    try:
        with event_log(settings) as (_, db):
            ledger = RelayLedger(db, settings.kafka_topic)
            wait_for(ledger.position, "the relay to publish", interval=0.002)
            relay.send_signal(signal.SIGKILL)
            relay.wait()
            position = ledger.position()
    finally:
        stop_process(relay)
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

    log = tmp_path / "projector.log"
    projector = spawn(settings, "project", "--source", "kafka", "--batch-size", "1", log=log)
    store = ViewStore(open_views_db(settings), all_views())
    try:
        offsets = KafkaOffsets(store, settings.kafka_topic)
        wait_for(
            lambda: any(m.notification_id for m in offsets.marks().values()),
            "the projector to apply a first batch",
            interval=0.002,
        )
        projector.send_signal(signal.SIGKILL)
        projector.wait()
    finally:
        store.close()
        stop_process(projector)
    assert not views_caught_up(settings), "the projector must be killed mid-stream"

    projector = spawn(settings, "project", "--source", "kafka", log=log)
    try:
        wait_for(lambda: views_caught_up(settings), "the restarted projector to catch up")
        assert projector.poll() is None, log.read_text()
    finally:
        stop_process(projector)
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
            assert relay.status().lag == 10  # each registration and its access record

            kafka_broker.start()  # back, and empty: the relay recreates the topic
            wait_for(lambda: relay.status().lag == 0, "the relay to catch up")
        finally:
            done.set()
            thread.join(timeout=60)
    # Each registration's 201 showed personal data, so each also appended an access record.
    head = before + 2 * len(waiting)
    records = raw_records(kafka, 2 * len(waiting))
    assert {int(dict(r.headers)["notification-id"]) for r in records} == set(
        range(before + 1, head + 1)
    )
    assert set(waiting) <= {r.key.decode() for r in records}
    assert any("publishing resumed" in r.getMessage() for r in caplog.records)


def test_end_to_end_commands_relay_projector_group_api_reads_and_erasure(
    settings: Settings, kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    """serve, relay and two projectors as separate processes; the API reads Kafka-fed views."""
    settings = with_kafka(settings, kafka_broker, views_feed="kafka")
    with running(settings) as rt:  # tokens, vault and master key, as an operator would
        tokens = {role: rt.tokens.create(role, f"e2e {role}")[1] for role in Role}
    port = free_port()
    logs = {name: tmp_path / f"{name}.log" for name in ("serve", "relay", "p1", "p2", "tail")}
    procs = [
        spawn(settings, "serve", "--port", str(port), log=logs["serve"]),
        spawn(settings, "relay", log=logs["relay"]),
        spawn(settings, "project", "--source", "kafka", log=logs["p1"]),
        spawn(settings, "project", "--source", "kafka", log=logs["p2"]),
    ]
    try:
        # Both projectors joined the group and share the partitions.
        wait_for(
            lambda: all("assigned partitions [" in logs[p].read_text() for p in ("p1", "p2")),
            "both projectors to get partitions",
        )
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _healthy(base), "serve to come up")

        def call(method: str, path: str, role: Role = Role.SERVICE, **kw: Any) -> Any:
            headers = {"Authorization": f"Bearer {tokens[role]}"}
            r = httpx.request(method, base + path, headers=headers, timeout=30, **kw)
            assert r.status_code in (200, 201), r.text
            return r.json()

        customer = call(
            "POST",
            "/v1/users",
            json={
                "kind": "customer",
                "name": "Wilhelmina Kafkaesque",
                "email": "wil@kafka.example",
            },
        )
        agent = call(
            "POST",
            "/v1/users",
            json={"kind": "agent", "name": "Agent Zebulon", "email": "zeb@desk.example"},
        )
        tickets = [
            call(
                "POST",
                "/v1/tickets",
                json={
                    "requester_id": customer["id"],
                    "subject": f"Topic trouble {i}",
                    "body": "Messages vanish",
                },
            )
            for i in range(6)
        ]
        for t in tickets:
            call(
                "POST",
                f"/v1/tickets/{t['id']}/comments",
                json={"author_id": agent["id"], "body": "Check the offsets", "public": True},
            )
            call("POST", f"/v1/tickets/{t['id']}/assign", json={"assignee_id": agent["id"]})
        read = call("GET", f"/v1/tickets/{tickets[0]['id']}")
        assert read["subject"] == "Topic trouble 0"
        assert read["status"] == "open"
        assert [c["body"] for c in read["comments"]] == ["Check the offsets"]
        listed = call("GET", "/v1/tickets", params={"requester_id": customer["id"]})
        assert len(listed["items"]) == 6
        health = call("GET", "/healthz")
        assert all(v["lag"] == 0 for v in health["views"])

        # Erasure travels as an event: the running projectors mark the subject erased.
        call("POST", f"/v1/subjects/{customer['id']}/erase", role=Role.COMPLIANCE)
        profile = call("GET", f"/v1/users/{customer['id']}", role=Role.COMPLIANCE)
        assert profile["erased"] is True
        assert profile["name"] is None
        assert call("GET", f"/v1/tickets/{tickets[0]['id']}")["subject"] is None
        views_db = open_views_db(settings)
        try:
            with views_db.transaction(commit=False) as c:
                row = c.execute(
                    "SELECT erased FROM view_users WHERE id = ?", [customer["id"]]
                ).fetchone()
        finally:
            views_db.close()
        assert row["erased"] == 1
        assert all(p.poll() is None for p in procs), "nothing restarted"

        def relay_caught_up() -> dict[str, Any] | None:
            out = subprocess.run(
                [*CLI, "relay", "status", "--json"],
                env=env_of(settings),
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            status: dict[str, Any] = json.loads(out)
            return status if status["lag"] == 0 else None

        # The reads above appended access records after the last command, and the relay picks
        # them up on its next poll: wait for it rather than race it.
        status = wait_for(relay_caught_up, "the relay to catch up")
        assert (
            status["position"] == status["head"] >= 2 + 6 * 4 + 1  # commands + access records
        )  # assigning a new ticket opens it

        # The reference consumer: decoded events, the erased person's fields shown as erased.
        tail = spawn(settings, "tail", "--from-beginning", "--json", log=logs["tail"])
        procs.append(tail)
        entries = wait_for(
            lambda: _json_lines(logs["tail"], status["head"]), "tail to print every event"
        )
        by_type: dict[str, list[dict[str, object]]] = {}
        for entry in entries:
            by_type.setdefault(str(entry["type"]), []).append(entry)
        registered = {e["aggregate_id"]: e for e in by_type["Registered"]}
        assert registered[customer["id"]]["erased_fields"] == [
            "email",
            "name",
            "organization",
            "phone",
        ]
        assert registered[agent["id"]]["data"]["name"] == "Agent Zebulon"
        assert all(e["data"]["subject"] is None for e in by_type["Opened"])
        assert by_type["SubjectErased"][0]["aggregate_id"] == customer["id"]
    finally:
        for proc in procs:
            stop_process(proc)
    text = logs["serve"].read_text() + logs["tail"].read_text()
    assert "Wilhelmina" not in text
    assert "wil@kafka.example" not in text


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _json_lines(path: Path, count: int) -> list[dict[str, object]] | None:
    lines = [line for line in path.read_text().splitlines() if line.startswith("{")]
    return [json.loads(line) for line in lines] if len(lines) >= count else None


def test_a_consumer_drops_cached_keys_when_the_erasure_event_arrives(
    settings: Settings, kafka_broker: KafkaBroker
) -> None:
    settings = with_kafka(settings, kafka_broker)
    with running(settings) as writer:
        user = writer.desk.register_user(UserKind.CUSTOMER, "Ursula Cached", "ursula@cache.example")
        writer.desk.open_ticket(user, "Cached subject", "Cached body")
        relay_once(settings)
        # The consumer's own vault, with keys cached far longer than the test runs.
        master = MasterKey.load_or_create_file(settings.key_file_path, may_create=False)
        vault = KeyVault.open_sqlite(settings.keys_path, master, cache_ttl=3600)
        try:
            tail = Tail(settings, vault)
            by_type = {
                dict(r.headers)["event-type"].split(b".")[-1]: r for r in raw_records(settings, 2)
            }
            registered, opened = by_type[b"Registered"], by_type[b"Opened"]
            assert tail.decode(registered).name == "Ursula Cached"
            assert tail.decode(opened).subject == "Cached subject"

            writer.desk.erase_subject(user)  # another process destroys the keys
            relay_once(settings)
            # Until the erasure event arrives, a cache may still open the data ...
            assert tail.decode(registered).name == "Ursula Cached"
            erased = [
                r
                for r in raw_records(settings, 3)
                if dict(r.headers)["event-type"].endswith(b"SubjectErased")
            ]
            tail.decode(erased[0])
            # ... and from the moment it does, nothing opens any more.
            assert tail.decode(registered).name is ERASED
            assert tail.decode(opened).subject is ERASED
            entry = describe(registered, tail.decode(registered))
            assert entry["erased_fields"] == ["email", "name", "organization", "phone"]
            assert "Ursula" not in line(entry)
        finally:
            vault.close()


def test_only_one_relay_is_active_at_a_time(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    first, second = RelayLock(settings), RelayLock(settings)
    assert first.try_acquire()
    try:
        assert not second.try_acquire()
        stopped = threading.Event()
        stopped.set()
        assert not second.wait(stopped)
    finally:
        first.release()
    assert second.try_acquire()
    second.release()


def test_a_dead_group_members_partitions_move_to_the_survivor_and_nothing_is_lost(
    settings: Settings, kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    settings = with_kafka(settings, kafka_broker)
    with running(settings) as rt:
        seed(rt.desk, 100)
    logs = [tmp_path / "p1.log", tmp_path / "p2.log"]
    members = [
        spawn(settings, "project", "--source", "kafka", "--batch-size", "1", log=log)
        for log in logs
    ]
    try:
        wait_for(
            lambda: all("assigned partitions [" in log.read_text() for log in logs),
            "both projectors to share the partitions",
        )
        relay_once(settings)
        store = ViewStore(open_views_db(settings), all_views())
        try:
            offsets = KafkaOffsets(store, settings.kafka_topic)
            wait_for(
                lambda: any(m.notification_id for m in offsets.marks().values()),
                "the group to apply a first batch",
                interval=0.002,
            )
            members[0].send_signal(signal.SIGKILL)
            members[0].wait()
        finally:
            store.close()
        assert not views_caught_up(settings), "a member must die mid-stream"
        wait_for(lambda: views_caught_up(settings), "the survivor to take over and catch up")
        assert members[1].poll() is None, logs[1].read_text()
        assert "assigned partitions [0, 1, 2, 3]" in logs[1].read_text()  # it took over
    finally:
        for member in members:
            stop_process(member)
    assert kafka_views(settings) == views_from_log(settings, tmp_path / "expected.db")
