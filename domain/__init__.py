"""The help desk's domain: Ticket and User aggregates, their rules and events.

Pure Python on top of the `eventsourcing` library's aggregate base. Nothing here knows about
databases, HTTP or encryption; events only *declare* which of their fields are personal data and
whose (see `domain.personal`), and a persistence mapper acts on that declaration.
"""

from domain.errors import DomainError, NotFound, RuleViolation
from domain.personal import ERASED, Erased
from domain.ticket import Priority, Status, Ticket
from domain.user import User, UserKind

__all__ = [
    "ERASED",
    "DomainError",
    "Erased",
    "NotFound",
    "Priority",
    "RuleViolation",
    "Status",
    "Ticket",
    "User",
    "UserKind",
]
