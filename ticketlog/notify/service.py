"""Starting the delivery workers: as background threads in `serve`, or in the foreground."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ticketlog.notify.email import SmtpSender, SmtpSettings
from ticketlog.notify.webhook_worker import WebhookWorker
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
    """Run the webhook worker, and the email worker when SMTP is set, in daemon threads.

    Returns the function that stops them.
    """
    stop = threading.Event()
    webhooks = WebhookWorker(runtime)
    threads = [
        threading.Thread(
            target=webhooks.run_forever, args=(stop, interval), name="webhooks", daemon=True
        )
    ]
    email = email_worker(runtime)
    if email is not None:
        threads.append(
            threading.Thread(
                target=email.run_forever, args=(stop, interval), name="email", daemon=True
            )
        )
    for thread in threads:
        thread.start()

    def stop_all() -> None:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        webhooks.close()

    return stop_all
