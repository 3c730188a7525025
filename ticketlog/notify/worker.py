"""The email delivery worker: sends due notifications, records each outcome, retries later.

Runs as a thread in `serve` and as `ticketlog notify run`. Several workers may run at once:
claiming a message is a conditional write, so only one of them sends it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from domain.notifications import Channel
from ticketlog.notify.email import PermanentFailure, SmtpSender, compose
from ticketlog.notify.outbox import Due
from ticketlog.notify.policy import may_notify

if TYPE_CHECKING:
    from ticketlog.runtime import Runtime

log = logging.getLogger("ticketlog.notify")

MAX_ATTEMPTS = 8
LEASE = timedelta(minutes=10)
FIRST_RETRY = timedelta(seconds=30)
LONGEST_RETRY = timedelta(hours=6)


def retry_delay(attempts: int, first: timedelta = FIRST_RETRY) -> timedelta:
    """Exponential backoff: first, 2x, 4x ... capped at LONGEST_RETRY."""
    delay: timedelta = first * (2 ** max(attempts - 1, 0))
    return min(delay, LONGEST_RETRY)


@dataclass
class Outcome:
    sent: int = 0
    skipped: int = 0
    retrying: int = 0
    failed: int = 0
    by_message: dict[str, str] = field(default_factory=dict)

    def add(self, message_id: str, state: str | None) -> None:
        self.by_message[message_id] = state or "taken by another worker"
        if state is not None:
            setattr(self, state, getattr(self, state) + 1)


class EmailWorker:
    def __init__(
        self,
        runtime: Runtime,
        sender: SmtpSender,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        first_retry: timedelta = FIRST_RETRY,
    ) -> None:
        self.runtime = runtime
        self.sender = sender
        self.clock = clock
        self.first_retry = first_retry

    def run_once(self) -> Outcome:
        """Bring the views up to date, then try every message that is due now."""
        self.runtime.runner.catch_up()
        outbox = self.runtime.notifications
        outbox.runner.catch_up()
        outcome = Outcome()
        while True:
            batch = [d for d in outbox.due(self.clock()) if d.message_id not in outcome.by_message]
            if not batch:
                return outcome
            for due in batch:
                try:
                    state = self._deliver(due)
                except Exception as e:
                    # One message that cannot be built must not hold up the others.
                    log.exception("notification %s cannot be delivered", due.message_id)
                    outbox.settle(due.message_id, "failed", self.clock(), error=type(e).__name__)
                    state = "failed"
                outcome.add(due.message_id, state)

    def run_forever(self, stop: threading.Event, interval: float = 1.0) -> None:
        while not stop.is_set():
            try:
                self.run_once()
            except Exception:
                log.exception("email delivery pass failed; trying again")
            stop.wait(interval)

    def _deliver(self, due: Due) -> str | None:
        outbox = self.runtime.notifications
        now = self.clock()
        if not may_notify(self.runtime, due.recipient_id):
            outbox.settle(due.message_id, "skipped", now, error="recipient may not be notified")
            return "skipped"
        wanted = outbox.queries.preferences(due.recipient_id)[due.kind][Channel.EMAIL.value]
        if not wanted:
            outbox.settle(due.message_id, "skipped", now, error="turned off by the recipient")
            return "skipped"
        message = compose(
            message_id=due.message_id,
            kind=due.kind,
            recipient_id=due.recipient_id,
            ticket_id=due.ticket_id,
            event_version=due.event_version,
            queries=self.runtime.queries,
            vault=self.runtime.vault,
            sender=self.sender.settings.sender,
        )
        if message is None:
            outbox.settle(due.message_id, "skipped", now, error="the data it needs was erased")
            return "skipped"
        if not outbox.claim(due, now + LEASE, now):
            return None  # another worker has it
        attempts = due.attempts + 1
        try:
            self.sender.send(message)
        except PermanentFailure as e:
            outbox.settle(due.message_id, "failed", self.clock(), error=str(e))
            log.warning("notification %s refused for good: %s", due.message_id, e)
            return "failed"
        except Exception as e:
            error = type(e).__name__
            if attempts >= MAX_ATTEMPTS:
                outbox.settle(due.message_id, "failed", self.clock(), error=error)
                return "failed"
            retry_at = self.clock() + retry_delay(attempts, self.first_retry)
            outbox.settle(due.message_id, "pending", self.clock(), error=error, retry_at=retry_at)
            log.info("notification %s attempt %d failed (%s)", due.message_id, attempts, error)
            return "retrying"
        outbox.settle(due.message_id, "sent", self.clock())
        return "sent"
