"""Background work inside `serve`: the view follower and the SLA breach scheduler.

Each runs in a `Loop`: once at start, then whenever woken or every `interval` seconds. An
error in one pass is logged and the next pass tries again, so a database hiccup never ends
the loop. On PostgreSQL the follower is woken by LISTEN/NOTIFY (the recorder's `subscribe()`);
the interval stays as a poll fallback, because a lost NOTIFY can stall a subscription
(eventsourcing issue #305) and must never stall the views.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from eventsourcing.persistence import ApplicationRecorder

from projections.runner import ProjectionRunner

log = logging.getLogger("ticketlog.background")


class Loop:
    def __init__(self, name: str, work: Callable[[], object], interval: float) -> None:
        self.name = name
        self.work = work
        self.interval = interval
        self.passes = 0
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._passed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=30)

    def wait_for_pass(self, after: int, timeout: float) -> bool:
        """Block until more than `after` passes completed (for tests and shutdown)."""
        with self._passed:
            return self._passed.wait_for(lambda: self.passes > after, timeout=timeout)

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._wake.clear()
            try:
                self.work()
            except Exception:
                log.exception("%s: pass failed; retrying in %.1fs", self.name, self.interval)
            with self._passed:
                self.passes += 1
                self._passed.notify_all()
            self._wake.wait(self.interval)


class ViewFollower:
    """Keeps every view up to date while the API serves (routes still catch up themselves)."""

    def __init__(
        self,
        runner: ProjectionRunner,
        recorder: ApplicationRecorder,
        poll_interval: float = 1.0,
        listen: bool = True,
    ) -> None:
        self.loop = Loop("view-follower", runner.catch_up, poll_interval)
        self.recorder = recorder
        self.runner = runner
        self.listen = listen and _can_subscribe(recorder)
        self._subscription: object | None = None
        self._listener: threading.Thread | None = None
        self._stopped = threading.Event()

    def details(self) -> dict[str, object]:
        return {
            "mode": "listen+poll" if self.listen else "poll",
            "poll_interval_s": self.loop.interval,
            "passes": self.loop.passes,
        }

    def start(self) -> None:
        self.loop.start()
        if self.listen:
            self._listener = threading.Thread(target=self._listen, name="view-listen", daemon=True)
            self._listener.start()

    def stop(self) -> None:
        self._stopped.set()
        subscription = self._subscription
        if subscription is not None:
            subscription.stop()  # type: ignore[attr-defined]
        if self._listener is not None:
            self._listener.join(timeout=30)
        self.loop.stop()

    def _listen(self) -> None:
        while not self._stopped.is_set():
            try:
                # From the slowest view's position: whatever lands before LISTEN is active
                # still arrives through the subscription's first pull.
                since = min((s.position for s in self.runner.status()), default=0)
                with self.recorder.subscribe(gt=since) as subscription:
                    self._subscription = subscription
                    if self._stopped.is_set():
                        return
                    for _ in subscription:
                        self.loop.wake()
                        if self._stopped.is_set():
                            return
            except Exception:
                log.exception("view follower: subscription failed; polling until it is back")
            self._stopped.wait(self.loop.interval)


def _can_subscribe(recorder: ApplicationRecorder) -> bool:
    # The SQLite recorder raises NotImplementedError from subscribe(): poll there.
    from eventsourcing.postgres import PostgresApplicationRecorder

    return isinstance(recorder, PostgresApplicationRecorder)
