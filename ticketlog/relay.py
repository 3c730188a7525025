"""The relay: publishes the event log to a Kafka topic, in order, losing nothing.

Its position lives in the event-store database itself (`relay_position`), not in a file: the
position then travels with the log through backups and restores. A restored older log comes
with an older position, so the relay re-sends rather than skips; a file could sit ahead of a
restored log and silently skip events. The position only advances after the broker acknowledged
every event of a batch (`acks=all`), so a crash anywhere re-sends, never loses; a re-sent event
carries the same notification id, by which consumers drop it.

`relay_partitions` remembers, per partition, the last notification id published there. It is
what lets the API know when the Kafka-fed views hold everything up to a point.

The relay needs no key vault: it moves ciphertext only.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from eventsourcing.persistence import ApplicationRecorder, InfrastructureFactory, Notification
from eventsourcing.utils import Environment

from projections.kafka import KafkaFedViews, KafkaOffsets
from projections.runner import ProjectionRunner, ViewStatus
from projections.sql import Database
from projections.store import ViewStore
from ticketlog import stream
from ticketlog.config import Settings
from ticketlog.desk import HelpDesk

log = logging.getLogger("ticketlog.relay")

LEDGER_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS relay_position ("
    " topic TEXT PRIMARY KEY, notification_id BIGINT NOT NULL, updated_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS relay_partitions ("
    " topic TEXT NOT NULL, partition_id INTEGER NOT NULL, notification_id BIGINT NOT NULL,"
    " PRIMARY KEY (topic, partition_id))",
)


@contextmanager
def event_log(settings: Settings) -> Iterator[tuple[ApplicationRecorder, Database]]:
    """The event store's recorder and a connection for the relay's own tables, no keys needed."""
    factory: Any = InfrastructureFactory.construct(
        Environment(HelpDesk.name, settings.library_env())
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    pg = settings.postgres
    db = Database.postgresql(pg) if pg else Database.sqlite(settings.events_path)
    try:
        yield factory.application_recorder(), db
    finally:
        db.close()
        factory.close()


class RelayLedger:
    """The relay's durable position in the event-store database."""

    def __init__(self, db: Database, topic: str) -> None:
        self.db = db
        self.topic = topic
        db.execute_script(LEDGER_SCHEMA)

    def position(self) -> int:
        with self.db.transaction(commit=False) as c:
            row = c.execute(
                "SELECT notification_id FROM relay_position WHERE topic = ?", [self.topic]
            ).fetchone()
        return int(row["notification_id"]) if row else 0

    def updated_at(self) -> str | None:
        with self.db.transaction(commit=False) as c:
            row = c.execute(
                "SELECT updated_at FROM relay_position WHERE topic = ?", [self.topic]
            ).fetchone()
        return str(row["updated_at"]) if row else None

    def partitions(self) -> dict[int, int]:
        """Per partition, the last notification id published there."""
        with self.db.transaction(commit=False) as c:
            rows = c.execute(
                "SELECT partition_id, notification_id FROM relay_partitions WHERE topic = ?",
                [self.topic],
            ).fetchall()
        return {int(r["partition_id"]): int(r["notification_id"]) for r in rows}

    def advance(self, notification_id: int, partitions: dict[int, int]) -> None:
        now = datetime.now(UTC).isoformat()
        with self.db.transaction() as c:
            c.execute(
                "INSERT INTO relay_position (topic, notification_id, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (topic) DO UPDATE SET notification_id = excluded.notification_id,"
                " updated_at = excluded.updated_at",
                [self.topic, notification_id, now],
            )
            for partition, last in partitions.items():
                c.execute(
                    "INSERT INTO relay_partitions (topic, partition_id, notification_id)"
                    " VALUES (?, ?, ?) ON CONFLICT (topic, partition_id)"
                    " DO UPDATE SET notification_id = excluded.notification_id",
                    [self.topic, partition, last],
                )


def kafka_fed_views(
    settings: Settings, desk: HelpDesk, views: ViewStore
) -> tuple[KafkaFedViews, Callable[[], None]]:
    """The API side of Kafka-fed views, and how to close the ledger connection it reads."""
    pg = settings.postgres
    db = Database.postgresql(pg) if pg else Database.sqlite(settings.events_path)
    ledger = RelayLedger(db, settings.kafka_topic)

    def published() -> tuple[int, dict[int, int]]:
        return ledger.position(), ledger.partitions()

    offsets = KafkaOffsets(views, settings.kafka_topic)
    return KafkaFedViews(desk.recorder, desk.sealing_mapper, views, offsets, published), db.close


def projector_status(settings: Settings, source: str) -> list[ViewStatus]:
    """How far the projectors got, read from the databases alone (no vault, no broker)."""
    from ticketlog.runtime import all_views, open_views_db

    store = ViewStore(open_views_db(settings), all_views())
    try:
        with event_log(settings) as (recorder, db):
            if source == "log":
                return ProjectionRunner(recorder, stream.SealedReader(), store).status()
            ledger = RelayLedger(db, settings.kafka_topic)
            fed = KafkaFedViews(
                recorder,
                stream.SealedReader(),
                store,
                KafkaOffsets(store, settings.kafka_topic),
                lambda: (ledger.position(), ledger.partitions()),
            )
            return fed.status()
    finally:
        store.close()


