"""Fill and repair the email blind index from the log.

Users registered before the index existed have no digest. `serve` runs `reindex` once (a
marker in vault_meta remembers it); `ticketlog keys index-emails` runs it on demand, e.g. after
a restore. It reads only the user events that carry or end an address, in log order, opening
each address in memory just long enough to digest it. Then it:

1. releases digests no live user's current address has (a crash between a reservation and
   its save, or between an email change and the old address's release), but only those
   reserved more than ABANDONED_AFTER ago (the age at which a registration may take an address
   over) and still stale when re-read: a younger one may belong to a registration still under
   way in another process;
2. reserves each live user's digest in registration order. An address two users already
   share cannot be undone: the first keeps it, the others are reported (by id, never address).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.utils import get_topic

from crypto.blind_index import Reservation
from domain.user import User
from ticketlog.desk import ABANDONED_AFTER, HelpDesk

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
PAGE = 1000
_TOPICS = [
    get_topic(t)
    for t in (User.Registered, User.ProfileUpdated, User.Anonymized, User.SubjectErased)
]


@dataclass
class IndexReport:
    users: int = 0  # live users with an address
    added: int = 0
    released: int = 0
    duplicates: list[dict[str, str]] = field(default_factory=list)  # user_id, held_by

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def backfill_once(desk: HelpDesk, progress: Progress | None = None) -> IndexReport | None:
    """`reindex` unless it has run on this vault before (None then)."""
    if desk.emails.backfilled():
        return None
    report = reindex(desk, progress)
    desk.emails.mark_backfilled()
    return report


def reindex(desk: HelpDesk, progress: Progress | None = None) -> IndexReport:
    current = _current_digests(desk, progress)
    report = IndexReport(users=sum(1 for d in current.values() if d is not None))
    index = desk.emails
    cutoff = datetime.now(UTC) - ABANDONED_AFTER
    for held, owner, created_at in index.entries():
        user_id = owner.removeprefix("user:")
        stale = current.get(user_id) != held and created_at < cutoff
        if stale and _fresh_digest(desk, user_id) != held:
            index.release(held, owner)
            report.released += 1
    for user_id, digest in current.items():
        if digest is None:
            continue
        reservation = index.reserve(digest, f"user:{user_id}")
        if reservation is Reservation.NEW:
            report.added += 1
        elif reservation is Reservation.TAKEN:
            holder = (index.owner_of(digest) or "").removeprefix("user:")
            report.duplicates.append({"user_id": user_id, "held_by": holder})
            log.warning("user %s shares an email address with user %s", user_id, holder)
    return report


def _current_digests(desk: HelpDesk, progress: Progress | None) -> dict[str, bytes | None]:
    """Each user's current address digest (None: erased, anonymized or no address), in
    registration order."""
    digests: dict[str, bytes | None] = {}
    total = desk.recorder.max_notification_id() or 0
    after = 0
    while True:
        page = desk.recorder.select_notifications(
            after, PAGE, topics=_TOPICS, inclusive_of_start=False
        )
        for notification in page:
            event = desk.mapper.to_domain_event(notification)
            user_id = str(event.originator_id)
            if isinstance(event, User.Registered | User.ProfileUpdated):
                if isinstance(event, User.ProfileUpdated) and "email" not in event.changed:
                    continue
                digests[user_id] = _digest(desk, event.email)
            else:
                digests[user_id] = None
        if progress is not None:
            progress(page[-1].id if page else total, total)
        if len(page) < PAGE:
            return digests
        after = page[-1].id


def _fresh_digest(desk: HelpDesk, user_id: str) -> bytes | None:
    try:
        return desk.stored_email_digest(UUID(user_id))
    except ValueError:  # not a user's id
        return None


def _digest(desk: HelpDesk, email: Any) -> bytes | None:
    # ERASED (a destroyed profile key) is no string: the address is gone, nothing to index.
    return desk.emails.digest(email) if isinstance(email, str) else None
