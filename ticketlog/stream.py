"""The Kafka wire format of the event log, and the clients that read and write it.

A message is one stored event exactly as the event store holds it: personal fields are still
sealed (ciphertext), nothing is opened or re-encoded on the way. The key is the aggregate id,
so one aggregate's events stay in one partition, in order. Headers carry the event type, the
aggregate version and the notification id (the event's position in the log), which is how a
consumer recognises an event it has already seen, whoever sent it twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    Notification,
    StoredEvent,
    UUIDAsHex,
)

from crypto.fields import Sealed
from domain.personal import personal_fields_of
from ticketlog.config import Settings

HEADER_TYPE = "event-type"
HEADER_VERSION = "aggregate-version"
HEADER_NOTIFICATION = "notification-id"


class MalformedMessage(Exception):
    """A record on the topic that is not an event this service wrote."""


@dataclass(frozen=True)
class Message:
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def message_of(notification: Notification) -> Message:
    return Message(
        key=str(notification.originator_id).encode(),
        value=notification.state,
        headers=[
            (HEADER_TYPE, notification.topic.encode()),
            (HEADER_VERSION, str(notification.originator_version).encode()),
            (HEADER_NOTIFICATION, str(notification.id).encode()),
        ],
    )


def notification_of(record: Any) -> Notification:
    """The stored event a consumer record carries, with its notification id."""
    headers = {name: value for name, value in (record.headers or [])}
    try:
        return Notification(
            id=int(headers[HEADER_NOTIFICATION]),
            originator_id=UUID(record.key.decode()),
            originator_version=int(headers[HEADER_VERSION]),
            topic=headers[HEADER_TYPE].decode(),
            state=bytes(record.value),
        )
    except (KeyError, ValueError, AttributeError, UnicodeDecodeError) as e:
        where = f"partition {record.partition} offset {record.offset}"
        raise MalformedMessage(f"{where}: not a ticketlog event ({type(e).__name__})") from e


def event_transcoder() -> JSONTranscoder:
    """The transcoder HelpDesk uses (the library's default transcodings)."""
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    return transcoder


class SealedReader(Mapper[UUID]):
    """Decodes stored events with personal fields left `Sealed`: needs no key vault at all.

    The same result as `HelpDesk.sealing_mapper`, for processes (relay, projectors) that must
    not hold keys.
    """

    def __init__(self) -> None:
        super().__init__(event_transcoder())

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        raise TypeError("SealedReader only reads; events are written through HelpDesk")

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        event = super().to_domain_event(stored_event)
        state = event.__dict__
        for field in personal_fields_of(type(event)):
            state[field] = Sealed(
                str(stored_event.originator_id),
                stored_event.originator_version,
                field,
                state[field],
            )
        return event


# Clients. Timeouts are short so an unreachable broker is reported within seconds.


def producer(settings: Settings) -> Any:
    from kafka import KafkaProducer

    return KafkaProducer(
        bootstrap_servers=settings.require_kafka().split(","),
        client_id="ticketlog-relay",
        acks="all",
        enable_idempotence=True,
        max_in_flight_requests_per_connection=5,
        linger_ms=5,
        max_block_ms=5_000,
        request_timeout_ms=5_000,
        delivery_timeout_ms=15_000,
        retries=3,
    )


def consumer(settings: Settings, group_id: str | None, **overrides: Any) -> Any:
    from kafka import KafkaConsumer

    max_poll = settings.kafka_max_poll_ms
    options: dict[str, Any] = {
        "bootstrap_servers": settings.require_kafka().split(","),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_interval_ms": max_poll,
        "session_timeout_ms": max_poll,
        "heartbeat_interval_ms": max(max_poll // 3, 300),
        "request_timeout_ms": max_poll + 5_000,
        "max_poll_records": 500,
    }
    options.update(overrides)
    return KafkaConsumer(**options)


def ensure_topic(settings: Settings) -> bool:
    """Create the topic (with the configured partitions) unless it exists; True if created."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError

    admin = KafkaAdminClient(
        bootstrap_servers=settings.require_kafka().split(","),
        client_id="ticketlog-admin",
        request_timeout_ms=5_000,
    )
    try:
        if settings.kafka_topic in admin.list_topics():
            return False
        try:
            admin.create_topics([NewTopic(settings.kafka_topic, settings.kafka_partitions, 1)])
        except KafkaError:
            # Another process may have created it a moment ago; anything else is a real error.
            if settings.kafka_topic in admin.list_topics():
                return False
            raise
        return True
    finally:
        admin.close()
