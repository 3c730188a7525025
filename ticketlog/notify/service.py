"""Starting the delivery workers: as background threads in `serve`, or in the foreground."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ticketlog.notify.email import SmtpSender, SmtpSettings
from ticketlog.notify.worker import EmailWorker

if TYPE_CHECKING:
    from ticketlog.runtime import Runtime


def email_worker(runtime: Runtime) -> EmailWorker | None:
    """The email worker, or None when TICKETLOG_SMTP_URL is not set (messages wait)."""
    url = runtime.settings.smtp_url
    if url is None:
        return None
    return EmailWorker(runtime, SmtpSender(SmtpSettings.parse(url)))


def start_background(runtime: Runtime, interval: float = 1.0) -> Callable[[], None]:
    """Run every configured worker in a daemon thread; returns the function that stops them."""
    stop = threading.Event()
    threads = []
    worker = email_worker(runtime)
    if worker is not None:
        threads.append(
            threading.Thread(
                target=worker.run_forever, args=(stop, interval), name="email", daemon=True
            )
        )
    for thread in threads:
        thread.start()

    def stop_all() -> None:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)

    return stop_all
