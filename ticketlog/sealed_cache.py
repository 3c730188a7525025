"""Recently loaded aggregates, kept sealed, so a command on a long ticket replays only what is new.

Without it every command replays its aggregate's whole history: a comment on a ticket of 200
comments decoded and applied 200 events, 86% of the command's time (cProfile), and the cost grew
with every reply. Commands load aggregates *sealed* (personal fields still ciphertext,
crypto/mapper.py), so this cache holds no plaintext: after an erasure its copies are as
unreadable as the log's. The opened repository, which would hold plaintext, stays uncached.

Every get still asks the log for the events after the cached version, so what another process
stored (several API processes on one PostgreSQL) is never missed. A cached aggregate is never
handed out or changed: a get copies it, brings the copy up to date and returns that, so what a
command does to its aggregate, saved or not, never reaches the cache.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import EventStore

from crypto.fields import Sealed

Project = Callable[[Any, Iterable[Any]], Any]

# The bound is on an estimate of the bytes held, not on aggregates or events: a ticket of 1,000
# comments holds 1,000 envelopes, and one comment may be 64 K characters (an 87 KB envelope). An
# event weighs its envelopes and text plus EVENT_BYTES for the objects around them (about 600
# bytes per short comment, measured with tracemalloc).
MAX_BYTES = 64 * 1024 * 1024
EVENT_BYTES = 600

_SCALARS: frozenset[type] = frozenset(
    {str, bytes, int, float, bool, type(None), UUID, datetime, date, timedelta, Decimal}
)


class SealedCache:
    def __init__(
        self, event_store: EventStore[UUID], project: Project, max_bytes: int = MAX_BYTES
    ) -> None:
        self._events = event_store
        self._project = project
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._cached: OrderedDict[UUID, tuple[Aggregate, int]] = OrderedDict()  # with its bytes
        self.bytes_held = 0  # estimated, as the bound counts them
        self.events_applied = 0  # events replayed by gets: what the cache exists to keep down

    def get(self, aggregate_id: UUID) -> Aggregate:
        """The aggregate as the log has it now: a copy of its own for the caller to change."""
        with self._lock:
            cached = self._cached.get(aggregate_id)
            if cached is not None:
                self._cached.move_to_end(aggregate_id)
        base, weight = (None, 0) if cached is None else (copy_aggregate(cached[0]), cached[1])
        new = list(self._events.get(aggregate_id, gt=None if base is None else base.version))
        aggregate: Aggregate | None = self._project(base, new)
        if aggregate is None:
            raise AggregateNotFoundError(f"Aggregate {aggregate_id!r} not found.")
        with self._lock:
            self.events_applied += len(new)
        if new:
            self._keep(copy_aggregate(aggregate), weight + sum(map(_event_bytes, new)))
        return aggregate

    def __len__(self) -> int:
        return len(self._cached)

    def held(self) -> list[Aggregate]:
        """What the cache holds now, least recently used first (to inspect, not to change)."""
        with self._lock:
            return [aggregate for aggregate, _ in self._cached.values()]

    def _keep(self, aggregate: Aggregate, weight: int) -> None:
        if weight > self._max_bytes:
            return  # alone over the bound: replayed in full each time instead
        with self._lock:
            held = self._cached.get(aggregate.id)
            if held is not None:
                if held[0].version >= aggregate.version:
                    return  # a concurrent get cached this version or a later one
                self.bytes_held -= held[1]
            self._cached[aggregate.id] = (aggregate, weight)
            self._cached.move_to_end(aggregate.id)
            self.bytes_held += weight
            while self.bytes_held > self._max_bytes:
                _, (_, dropped) = self._cached.popitem(last=False)  # the least recently used
                self.bytes_held -= dropped


def _event_bytes(event: object) -> int:
    """About what applying `event` adds to an aggregate: its sealed envelopes and text."""
    size = EVENT_BYTES
    for value in vars(event).values():
        kind = type(value)
        if kind is Sealed:
            size += len(value.envelope)
        elif kind is str:
            size += len(value)
    return size


def copy_aggregate(aggregate: Aggregate) -> Aggregate:
    """A copy that shares nothing changeable with `aggregate`.

    Aggregates change their lists, dicts and sets in place (a ticket appends comments), so
    those are copied; the values inside them are shared when immutable (a `Comment` is a
    frozen dataclass of ids, envelopes and times), which makes a copy far cheaper than
    `deepcopy`. Anything else is deep-copied."""
    duplicate = copy.copy(aggregate)
    state = duplicate.__dict__
    for name, value in state.items():
        kind = type(value)
        if kind is list:
            state[name] = list(value) if all(map(immutable, value)) else copy.deepcopy(value)
        elif kind is set:
            state[name] = set(value) if all(map(immutable, value)) else copy.deepcopy(value)
        elif kind is dict:
            shared = all(map(immutable, value)) and all(map(immutable, value.values()))
            state[name] = dict(value) if shared else copy.deepcopy(value)
        elif not immutable(value):
            state[name] = copy.deepcopy(value)
    return duplicate


# By type: True (immutable), False, or _BY_CONTENTS (a tuple or frozenset: immutable if all
# its items are). Frozen dataclasses are the domain's value objects, never changed in place;
# tests/test_sealed_cache.py checks that none reachable from aggregate state holds a list,
# dict or set.
_BY_CONTENTS = object()
_verdicts: dict[type, object] = {}


def immutable(value: object) -> bool:
    """Whether copies may share `value` (checked by type; a tuple's items one by one)."""
    kind = type(value)
    verdict = _verdicts.get(kind)
    if verdict is None:
        verdict = _verdicts[kind] = _judge(kind)
    if verdict is _BY_CONTENTS:
        return all(map(immutable, value))  # type: ignore[call-overload]
    return verdict is True


def _judge(kind: type) -> object:
    if kind in _SCALARS or issubclass(kind, Enum):
        return True
    if kind is tuple or kind is frozenset:
        return _BY_CONTENTS
    params = getattr(kind, "__dataclass_params__", None)
    return params is not None and params.frozen
