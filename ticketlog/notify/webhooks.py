"""Webhook subscriptions, their delivery log, and the signature receivers check.

A subscription follows the event log from a position of its own: each matching event becomes
a delivery row (the delivery log), sent and retried by the worker. The secret is a credential:
it is stored sealed under a vault key of its own (`webhook:<id>`), destroyed with the webhook.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlparse
from uuid import uuid4

import orjson
from eventsourcing.persistence import ApplicationRecorder

from crypto.vault import KEY_ID_BYTES, KeyVault
from projections.sql import Database
from projections.views import timestamp

SIGNATURE_HEADER = "Ticketlog-Signature"
EVENT_TYPES = (
    "ticket.opened",
    "ticket.comment_added",
    "ticket.assigned",
    "ticket.status_changed",
    "ticket.attachment_added",
    "ticket.priority_changed",
    "ticket.tags_changed",
    "ticket.sla_breached",
    "user.registered",
    "user.profile_updated",
    "user.notification_preferences_set",
    "user.subject_erased",
    "user.anonymized",
)
ENQUEUE_BATCH = 500


class BadSubscription(ValueError):
    """The subscription asks for something this service does not do (422)."""


def event_type(topic: str) -> str:
    """`domain.ticket:Ticket.CommentAdded` -> `ticket.comment_added`."""
    qualname = topic.rsplit(":", 1)[-1]
    aggregate, _, event = qualname.partition(".")
    snake = re.sub(r"(?<!^)([A-Z])", r"_\1", event).lower()
    return f"{aggregate.lower()}.{snake}"


def sign(secret: str, body: bytes, at: int | None = None) -> str:
    """The signature header value: `t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">`."""
    t = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secret: str, body: bytes, header: str, tolerance: int = 300) -> bool:
    """What a receiver does: check the MAC and that the timestamp is recent (no replays)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    expected = sign(secret, body, t).split(",v1=", 1)[1]
    fresh = abs(time.time() - t) <= tolerance
    return fresh and hmac.compare_digest(expected, parts.get("v1", ""))


def check_url(url: str) -> str:
    parts = urlparse(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadSubscription("the webhook URL must be an http:// or https:// URL with a host")
    return url


def check_events(events: list[str]) -> list[str]:
    unknown = sorted(set(events) - {*EVENT_TYPES, "*"})
    if unknown:
        raise BadSubscription(f"unknown event types: {', '.join(unknown)}")
    return sorted(set(events))


@dataclass(frozen=True)
class Webhook:
    id: str
    url: str
    events: list[str]
    include_personal_data: bool
    position: int
    created_at: str

    def wants(self, type_name: str) -> bool:
        # "*" is every published type, not internal records such as staff access.
        return type_name in EVENT_TYPES and ("*" in self.events or type_name in self.events)

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": self.url,
            "events": self.events,
            "include_personal_data": self.include_personal_data,
            "position": self.position,
            "created_at": self.created_at,
        }


