"""Helpers for the Kafka tests: settings and environments, seeding, raw reads, view dumps."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from domain.ticket import Status
from domain.user import UserKind
from projections.runner import ProjectionRunner
from projections.sql import Database
from projections.store import ViewStore
from ticketlog.config import Settings
from ticketlog.desk import HelpDesk
from ticketlog.relay import event_log
from ticketlog.runtime import all_views
from ticketlog.stream import SealedReader
from ticketlog.tansu import KafkaBroker

CLI = [sys.executable, "-m", "ticketlog.cli"]
TOPIC = "ticketlog.events"
MAX_POLL_MS = 3000  # Tansu completes a JoinGroup only after the rebalance timeout


def with_kafka(settings: Settings, broker: KafkaBroker, **changes: Any) -> Settings:
    return dataclasses.replace(
        settings,
        kafka_bootstrap=broker.bootstrap,
        kafka_max_poll_ms=MAX_POLL_MS,
        kafka_partitions=4,
        **changes,
    )


def env_of(settings: Settings) -> dict[str, str]:
    """The environment a ticketlog process needs to work on these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETLOG_")}
    env.update(
        {
            "TICKETLOG_DATA_DIR": str(settings.data_dir),
            "TICKETLOG_KAFKA_TOPIC": settings.kafka_topic,
            "TICKETLOG_KAFKA_PARTITIONS": str(settings.kafka_partitions),
            "TICKETLOG_KAFKA_MAX_POLL_MS": str(settings.kafka_max_poll_ms),
            "TICKETLOG_VIEWS_FEED": settings.views_feed,
        }
    )
    if settings.kafka_bootstrap:
        env["TICKETLOG_KAFKA_BOOTSTRAP"] = settings.kafka_bootstrap
    if settings.database_url:
        env["TICKETLOG_DATABASE_URL"] = settings.database_url
    return env


def spawn(settings: Settings, *args: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [*CLI, *args], env=env_of(settings), stdout=out, stderr=subprocess.STDOUT
        )


def wait_for(
    check: Callable[[], Any], what: str, timeout: float = 60, interval: float = 0.05
) -> Any:
    """Poll until `check` returns something truthy; a guard against hangs, not a timing test."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def seed(desk: HelpDesk, tickets: int, tag: str = "") -> list[str]:
    """Users, tickets, comments, assignment and status changes; returns every personal value."""
    needles: list[str] = []
    agent_name, agent_email = f"Agent Ottilie {tag}", f"ottilie{tag}@desk.example"
    agent = desk.register_user(UserKind.AGENT, agent_name, agent_email)
    needles += [agent_name, agent_email]
    for i in range(tickets):
        name, email = f"Customer Quenby {tag}{i}", f"quenby{tag}{i}@mail.example"
        subject, body = f"Printer haunted {tag}{i}", f"It prints ghosts {tag}{i}"
        reply = f"Try an exorcism {tag}{i}"
        customer = desk.register_user(UserKind.CUSTOMER, name, email, phone=f"+4470000{i:05d}")
        ticket = desk.open_ticket(customer, subject, body)
        desk.add_comment(ticket, agent, reply, public=True)
        desk.assign(ticket, agent)
        desk.change_status(ticket, Status.SOLVED)
        needles += [name, email, subject, body, reply, f"+4470000{i:05d}"]
    return needles


def raw_records(settings: Settings, expected: int, timeout: float = 60) -> list[Any]:
    """Every record on the topic, read raw (no decoding), once `expected` distinct ids arrived."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        partitions = wait_for(
            lambda: consumer.partitions_for_topic(settings.kafka_topic), "the topic"
        )
        tps = [TopicPartition(settings.kafka_topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        ids: set[bytes] = set()

        def more() -> bool:
            for messages in consumer.poll(timeout_ms=200).values():
                records.extend(messages)
                ids.update(dict(m.headers)["notification-id"] for m in messages)
            return len(ids) >= expected

        wait_for(more, f"{expected} events on the topic", timeout)
        return records
    finally:
        consumer.close()


VIEW_TABLES = {
    "view_users": "id",
    "view_tickets": "id",
    "view_ticket_comments": "ticket_id, version",
}


def dump_views(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    with db.transaction(commit=False) as c:
        return {
            table: [
                tuple(sorted(dict(r).items()))
                for r in c.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
            ]
            for table, order in VIEW_TABLES.items()
        }


def views_from_log(settings: Settings, path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """What the views must hold: the whole log applied once, by the plain log runner."""
    store = ViewStore(Database.sqlite(path), all_views())
    try:
        with event_log(settings) as (recorder, _):
            ProjectionRunner(recorder, SealedReader(), store).catch_up()
        return dump_views(store.db)
    finally:
        store.close()
