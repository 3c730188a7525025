"""How events declare personal data, and how erased data looks to the domain.

An event class lists its personal fields in `personal_fields`, each mapped to the data subjects
it belongs to. The domain says *whose* data a field is; the persistence layer decides *how* to
protect it (per-subject keys), so the two never mix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Final


@dataclass(frozen=True)
class DataSubject:
    """Names the key scope a personal field belongs to, read from the event itself.

    `kind` is the scope's kind ("user" or "ticket"), `id_attr` the event attribute holding its
    id. `owner_attr`, when set, names the attribute holding the user who owns the scope; it is
    read when the scope is first used, so erasing that user also erases the scope.
    """

    kind: str
    id_attr: str
    owner_attr: str | None = None

    def scope_of(self, event_state: dict[str, Any]) -> str:
        return f"{self.kind}:{event_state[self.id_attr]}"

    def owner_of(self, event_state: dict[str, Any]) -> str | None:
        if self.owner_attr is None:
            return self.scope_of(event_state) if self.kind == "user" else None
        owner = event_state.get(self.owner_attr)
        return None if owner is None else f"user:{owner}"


class Erased:
    """The value of a personal field whose key was destroyed: the data is gone for good."""

    _instance: ClassVar[Erased | None] = None

    def __new__(cls) -> Erased:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ERASED"

    def __bool__(self) -> bool:
        return False

    def __copy__(self) -> Erased:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Erased:
        return self

    def __reduce__(self) -> str:
        return "ERASED"


ERASED: Final = Erased()


def is_erased(value: object) -> bool:
    return value is ERASED


PersonalFields = dict[str, tuple[DataSubject, ...]]


def personal_fields_of(event_class: type) -> PersonalFields:
    """The personal fields an event class declares (none for most events)."""
    fields: PersonalFields = getattr(event_class, "personal_fields", {})
    return fields