class RelayLock:
    """One active relay per topic and event store; any other stands by until it is free.

    A second relay would be harmless (consumers drop re-sends) but would publish everything
    twice and move the shared position back and forth. PostgreSQL: a session advisory lock;
    SQLite: an exclusive lock on a file beside events.db. Both vanish with the process.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._held: Any = None

    def try_acquire(self) -> bool:
        pg = self.settings.postgres
        name = f"ticketlog.relay:{pg.schema if pg else 'sqlite'}:{self.settings.kafka_topic}"
        if pg is not None:
            import psycopg

            conn = psycopg.connect(pg.conninfo(), autocommit=True)
            row = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [name]).fetchone()
            if row and row[0]:
                self._held = conn
                return True
            conn.close()
            return False
        import fcntl

        path = self.settings.data_dir / f"relay-{self.settings.kafka_topic}.lock"
        handle = path.open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._held = handle
        return True

    def wait(self, stop: threading.Event, pause: float = 2.0) -> bool:
        """Acquire, standing by while another relay holds it; False if stopped first."""
        announced = False
        while not stop.is_set():
            if self.try_acquire():
                return True
            if not announced:
                log.info("relay: another relay is active; standing by")
                announced = True
            stop.wait(pause)
        return False

    def release(self) -> None:
        if self._held is not None:
            self._held.close()  # closing the session or file releases the lock
            self._held = None


@dataclass(frozen=True)
class RelayStatus:
    topic: str
    position: int
    head: int
    updated_at: str | None

    @property
    def lag(self) -> int:
        return max(self.head - self.position, 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "position": self.position,
            "head": self.head,
            "lag": self.lag,
            "updated_at": self.updated_at,
        }


class Relay:
    """Follows the notification log and publishes each batch, retrying while Kafka is away."""

    def __init__(
        self,
        settings: Settings,
        recorder: ApplicationRecorder,
        ledger: RelayLedger,
        batch_size: int = 500,
        idle_pause: float = 0.05,
        max_backoff: float = 30.0,
    ) -> None:
        self.settings = settings
        self.recorder = recorder
        self.ledger = ledger
        self.batch_size = batch_size
        self.idle_pause = idle_pause
        self.max_backoff = max_backoff
        self._producer: Any = None

    def status(self) -> RelayStatus:
        return RelayStatus(
            self.ledger.topic,
            self.ledger.position(),
            self.recorder.max_notification_id() or 0,
            self.ledger.updated_at(),
        )

    def run(self, stop: threading.Event, *, once: bool = False) -> int:
        """Publish until stopped (or, with `once`, until the log's head); returns events sent."""
        published = 0
        backoff = 0.5
        try:
            while not stop.is_set():
                position = self.ledger.position()
                batch = self.recorder.select_notifications(
                    start=position, limit=self.batch_size, inclusive_of_start=False
                )
                if not batch:
                    if once:
                        break
                    stop.wait(self.idle_pause)
                    continue
                try:
                    partitions = self._publish(batch)
                except Exception as e:  # broker down, topic gone, timeouts: all retried
                    self._drop_producer()
                    waiting = (self.recorder.max_notification_id() or 0) - position
                    log.warning(
                        "relay: cannot publish to %s at %s (%s); %d events waiting after #%d;"
                        " retrying in %.1f s",
                        self.settings.kafka_topic,
                        self.settings.kafka_bootstrap,
                        type(e).__name__,
                        waiting,
                        position,
                        backoff,
                    )
                    stop.wait(backoff)
                    backoff = min(backoff * 2, self.max_backoff)
                    continue
                self.ledger.advance(batch[-1].id, partitions)
                if backoff > 0.5:
                    log.info("relay: broker back; publishing resumed at #%d", batch[0].id)
                backoff = 0.5
                published += len(batch)
                log.debug("relay: published #%d..#%d", batch[0].id, batch[-1].id)
        finally:
            self._drop_producer()
        return published

    def _publish(self, batch: Sequence[Notification]) -> dict[int, int]:
        """Send a batch and wait until the broker acknowledged all of it."""
        if self._producer is None:
            if stream.ensure_topic(self.settings):
                log.info(
                    "relay: created topic %s with %d partitions",
                    self.settings.kafka_topic,
                    self.settings.kafka_partitions,
                )
            self._producer = stream.producer(self.settings)
        futures = []
        for notification in batch:
            message = stream.message_of(notification)
            futures.append(
                (
                    notification.id,
                    self._producer.send(
                        self.settings.kafka_topic,
                        key=message.key,
                        value=message.value,
                        headers=message.headers,
                    ),
                )
            )
        self._producer.flush(timeout=30)
        partitions: dict[int, int] = {}
        for notification_id, future in futures:
            metadata = future.get(timeout=30)
            partitions[metadata.partition] = max(
                notification_id, partitions.get(metadata.partition, 0)
            )
        return partitions

    def _drop_producer(self) -> None:
        # A fresh producer after any failure: a restarted broker knows nothing of the old
        # producer id and its sequence numbers.
        if self._producer is not None:
            with contextlib.suppress(Exception):  # closing a broken client is best effort
                self._producer.close(timeout=1)
            self._producer = None