class WebhookStore:
    schema = (
        "CREATE TABLE IF NOT EXISTS webhooks ("
        " id TEXT PRIMARY KEY, url TEXT NOT NULL, events TEXT NOT NULL,"
        " include_personal_data INTEGER NOT NULL, secret BYTEA NOT NULL,"
        " position BIGINT NOT NULL, created_at TEXT NOT NULL, deleted_at TEXT)",
        "CREATE TABLE IF NOT EXISTS webhook_deliveries ("
        " id TEXT PRIMARY KEY, webhook_id TEXT NOT NULL, position BIGINT NOT NULL,"
        " generation INTEGER NOT NULL, event_type TEXT NOT NULL, state TEXT NOT NULL,"
        " attempts INTEGER NOT NULL, next_attempt_at TEXT NOT NULL, last_status INTEGER,"
        " last_error TEXT, personal_data INTEGER NOT NULL, created_at TEXT NOT NULL,"
        " delivered_at TEXT, UNIQUE (webhook_id, position, generation))",
        "CREATE INDEX IF NOT EXISTS webhook_deliveries_due"
        " ON webhook_deliveries (state, next_attempt_at)",
        "CREATE TABLE IF NOT EXISTS webhook_attempts ("
        " delivery_id TEXT NOT NULL, attempt INTEGER NOT NULL, at TEXT NOT NULL,"
        " status INTEGER, error TEXT, PRIMARY KEY (delivery_id, attempt))",
    )

    def __init__(self, db: Database, vault: KeyVault, recorder: ApplicationRecorder) -> None:
        self.db = db
        self.vault = vault
        self.recorder = recorder
        db.execute_script(self.schema)

    # Subscriptions

    def create(
        self, url: str, events: list[str], secret: str, include_personal_data: bool, now: datetime
    ) -> Webhook:
        """A subscription to events recorded from now on (replay reaches earlier ones)."""
        url, events = check_url(url), check_events(events)
        webhook_id = str(uuid4())
        key = self.vault.key_for_writing(f"webhook:{webhook_id}", owner=None)
        assert key.aead is not None
        nonce = secrets.token_bytes(12)
        sealed = key.key_id + nonce + key.aead.encrypt(nonce, secret.encode(), _aad(webhook_id))
        position = self.recorder.max_notification_id() or 0
        with self.db.transaction() as c:
            c.execute(
                "INSERT INTO webhooks (id, url, events, include_personal_data, secret, position,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    webhook_id,
                    url,
                    orjson.dumps(events).decode(),
                    int(include_personal_data),
                    sealed,
                    position,
                    timestamp(now),
                ],
            )
        found = self.get(webhook_id)
        assert found is not None
        return found

    def get(self, webhook_id: str) -> Webhook | None:
        with self.db.transaction(commit=False) as c:
            row = c.execute(
                "SELECT * FROM webhooks WHERE id = ? AND deleted_at IS NULL", [webhook_id]
            ).fetchone()
        return None if row is None else _webhook(row)

    def all(self) -> list[Webhook]:
        with self.db.transaction(commit=False) as c:
            rows = c.execute(
                "SELECT * FROM webhooks WHERE deleted_at IS NULL ORDER BY created_at, id"
            ).fetchall()
        return [_webhook(r) for r in rows]

    def delete(self, webhook_id: str, now: datetime) -> bool:
        """Stop deliveries and shred the secret; the delivery log stays."""
        with self.db.transaction() as c:
            row = c.execute(
                "UPDATE webhooks SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL"
                " RETURNING id",
                [timestamp(now), webhook_id],
            ).fetchone()
            if row is None:
                return False
            c.execute(
                "UPDATE webhook_deliveries SET state = 'cancelled'"
                " WHERE webhook_id = ? AND state IN ('pending', 'sending')",
                [webhook_id],
            )
        self.vault.destroy_scope(f"webhook:{webhook_id}")
        return True

    def secret(self, webhook_id: str) -> str | None:
        """The secret in plaintext (to sign with), or None once the webhook is deleted."""
        with self.db.transaction(commit=False) as c:
            row = c.execute("SELECT secret FROM webhooks WHERE id = ?", [webhook_id]).fetchone()
        if row is None:
            return None
        sealed = bytes(row["secret"])
        key = self.vault.key_by_id(sealed[:KEY_ID_BYTES])
        if key.aead is None:
            return None
        nonce, ciphertext = sealed[KEY_ID_BYTES : KEY_ID_BYTES + 12], sealed[KEY_ID_BYTES + 12 :]
        return key.aead.decrypt(nonce, ciphertext, _aad(webhook_id)).decode()

    # The delivery log

    def enqueue(self, webhook: Webhook, now: datetime) -> int:
        """Turn events recorded after the webhook's position into deliveries; how many."""
        added = 0
        position = webhook.position
        while True:
            batch = self.recorder.select_notifications(
                start=position, limit=ENQUEUE_BATCH, inclusive_of_start=False
            )
            if not batch:
                return added
            with self.db.transaction() as c:
                moved = c.execute(
                    "UPDATE webhooks SET position = ? WHERE id = ? AND position = ? RETURNING id",
                    [batch[-1].id, webhook.id, position],
                ).fetchone()
                if moved is None:
                    return added  # another worker enqueued this batch
                for n in batch:
                    type_name = event_type(n.topic)
                    if webhook.wants(type_name):
                        added += self._add(c, webhook, n.id, 0, type_name, now)
            position = batch[-1].id

    def replay(self, webhook: Webhook, start: int, now: datetime) -> int:
        """Deliver again every matching event from position `start` up to the webhook's own."""
        with self.db.transaction(commit=False) as c:
            row = c.execute(
                "SELECT COALESCE(MAX(generation), 0) AS g FROM webhook_deliveries"
                " WHERE webhook_id = ?",
                [webhook.id],
            ).fetchone()
        generation = int(row["g"]) + 1
        added = 0
        position = start - 1
        while position < webhook.position:
            batch = [
                n
                for n in self.recorder.select_notifications(
                    start=position, limit=ENQUEUE_BATCH, inclusive_of_start=False
                )
                if n.id <= webhook.position
            ]
            if not batch:
                break
            with self.db.transaction() as c:
                for n in batch:
                    type_name = event_type(n.topic)
                    if webhook.wants(type_name):
                        added += self._add(c, webhook, n.id, generation, type_name, now)
            position = batch[-1].id
        return added

    @staticmethod
    def _add(
        c: Any, webhook: Webhook, position: int, generation: int, type_name: str, now: datetime
    ) -> int:
        row = c.execute(
            "INSERT INTO webhook_deliveries (id, webhook_id, position, generation, event_type,"
            " state, attempts, next_attempt_at, personal_data, created_at)"
            " VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)"
            " ON CONFLICT (webhook_id, position, generation) DO NOTHING RETURNING id",
            [
                str(uuid4()),
                webhook.id,
                position,
                generation,
                type_name,
                timestamp(now),
                int(webhook.include_personal_data),
                timestamp(now),
            ],
        ).fetchone()
        return 0 if row is None else 1

    def due(self, now: datetime, limit: int = 100) -> list[dict[str, Any]]:
        with self.db.transaction(commit=False) as c:
            rows = c.execute(
                "SELECT d.*, w.url FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id"
                " WHERE d.state IN ('pending', 'sending') AND d.next_attempt_at <= ?"
                " AND w.deleted_at IS NULL ORDER BY d.position, d.generation, d.id LIMIT ?",
                [timestamp(now), limit],
            ).fetchall()
        return [dict(r) for r in rows]

    def claim(self, delivery: dict[str, Any], lease_until: datetime) -> bool:
        with self.db.transaction() as c:
            row = c.execute(
                "UPDATE webhook_deliveries SET state = 'sending', attempts = attempts + 1,"
                " next_attempt_at = ? WHERE id = ? AND attempts = ?"
                " AND state IN ('pending', 'sending') RETURNING id",
                [timestamp(lease_until), delivery["id"], delivery["attempts"]],
            ).fetchone()
        return row is not None

    def settle(
        self,
        delivery_id: str,
        attempt: int,
        state: str,
        now: datetime,
        status: int | None,
        error: str | None,
        retry_at: datetime | None = None,
    ) -> None:
        with self.db.transaction() as c:
            c.execute(
                "UPDATE webhook_deliveries SET state = ?, next_attempt_at = ?, last_status = ?,"
                " last_error = ?, delivered_at = ? WHERE id = ?",
                [
                    state,
                    timestamp(retry_at or now),
                    status,
                    error,
                    timestamp(now) if state == "delivered" else None,
                    delivery_id,
                ],
            )
            c.execute(
                "INSERT INTO webhook_attempts (delivery_id, attempt, at, status, error)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (delivery_id, attempt) DO NOTHING",
                [delivery_id, attempt, timestamp(now), status, error],
            )

    def counts(self, webhook_id: str) -> dict[str, int]:
        """How many of the webhook's deliveries are in each state."""
        with self.db.transaction(commit=False) as c:
            rows = c.execute(
                "SELECT state, COUNT(*) AS n FROM webhook_deliveries WHERE webhook_id = ?"
                " GROUP BY state",
                [webhook_id],
            ).fetchall()
        return {r["state"]: int(r["n"]) for r in rows}

    def deliveries(self, webhook_id: str, limit: int = 100, after: int = 0) -> list[dict[str, Any]]:
        """The delivery log of one webhook, oldest event first, with every attempt."""
        with self.db.transaction(commit=False) as c:
            rows = c.execute(
                "SELECT id, position, generation, event_type, state, attempts, last_status,"
                " last_error, personal_data, created_at, delivered_at FROM webhook_deliveries"
                " WHERE webhook_id = ? AND position > ? ORDER BY position, generation LIMIT ?",
                [webhook_id, after, limit],
            ).fetchall()
            out = [dict(r) for r in rows]
            for d in out:
                d["personal_data"] = bool(d["personal_data"])
                d["log"] = [
                    dict(a)
                    for a in c.execute(
                        "SELECT attempt, at, status, error FROM webhook_attempts"
                        " WHERE delivery_id = ? ORDER BY attempt",
                        [d["id"]],
                    ).fetchall()
                ]
        return out


def _aad(webhook_id: str) -> bytes:
    return f"ticketlog/webhook-secret|{webhook_id}".encode()


def _webhook(row: Any) -> Webhook:
    return Webhook(
        id=row["id"],
        url=row["url"],
        events=list(orjson.loads(row["events"])),
        include_personal_data=bool(row["include_personal_data"]),
        position=int(row["position"]),
        created_at=row["created_at"],
    )
