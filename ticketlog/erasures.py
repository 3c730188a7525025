"""Drops this process's cached keys of people another process erased.

An API replica caches unwrapped keys for a minute. When another replica erases someone, the
keys are gone from the vault at once, but this replica's cache could still open that person's
data until the entry expires. The watcher follows the log for `SubjectErased` and evicts that
person's cached keys as soon as the event is stored (the TTL stays as the fallback).
"""

from __future__ import annotations

import logging
import threading

from eventsourcing.persistence import ApplicationRecorder
from eventsourcing.utils import get_topic

from crypto.vault import KeyVault
from domain.user import User

log = logging.getLogger("ticketlog.erasures")

ERASED_TOPIC = get_topic(User.SubjectErased)


class ErasureWatcher:
    def __init__(
        self, recorder: ApplicationRecorder, vault: KeyVault, interval: float = 0.5
    ) -> None:
        self.recorder = recorder
        self.vault = vault
        self.interval = interval
        self.position = recorder.max_notification_id() or 0  # earlier erasures: keys long gone
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self) -> int:
        """Evict cached keys for every erasure stored since the last poll; returns how many."""
        head = self.recorder.max_notification_id() or 0
        if head <= self.position:
            return 0
        erased = self.recorder.select_notifications(
            start=self.position,
            limit=head - self.position,
            stop=head,
            topics=[ERASED_TOPIC],
            inclusive_of_start=False,
        )
        for notification in erased:
            self.vault.forget_owned_by(f"user:{notification.originator_id}")
        self.position = head
        return len(erased)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="erasure-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll_once()
            except Exception as e:  # storage hiccup: the TTL still bounds the exposure
                log.warning("erasure watcher: poll failed (%s); retrying", type(e).__name__)
