"""Storage faults as 503s with stable codes: a full disk, a lock held too long, a database away.

The driver's own error is found anywhere in the exception chain, so the same fault gets the
same code whether the library's recorder, a view, the key vault or the token store met it.
"""

from __future__ import annotations

import errno
import sqlite3
from dataclasses import dataclass

import psycopg

from ticketlog.desk import stored_in_request

# SQLite primary result codes (extended codes keep these in their low byte).
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_FULL = 5, 6, 13
# PostgreSQL SQLSTATEs: insufficient resources (53xxx: disk full, out of memory, too many
# connections), and lock waits given up (lock_not_available, deadlock, lock/statement timeout).
_PG_BUSY = {"55P03", "40P01", "57014"}


@dataclass(frozen=True)
class StorageFault:
    code: str
    message: str
    retry_after: int  # seconds, for the Retry-After header


FULL = StorageFault(
    "storage_full", "storage is full; the request changed nothing, retry once space is freed", 30
)
BUSY = StorageFault(
    "storage_busy", "storage is busy (a lock was held too long); the request changed nothing", 1
)
UNAVAILABLE = StorageFault(
    "storage_unavailable", "storage is unavailable; the request changed nothing", 1
)
# After the command's events were stored: the client must not repeat it.
STORED = StorageFault(
    "views_lagging",
    "the command was stored; the views have not caught up yet, read again shortly",
    1,
)


def classify(exc: BaseException) -> StorageFault | None:
    """The fault behind an exception, or None if it is not a storage fault."""
    seen: set[int] = set()
    current: BaseException | None = exc
    found: StorageFault | None = None
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        fault = _fault_of(current)
        if fault is not None and fault is not UNAVAILABLE:
            return fault
        found = found or fault
        current = current.__cause__ or current.__context__
    return found


def _fault_of(exc: BaseException) -> StorageFault | None:
    if isinstance(exc, sqlite3.OperationalError):
        primary = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
        if primary == _SQLITE_FULL:
            return FULL
        if primary in (_SQLITE_BUSY, _SQLITE_LOCKED):
            return BUSY
        return UNAVAILABLE
    if isinstance(exc, psycopg.OperationalError):
        state = getattr(exc, "sqlstate", None) or ""
        if state.startswith("53"):
            return FULL
        if state in _PG_BUSY:
            return BUSY
        return UNAVAILABLE
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return FULL
    return None


def answer_for(exc: BaseException, method: str) -> StorageFault:
    """What to tell the client: a command already stored is never reported as not stored."""
    fault = classify(exc) or UNAVAILABLE
    if stored_in_request.get() and method not in ("GET", "HEAD"):
        return STORED
    return fault
