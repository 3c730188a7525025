"""Views fed from the Kafka topic by a consumer group, exactly once.

Several projector processes share the topic's partitions, so one global log position cannot
describe how far the views got. Each view keeps, per partition, the next offset to read and
the highest notification id applied (`kafka_offsets`), written in the same transaction as the
view rows. On assignment a consumer seeks to the stored offset; on apply it skips any event
whose notification id is not above the partition's stored one. That single rule drops
consumer redeliveries (after a crash or rebalance) and the relay's re-sends (after its crash)
alike: the relay publishes in log order and an aggregate always hashes to one partition, so
within a partition new events always carry higher notification ids.

Personal fields stay sealed: events are decoded without any key.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import (
    ApplicationRecorder,
    IntegrityError,
    Notification,
    OperationalError,
)

from projections.runner import Progress, ProjectionRunner, ViewStatus
from projections.sql import Cursor
from projections.store import ViewStore
from projections.views import View
from ticketlog import stream
from ticketlog.config import ConfigError, Settings

log = logging.getLogger("ticketlog.projector")

OFFSETS_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS kafka_offsets ("
    " view_name TEXT NOT NULL, topic TEXT NOT NULL, partition_id INTEGER NOT NULL,"
    " next_offset BIGINT NOT NULL, notification_id BIGINT NOT NULL,"
    " PRIMARY KEY (view_name, topic, partition_id))",
)


@dataclass(frozen=True)
class PartitionMark:
    next_offset: int
    notification_id: int


def _marks_of(rows: list[Any]) -> dict[tuple[str, int], PartitionMark]:
    return {
        (r["view_name"], int(r["partition_id"])): PartitionMark(
            int(r["next_offset"]), int(r["notification_id"])
        )
        for r in rows
    }


class KafkaOffsets:
    """Per view and partition: where to resume, and the last notification applied."""

    def __init__(self, store: ViewStore, topic: str) -> None:
        self.store = store
        self.topic = topic
        store.db.execute_script(OFFSETS_SCHEMA)

    def lock(self, c: Cursor, partitions: Sequence[int]) -> dict[tuple[str, int], PartitionMark]:
        """Read the batch's marks inside its write transaction, so consumers racing for the same
        partitions (during a rebalance) serialise here; other partitions proceed in parallel."""
        marks = ",".join("?" * len(partitions))
        select = (
            "SELECT view_name, partition_id, next_offset, notification_id FROM kafka_offsets"
            f" WHERE topic = ? AND partition_id IN ({marks})"
        )
        if self.store.db.postgres:
            select += " FOR UPDATE"
        else:
            # A write first: SQLite then holds the write lock for the whole transaction.
            c.execute("UPDATE kafka_offsets SET topic = topic WHERE topic = ?", [self.topic])
        return _marks_of(c.execute(select, [self.topic, *partitions]).fetchall())

    def marks(self) -> dict[tuple[str, int], PartitionMark]:
        with self.store.db.transaction(commit=False) as c:
            rows = c.execute(
                "SELECT view_name, partition_id, next_offset, notification_id FROM kafka_offsets"
                " WHERE topic = ?",
                [self.topic],
            ).fetchall()
        return _marks_of(rows)

    def write(self, c: Cursor, view: str, partition: int, mark: PartitionMark) -> None:
        c.execute(
            "INSERT INTO kafka_offsets"
            " (view_name, topic, partition_id, next_offset, notification_id)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (view_name, topic, partition_id) DO UPDATE SET"
            " next_offset = excluded.next_offset, notification_id = excluded.notification_id",
            [view, self.topic, partition, mark.next_offset, mark.notification_id],
        )


class KafkaProjector:
    """One member of the projector consumer group: applies every view to its partitions."""

    def __init__(self, settings: Settings, store: ViewStore, batch_size: int = 500) -> None:
        self.settings = settings
        self.batch_size = batch_size
        self.store = store
        self.views: list[View] = list(store.views)
        self.offsets = KafkaOffsets(store, settings.kafka_topic)
        self.reader = stream.SealedReader()
        self.applied = 0

    def run(self, stop: threading.Event, *, from_beginning: bool = False) -> int:
        """Consume until stopped; returns how many events this process applied."""
        from kafka import ConsumerRebalanceListener

        projector = self
        stream.ensure_topic(self.settings)  # else a group waits minutes for the topic's metadata
        consumer = stream.consumer(
            self.settings, self.settings.kafka_group, max_poll_records=self.batch_size
        )

        class Seek(ConsumerRebalanceListener):  # type: ignore[misc]
            def on_partitions_assigned(self, assigned: Any) -> None:
                projector._seek(consumer, assigned, from_beginning)

            def on_partitions_revoked(self, revoked: Any) -> None:
                pass  # nothing to flush: every batch committed before the next poll

        consumer.subscribe([self.settings.kafka_topic], listener=Seek())
        log.info(
            "projector: joining group %s on %s",
            self.settings.kafka_group,
            self.settings.kafka_topic,
        )
        try:
            while not stop.is_set():
                records = consumer.poll(timeout_ms=200)
                if records:
                    self.apply(records)
                    self._commit_to_kafka(consumer)
        finally:
            consumer.close(autocommit=False)
        return self.applied

    def _seek(self, consumer: Any, assigned: Any, from_beginning: bool) -> None:
        marks = self.offsets.marks()
        for tp in assigned:
            resume = [
                marks[(v.name, tp.partition)].next_offset
                for v in self.views
                if (v.name, tp.partition) in marks
            ]
            # Views without a mark start at the partition's beginning; the notification ids
            # keep anything a view already applied from applying twice.
            if from_beginning or len(resume) < len(self.views):
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, min(resume))
        log.info("projector: assigned partitions %s", sorted(tp.partition for tp in assigned))

    def apply(self, records: dict[Any, list[Any]]) -> int:
        """Apply polled records to every view; retried whole if a racing consumer interferes."""
        for attempt in range(10):
            try:
                applied = self._apply_once(records)
            except (IntegrityError, OperationalError) as e:
                log.warning("projector: batch conflicted (%s); retrying", type(e).__name__)
                time.sleep(0.05 * (attempt + 1))
                continue
            self.applied += applied
            return applied
        raise RuntimeError("projector: a batch kept conflicting; giving up")

    def _apply_once(self, records: dict[Any, list[Any]]) -> int:
        """Returns how many distinct events at least one view took in."""
        applied: set[int] = set()
        with self.store.transaction() as c:
            marks = self.offsets.lock(c, [tp.partition for tp in records])
            for tp, messages in records.items():
                decoded = [n for n in map(self._decode, messages) if n is not None]
                events = [(n.id, self.reader.to_domain_event(n)) for n in decoded]
                for view in self.views:
                    mark = marks.get((view.name, tp.partition), PartitionMark(0, 0))
                    last = mark.notification_id
                    for notification_id, event in events:
                        if notification_id <= last:
                            continue  # a redelivery or a re-send: already in this view
                        view.apply(c, event)
                        last = notification_id
                        applied.add(notification_id)
                    next_offset = max(mark.next_offset, messages[-1].offset + 1)
                    self.offsets.write(c, view.name, tp.partition, PartitionMark(next_offset, last))
            for view in self.views:
                view.flush(c)
        return len(applied)

    def _decode(self, record: Any) -> Notification | None:
        try:
            return stream.notification_of(record)
        except stream.MalformedMessage as e:
            # Someone else's record on our topic: skip it rather than block the partition.
            log.warning("projector: skipped %s", e)
            return None

    def _commit_to_kafka(self, consumer: Any) -> None:
        # The view database is the record of progress; committing to Kafka as well only lets
        # standard tools (kafka-consumer-groups) show the group's lag.
        try:
            consumer.commit()
        except Exception as e:
            log.debug("projector: offset commit to Kafka skipped (%s)", type(e).__name__)


class ViewsLagging(Exception):
    """Kafka-fed views did not reach a write in time (the write itself is stored)."""


Published = Callable[[], tuple[int, dict[int, int]]]  # (relay position, last id per partition)


class KafkaFedViews(ProjectionRunner):
    """The API's view of views that Kafka projectors maintain: wait, never apply.

    Read-your-writes: after a command, wait until the relay published the log's head and
    every partition's projector applied what the relay had published there by then.
    """

    def __init__(
        self,
        recorder: ApplicationRecorder,
        mapper: Any,
        store: ViewStore,
        offsets: KafkaOffsets,
        published: Published,
        wait_seconds: float = 10.0,
    ) -> None:
        super().__init__(recorder, mapper, store)
        self.offsets = offsets
        self.published = published
        self.wait_seconds = wait_seconds

    def catch_up(self, progress: Progress | None = None) -> int:
        target = self.head()
        deadline = time.monotonic() + self.wait_seconds
        goal: dict[int, int] | None = None
        while True:
            if goal is None:
                position, partitions = self.published()
                if position >= target:
                    goal = partitions  # fixed once reached, so a busy log cannot outrun us
            if goal is not None and not self._behind(goal):
                return 0
            if time.monotonic() > deadline:
                raise ViewsLagging(
                    f"views have not reached #{target} within {self.wait_seconds:.0f} s"
                    " (is the relay and a Kafka projector running?)"
                )
            time.sleep(0.02)

    def _behind(self, goal: dict[int, int]) -> dict[str, dict[int, int]]:
        """Per view, the partitions whose applied notification id is short of the goal."""
        marks = self.offsets.marks()
        behind: dict[str, dict[int, int]] = {}
        for view in self.views:
            for partition, wanted in goal.items():
                mark = marks.get((view.name, partition))
                reached = mark.notification_id if mark else 0
                if reached < wanted:
                    behind.setdefault(view.name, {})[partition] = reached
        return behind

    def status(self) -> list[ViewStatus]:
        head = self.head()
        position, partitions = self.published()
        behind = self._behind(partitions)
        return [
            ViewStatus(v.name, min(behind[v.name].values()) if v.name in behind else position, head)
            for v in self.views
        ]

    def rebuild(self, views: Sequence[View] | None = None, progress: Progress | None = None) -> int:
        raise ConfigError(
            "views are fed from Kafka (TICKETLOG_VIEWS_FEED=kafka); rebuilding them from the"
            " log here would apply events the projectors apply again"
        )
