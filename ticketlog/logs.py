"""Log lines as text or JSON lines, tagged with the request being handled, never with values.

Exception messages are withheld from every line: a validation error, a database constraint or an
SMTP refusal may quote the input it rejected, which can be someone's personal data. Tracebacks
keep their frames and exception types, which is what finding a bug needs."""

from __future__ import annotations

import logging
import re
import sys
import threading
import traceback
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import orjson

LOG_FORMATS = ("text", "json")
REQUEST_ID_HEADER = "X-Request-ID"

# Letters, digits and a few separators, bounded: nothing that can break a log line or a header.
_WELL_FORMED_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

request_id: ContextVar[str | None] = ContextVar("ticketlog_request_id", default=None)

_state = {"format": "text"}


def accept_request_id(incoming: str | None) -> str:
    """The caller's request id when well formed, else a new one."""
    if incoming is not None and _WELL_FORMED_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


def is_json() -> bool:
    """Whether this process writes JSON lines (progress bars then log instead of drawing)."""
    return _state["format"] == "json"


def describe_exception(exc: BaseException) -> str:
    """A traceback of frames and exception types, each message withheld."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    parts: list[str] = []
    for link in reversed(chain):
        parts.append("Traceback (most recent call last):")
        for frame in traceback.extract_tb(link.__traceback__):
            parts.append(f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}')
            if frame.line:
                parts.append(f"    {frame.line}")
        kind = type(link)
        code = getattr(link, "code", None)
        suffix = f" (code {code})" if isinstance(code, str) else ""
        parts.append(f"{kind.__module__}.{kind.__qualname__}{suffix}: [message withheld]")
    return "\n".join(parts)


class RequestIdFilter(logging.Filter):
    """Puts the id of the request being handled (if any) on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.exc_text = None  # never reuse a traceback another formatter rendered
        line = super().format(record)
        rid = getattr(record, "request_id", None)
        return f"{line} request_id={rid}" if rid else line

    def formatException(self, ei: Any) -> str:
        return describe_exception(ei[1])


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            line["request_id"] = rid
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info and record.exc_info[1] is not None:
            line["exception"] = describe_exception(record.exc_info[1])
        if record.stack_info:
            line["stack"] = record.stack_info
        return orjson.dumps(line, default=str).decode()


class _OurHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler this module installed, so configuring again replaces it."""


def configure(log_format: str = "text", level: int = logging.INFO) -> None:
    """Send ticketlog's (and uvicorn's) log records to stderr in the chosen format."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}")
    _state["format"] = log_format
    handler = _OurHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _OurHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)  # libraries: warnings and worse
    logging.getLogger("ticketlog").setLevel(level)
    logging.getLogger("uvicorn").setLevel(level)
    # Request lines of outbound calls (webhook URLs may carry secrets) stay out.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # our own lines say what matters
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_thread_crash


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):  # Ctrl-C: Python's usual two lines
        sys.__excepthook__(kind, exc, tb)
        return
    logging.getLogger("ticketlog").critical("uncaught %s", kind.__name__, exc_info=(kind, exc, tb))


def _log_thread_crash(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None:
        return
    logging.getLogger("ticketlog").critical(
        "thread %s died: %s",
        args.thread.name if args.thread else "?",
        args.exc_type.__name__,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )
