"""An `eventsourcing` Mapper that seals each declared personal field under its subjects' keys.

Encryption is a persistence concern here, as in RailsEventStore's encryption mapper: events
declare `personal_fields`; this mapper seals those fields on the way to the store and opens
them (or yields ERASED) on the way back. Everything else stays readable so projections, SLA
reports and audits work without any key.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Mapper, StoredEvent, Transcoder
from eventsourcing.utils import get_topic

from crypto.fields import Sealed, open_sealed, seal
from crypto.vault import DataKey, KeyVault
from domain.ids import id_text
from domain.personal import DataSubject, personal_fields_of

TID = TypeVar("TID")
# The layers of each (event, subjects) pair of one save, keyed by the ids of the event object
# and of its class's subjects tuple (hashing the tuple of dataclasses costs more than sealing).
_Plans = dict[tuple[int, int], list[DataKey]]


@functools.cache
def _distinct_subjects(event_class: type) -> tuple[tuple[DataSubject, ...], ...]:
    """The class's distinct subject tuples, each once (fields often share one)."""
    return tuple({id(s): s for s in personal_fields_of(event_class).values()}.values())


def _text(originator_id: Any) -> str:
    return id_text(originator_id) if type(originator_id) is UUID else str(originator_id)


class PersonalDataMapper(Mapper[Any]):
    """Seals personal fields when storing; opens them when reading (or leaves them sealed)."""

    def __init__(
        self,
        transcoder: Transcoder,
        vault: KeyVault,
        *,
        open_fields: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(transcoder, **kwargs)
        self.vault = vault
        self.open_fields = open_fields
        self._planned = threading.local()  # layers found by keys_prepared, per saving thread

    def sealing(self) -> PersonalDataMapper:
        """A twin mapper that leaves personal fields sealed (for projections and commands)."""
        twin = PersonalDataMapper(
            self.transcoder,
            self.vault,
            open_fields=False,
            compressor=self.compressor,
            cipher=self.cipher,
        )
        return twin

    def to_stored_event(self, domain_event: DomainEventProtocol[Any]) -> StoredEvent:
        fields = personal_fields_of(type(domain_event))
        if not fields:
            return super().to_stored_event(domain_event)
        # The library's to_stored_event, on a copy of the state with the fields sealed (one copy,
        # not a sealed twin of the event copied again).
        state = dict(vars(domain_event))
        oid, version = str(state["originator_id"]), state["originator_version"]
        planned: _Plans = getattr(self._planned, "layers", None) or {}
        event_id = id(domain_event)
        layer_cache: dict[int, list[DataKey]] = {}
        for field, subjects in fields.items():
            layers = layer_cache.get(id(subjects)) or planned.get((event_id, id(subjects)))
            if layers is None:
                layers = self._layers(subjects, state)
            layer_cache[id(subjects)] = layers
            state[field] = seal(state[field], layers, oid, version, field)
        originator_id = state.pop("originator_id")
        del state["originator_version"]
        class_version = getattr(type(domain_event), "class_version", 1)
        if class_version > 1:
            state["class_version"] = class_version
        stored_state = self.transcoder.encode(state)
        if self.compressor:
            stored_state = self.compressor.compress(stored_state)
        if self.cipher:
            stored_state = self.cipher.encrypt(stored_state)
        return StoredEvent(
            originator_id=originator_id,
            originator_version=version,
            topic=get_topic(type(domain_event)),
            state=stored_state,
        )

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[Any]:
        domain_event = super().to_domain_event(stored_event)
        fields = personal_fields_of(type(domain_event))
        if fields:
            state = domain_event.__dict__
            originator_id = _text(stored_event.originator_id)
            for field in fields:
                version = stored_event.originator_version
                sealed = Sealed.read(originator_id, version, field, state[field])
                state[field] = open_sealed(sealed, self.vault) if self.open_fields else sealed
        return domain_event

    @contextmanager
    def keys_prepared(self, domain_events: Sequence[DomainEventProtocol[Any]]) -> Iterator[None]:
        """While saving these events: every key they need was fetched or created beforehand,
        a layer at a time, each layer in one vault transaction (a save of 100 new tickets
        makes one vault commit, not 100), and sealing reuses the layers found then."""
        self._planned.layers = self._prepare(domain_events)
        try:
            yield
        finally:
            self._planned.layers = None

    def _prepare(self, domain_events: Sequence[DomainEventProtocol[Any]]) -> _Plans:
        pending = [
            (id(domain_event), subjects, vars(domain_event))
            for domain_event in domain_events
            for subjects in _distinct_subjects(type(domain_event))
        ]
        known: dict[str, DataKey] = {}

        def lookup(scope: str, _: str | None) -> DataKey | None:
            return known.get(scope) or self.vault.cached_for_writing(scope)

        plans: _Plans = {}
        while pending:
            # Which outer layers are needed depends on who owns the inner layers' keys.
            wanted: dict[str, str | None] = {}
            unfinished = []
            for event_id, subjects, state in pending:
                layers, missing = self._plan(subjects, state, lookup)
                if missing is None:
                    plans[event_id, id(subjects)] = layers
                else:
                    wanted.setdefault(*missing)
                    unfinished.append((event_id, subjects, state))
            if wanted:
                known.update(self.vault.keys_for_writing(wanted.items()))
            pending = unfinished
        return plans

    def _layers(self, subjects: tuple[DataSubject, ...], state: dict[str, Any]) -> list[DataKey]:
        layers, _ = self._plan(subjects, state, self.vault.key_for_writing)
        return layers

    @staticmethod
    def _plan(
        subjects: tuple[DataSubject, ...],
        state: dict[str, Any],
        lookup: Callable[[str, str | None], DataKey | None],
    ) -> tuple[list[DataKey], tuple[str, str | None] | None]:
        """The layers for these subjects, or those found so far and the (scope, owner) whose
        key `lookup` does not have yet."""
        # A layer is redundant when an earlier layer's key has the same owner: erasing that
        # person destroys both. So a requester's own comment is sealed once, under the ticket,
        # and no key is created for the redundant layer.
        layers: list[DataKey] = []
        owners: set[str] = set()
        for subject in subjects:
            scope = subject.scope_of(state)
            owner = subject.owner_of(state)
            if owner is not None and owner in owners:
                continue
            key = lookup(scope, owner)
            if key is None:
                return layers, (scope, owner)
            if key.scope in {k.scope for k in layers} or (key.owner or key.scope) in owners:
                continue
            owners.add(key.owner or key.scope)
            layers.append(key)
        return layers, None
