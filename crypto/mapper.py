"""An `eventsourcing` Mapper that seals each declared personal field under its subjects' keys.

Encryption is a persistence concern here, as in RailsEventStore's encryption mapper: events
declare `personal_fields`; this mapper seals those fields on the way to the store and opens
them (or yields ERASED) on the way back. Everything else stays readable so projections, SLA
reports and audits work without any key.
"""

from __future__ import annotations

from typing import Any, TypeVar

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Mapper, StoredEvent, Transcoder

from crypto.fields import Sealed, open_sealed, seal
from crypto.vault import DataKey, KeyVault
from domain.personal import DataSubject, personal_fields_of

TID = TypeVar("TID")


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
        state = dict(vars(domain_event))
        originator_id = str(state["originator_id"])
        version = int(state["originator_version"])
        layer_cache: dict[tuple[DataSubject, ...], list[DataKey]] = {}
        for field, subjects in fields.items():
            layers = layer_cache.get(subjects)
            if layers is None:
                layers = layer_cache[subjects] = self._layers(subjects, state)
            state[field] = seal(state[field], layers, originator_id, version, field)
        sealed_event = object.__new__(type(domain_event))
        object.__setattr__(sealed_event, "__dict__", state)
        return super().to_stored_event(sealed_event)

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[Any]:
        domain_event = super().to_domain_event(stored_event)
        fields = personal_fields_of(type(domain_event))
        if fields:
            state = domain_event.__dict__
            originator_id = str(stored_event.originator_id)
            for field in fields:
                sealed = Sealed(originator_id, stored_event.originator_version, field, state[field])
                state[field] = open_sealed(sealed, self.vault) if self.open_fields else sealed
        return domain_event

    def _layers(self, subjects: tuple[DataSubject, ...], state: dict[str, Any]) -> list[DataKey]:
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
            key = self.vault.key_for_writing(scope, owner)
            if key.scope in {k.scope for k in layers} or (key.owner or key.scope) in owners:
                continue
            owners.add(key.owner or key.scope)
            layers.append(key)
        return layers
