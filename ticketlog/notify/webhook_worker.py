"""Sends webhook deliveries: signed JSON, retried with backoff, every attempt logged.

A delivery is claimed (attempt counted, lease set) and committed before the POST and settled
after it, like email. A crash during the POST leaves it in doubt; after the lease it is sent
again with the same `Ticketlog-Delivery` id, which receivers use to drop the copy.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

import httpx
import orjson

from api.present import HIDDEN_EVENT_FIELDS, plain_value
from crypto.fields import Sealed
from domain.personal import Erased, personal_fields_of
from ticketlog.notify.webhooks import SIGNATURE_HEADER, sign
from ticketlog.notify.worker import LEASE, retry_delay

if TYPE_CHECKING:
    from ticketlog.runtime import Runtime

log = logging.getLogger("ticketlog.webhooks")
access_log = logging.getLogger("ticketlog.access")

MAX_ATTEMPTS = 10
FIRST_RETRY = timedelta(seconds=10)
HIDDEN = HIDDEN_EVENT_FIELDS


@dataclass
class WebhookOutcome:
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    seen: set[str] = field(default_factory=set)


class WebhookWorker:
    def __init__(
        self,
        runtime: Runtime,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        first_retry: timedelta = FIRST_RETRY,
        timeout: float = 10.0,
    ) -> None:
        self.runtime = runtime
        self.store = runtime.webhooks
        self.clock = clock
        self.first_retry = first_retry
        self.client = httpx.Client(timeout=timeout, follow_redirects=False)

    def close(self) -> None:
        self.client.close()

    def run_once(self) -> WebhookOutcome:
        """Turn new events into deliveries, then send every delivery that is due."""
        for webhook in self.store.all():
            self.store.enqueue(webhook, self.clock())
        outcome = WebhookOutcome()
        while True:
            batch = [d for d in self.store.due(self.clock()) if d["id"] not in outcome.seen]
            if not batch:
                return outcome
            for delivery in batch:
                outcome.seen.add(delivery["id"])
                try:
                    state = self._deliver(delivery)
                except Exception as e:
                    # One delivery that cannot be built must not hold up the others.
                    log.exception("webhook delivery %s cannot be sent", delivery["id"])
                    attempt = int(delivery["attempts"]) + 1
                    error = type(e).__name__
                    self.store.settle(delivery["id"], attempt, "failed", self.clock(), None, error)
                    state = "failed"
                if state is not None:
                    setattr(outcome, state, getattr(outcome, state) + 1)

    def run_forever(self, stop: threading.Event, interval: float = 1.0) -> None:
        while not stop.is_set():
            try:
                self.run_once()
            except Exception:
                log.exception("webhook delivery pass failed; trying again")
            stop.wait(interval)

    def _record_access(self, delivery: dict[str, Any]) -> None:
        """A personal-data delivery is staff-visible access: it goes in the access log, with
        the people whose data it carries (owners of the keys that still open)."""
        desk = self.runtime.desk
        [notification] = desk.recorder.select_notifications(
            start=delivery["position"], limit=1, inclusive_of_start=True
        )
        event = desk.sealing_mapper.to_domain_event(notification)
        subjects: set[UUID] = set()
        for name in personal_fields_of(type(event)):
            sealed = getattr(event, name)
            if not isinstance(sealed, Sealed):
                continue
            for key_id in sealed.key_ids:
                key = self.runtime.vault.key_by_id(key_id)
                if not key.destroyed and key.owner and key.owner.startswith("user:"):
                    subjects.add(UUID(key.owner.removeprefix("user:")))
        if subjects:
            desk.record_access(
                f"webhook:{delivery['webhook_id']}",
                f"webhook {delivery['webhook_id']}",
                "webhook",
                f"webhook delivery {delivery['event_type']}",
                sorted(subjects),
            )

    def payload(self, delivery: dict[str, Any]) -> bytes:
        personal = bool(delivery["personal_data"])
        desk = self.runtime.desk
        [notification] = desk.recorder.select_notifications(
            start=delivery["position"], limit=1, inclusive_of_start=True
        )
        # Personal fields are opened only for subscriptions made to receive them.
        mapper = desk.mapper if personal else desk.sealing_mapper
        event = mapper.to_domain_event(notification)
        fields = personal_fields_of(type(event))
        state = vars(event)
        data = {
            k: plain_value(v)
            for k, v in state.items()
            if k not in HIDDEN and (personal or k not in fields)
        }
        body: dict[str, Any] = {
            "delivery_id": delivery["id"],
            "webhook_id": delivery["webhook_id"],
            "event_id": notification.id,
            "position": notification.id,
            "type": delivery["event_type"],
            "aggregate_id": str(event.originator_id),
            "aggregate_version": event.originator_version,
            "occurred_at": plain_value(state.get("occurred_at")),
            "recorded_at": plain_value(state.get("timestamp")),
            "replay": delivery["generation"] > 0,
            "personal_data": personal,
            "data": data,
        }
        if personal:
            body["erased_fields"] = sorted(f for f in fields if isinstance(state[f], Erased))
        return orjson.dumps(body)

    def _deliver(self, delivery: dict[str, Any]) -> str | None:
        now = self.clock()
        if not self.store.claim(delivery, now + LEASE):
            return None  # another worker has it
        attempt = int(delivery["attempts"]) + 1
        secret = self.store.secret(delivery["webhook_id"])
        if secret is None:
            self.store.settle(delivery["id"], attempt, "cancelled", now, None, "webhook deleted")
            return None
        body = self.payload(delivery)
        if delivery["personal_data"]:
            self._record_access(delivery)
            access_log.info(
                "personal data disclosed: webhook=%s delivery=%s position=%s type=%s",
                delivery["webhook_id"],
                delivery["id"],
                delivery["position"],
                delivery["event_type"],
            )
        status: int | None = None
        error: str | None = None
        try:
            response = self.client.post(
                delivery["url"],
                content=body,
                headers={
                    "Content-Type": "application/json",
                    SIGNATURE_HEADER: sign(secret, body),
                    "Ticketlog-Delivery": delivery["id"],
                    "Ticketlog-Event": delivery["event_type"],
                    "User-Agent": "ticketlog-webhooks/1",
                },
            )
            status = response.status_code
        except httpx.HTTPError as e:
            error = type(e).__name__
        if status is not None and 200 <= status < 300:
            self.store.settle(delivery["id"], attempt, "delivered", self.clock(), status, None)
            return "delivered"
        if attempt >= MAX_ATTEMPTS:
            self.store.settle(delivery["id"], attempt, "failed", self.clock(), status, error)
            return "failed"
        retry_at = self.clock() + retry_delay(attempt, self.first_retry)
        self.store.settle(
            delivery["id"], attempt, "pending", self.clock(), status, error, retry_at=retry_at
        )
        return "retrying"
