"""Command receipts: the log itself guarantees that a command sent with an Idempotency-Key is
stored at most once, even when the server dies between storing it and remembering its answer.

The receipt is saved with the command's first events, in the same transaction. Its id is
derived from the key (as the server holds it: the token's id and the key's HMAC), so a second
receipt for the same key is a version conflict and takes the repeated command's events down
with it. It holds no personal data, and the views ignore it.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.errors import DomainError

_NAMESPACE = UUID("7f6d3b1e-5c7a-4f0e-9a51-2b8e1d4c6a90")


class CommandReceipt(Aggregate):
    @staticmethod
    def create_id(key: str) -> UUID:
        return uuid5(_NAMESPACE, key)

    def __init__(self, key: str) -> None:
        self.key = key


@dataclass
class PendingReceipt:
    """The receipt a request still owes its first save (shared with the request's threads)."""

    key: str
    stored: bool = False


# Set by the API's idempotency middleware around each request that carries a key.
pending_receipt: ContextVar[PendingReceipt | None] = ContextVar("pending_receipt", default=None)


class CommandAlreadyStored(DomainError):
    """A retried command whose first attempt was stored, though its answer was lost (409)."""

    code = "idempotency_key_stored"

    def __init__(self) -> None:
        super().__init__(
            "the first request with this Idempotency-Key was stored, but its answer was not "
            "kept (the server stopped, or the request ran past its reservation); nothing was "
            "stored again"
        )
