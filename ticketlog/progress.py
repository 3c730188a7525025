"""A progress bar for long jobs, on stderr so stdout stays clean for results and --json."""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

from ticketlog import logs

log = logging.getLogger("ticketlog.progress")


class ProgressBar:
    def __init__(
        self, label: str, stream: TextIO | None = None, width: int = 30, unit: str = "events"
    ) -> None:
        self.label = label
        self.unit = unit
        self.stream = stream or sys.stderr
        self.width = width
        # With JSON logs, progress is a log line like any other, so stderr stays JSON lines.
        self.as_log = stream is None and logs.is_json()
        self.tty = self.stream.isatty() and not self.as_log
        self._last = 0.0
        self._shown = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last < (0.1 if self.tty else 2.0):
            return
        self._last = now
        fraction = done / total if total else 1.0
        if self.as_log:
            log.info("%s: %d/%d %s", self.label, done, total, self.unit)
            return
        filled = int(self.width * fraction)
        line = (
            f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] "
            f"{fraction:4.0%} {done:,}/{total:,} {self.unit}"
        )
        self.stream.write(("\r" + line) if self.tty else (line + "\n"))
        self.stream.flush()
        self._shown = True

    def finish(self) -> None:
        if self._shown and self.tty:
            self.stream.write("\n")
            self.stream.flush()
