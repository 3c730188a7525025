"""`ticketlog tail`: the reference consumer of the topic, for any service that reads it.

It decodes each message back into its event, opens personal fields with the key vault (or
shows them as erased), and drops cached keys of a person the moment their `SubjectErased`
arrives, so nothing it prints later uses a key that no longer exists. Consumers of the topic
must do the same: hold keys only in a short-lived cache, and evict on `SubjectErased`.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

import orjson

from api.present import history_event
from crypto.mapper import PersonalDataMapper
from crypto.vault import KeyVault
from domain.user import User
from ticketlog import stream
from ticketlog.config import Settings

log = logging.getLogger("ticketlog.tail")


def describe(record: Any, event: Any) -> dict[str, Any]:
    """One message as an operator reads it: where it sits, what happened, what is erased."""
    notification = stream.notification_of(record)
    body = history_event(event)
    return {
        "partition": record.partition,
        "offset": record.offset,
        "notification_id": notification.id,
        "aggregate_id": str(notification.originator_id),
        **body,
        "occurred_at": body["occurred_at"].isoformat() if body["occurred_at"] else None,
        "recorded_at": body["recorded_at"].isoformat(),
    }


def line(entry: dict[str, Any]) -> str:
    erased = entry["erased_fields"]
    data = {k: ("<erased>" if k in erased else v) for k, v in entry["data"].items()}
    return (
        f"#{entry['notification_id']} p{entry['partition']}@{entry['offset']}"
        f" {entry['type']} {entry['aggregate_id']} v{entry['version']}"
        f" {orjson.dumps(data, default=str).decode()}"
    )


class Tail:
    """Consumes the topic without a group (it never disturbs projectors) and prints events."""

    def __init__(self, settings: Settings, vault: KeyVault) -> None:
        self.settings = settings
        self.vault = vault
        self.mapper = PersonalDataMapper(stream.event_transcoder(), vault)

    def decode(self, record: Any) -> Any:
        event = self.mapper.to_domain_event(stream.notification_of(record))
        if isinstance(event, User.SubjectErased):
            dropped = self.vault.forget_owned_by(f"user:{event.originator_id}")
            log.info("tail: %s erased; %d cached keys dropped", event.originator_id, dropped)
        return event

    def run(
        self,
        stop: threading.Event,
        *,
        from_beginning: bool,
        as_json: bool,
        out: TextIO = sys.stdout,
        on_idle: Callable[[], bool] | None = None,
    ) -> int:
        """Print events until stopped (or until `on_idle` says so); returns how many."""
        from kafka import TopicPartition

        stream.ensure_topic(self.settings)
        consumer = stream.consumer(self.settings, None)
        printed = 0
        try:
            partitions = consumer.partitions_for_topic(self.settings.kafka_topic) or set()
            tps = [TopicPartition(self.settings.kafka_topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            if from_beginning:
                consumer.seek_to_beginning(*tps)
            else:
                consumer.seek_to_end(*tps)
            while not stop.is_set():
                records = consumer.poll(timeout_ms=500)
                if not records:
                    if on_idle is not None and on_idle():
                        break
                    continue
                for messages in records.values():
                    for record in messages:
                        entry = describe(record, self.decode(record))
                        text = orjson.dumps(entry, default=str).decode() if as_json else line(entry)
                        out.write(text + "\n")
                        printed += 1
                out.flush()
        finally:
            consumer.close(autocommit=False)
        return printed
