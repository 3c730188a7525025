"""Sealing one personal field under the keys of every subject it belongs to.

A sealed field is an envelope: version byte, layer count, the key id of each layer, then the
nonce and AES-256-GCM ciphertext of the outermost layer, whose plaintext is the next layer's
nonce and ciphertext, and so on down to the JSON of the value. Destroying any layer's key makes
the value unreadable. Each layer's associated data binds it to where it is stored: originator
id, version, field name and key id, so a ciphertext moved elsewhere fails to open.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag

from crypto.errors import TamperedData
from crypto.vault import KEY_ID_BYTES, DataKey, KeyVault
from domain.personal import ERASED

ENVELOPE_VERSION = 1
NONCE_BYTES = 12


@dataclass(frozen=True)
class Sealed:
    """A personal value still encrypted, with the place it was sealed for.

    Read models keep these as they are and open them only to answer a request.
    """

    originator_id: str
    version: int
    field: str
    envelope: str

    def to_text(self) -> str:
        return f"{self.originator_id}|{self.version}|{self.field}|{self.envelope}"

    @classmethod
    def read(cls, originator_id: str, version: int, field: str, envelope: str) -> Sealed:
        """`Sealed(...)` without the frozen dataclass's `object.__setattr__` per field: the
        mapper makes one for every personal field of every event it reads (half the cost)."""
        sealed = object.__new__(cls)
        state = sealed.__dict__
        state["originator_id"], state["version"] = originator_id, version
        state["field"], state["envelope"] = field, envelope
        return sealed

    @classmethod
    def from_text(cls, text: str) -> Sealed:
        originator_id, version, field, envelope = text.split("|", 3)
        return cls(originator_id, int(version), field, envelope)

    @property
    def key_ids(self) -> list[bytes]:
        raw = _b64decode(self.envelope)
        count = raw[1]
        return [raw[2 + i * KEY_ID_BYTES : 2 + (i + 1) * KEY_ID_BYTES] for i in range(count)]


def _aad(originator_id: str, version: int, field: str, key_id: bytes, header: bytes) -> bytes:
    # The whole header (version, layer count, every key id) is bound too, so layers cannot be
    # stripped or reordered without failing authentication.
    where = f"ticketlog/v1|{originator_id}|{version}|{field}|{key_id.hex()}|".encode()
    return where + header


def _b64decode(text: str) -> bytes:
    return base64.b64decode(text.encode())


def seal(
    value: Any, layers: Sequence[DataKey], originator_id: str, version: int, field: str
) -> str:
    """Encrypt `value` (any JSON value) under each key in turn, innermost first."""
    if isinstance(value, Sealed) or value is ERASED:
        raise TypeError(f"{field}: refusing to seal an already sealed or erased value")
    if not layers:
        raise ValueError(f"{field}: a personal field needs at least one key")
    header = bytes((ENVELOPE_VERSION, len(layers))) + b"".join(k.key_id for k in layers)
    # The same bytes as _aad() builds, with the part shared by every layer built once (hot path).
    where = f"ticketlog/v1|{originator_id}|{version}|{field}|".encode()
    tail = b"|" + header
    data = orjson.dumps(value)
    for key in layers:
        assert key.aead is not None, "destroyed keys never reach seal()"
        nonce = os.urandom(NONCE_BYTES)  # what secrets.token_bytes returns, without its wrapper
        data = nonce + key.aead.encrypt(nonce, data, where + key.key_id.hex().encode() + tail)
    return binascii.b2a_base64(header + data, newline=False).decode()


def open_sealed(sealed: Sealed, vault: KeyVault) -> Any:
    """The plaintext value, or ERASED if any of its keys was destroyed."""
    return open_with_keys(sealed, vault)[0]


def open_with_keys(sealed: Sealed, vault: KeyVault) -> tuple[Any, list[DataKey]]:
    """`open_sealed`, with the keys the envelope names: their owners are whom it is about."""
    where = f"{sealed.field} of {sealed.originator_id} v{sealed.version}"
    try:
        raw = _b64decode(sealed.envelope)
    except (binascii.Error, ValueError) as e:
        raise TamperedData(f"{where}: the envelope is not base64") from e
    if len(raw) < 2 or raw[0] != ENVELOPE_VERSION or raw[1] == 0:
        raise TamperedData(f"{where}: not an envelope this service writes")
    header_end = 2 + raw[1] * KEY_ID_BYTES
    if len(raw) < header_end + NONCE_BYTES + 16:
        raise TamperedData(f"{where}: the envelope is truncated")
    header = raw[:header_end]
    key_ids = [raw[i : i + KEY_ID_BYTES] for i in range(2, header_end, KEY_ID_BYTES)]
    keys = [vault.key_by_id(key_id) for key_id in key_ids]
    if any(key.destroyed for key in keys):
        return ERASED, keys
    data = raw[header_end:]
    try:
        for key in reversed(keys):
            assert key.aead is not None
            data = key.aead.decrypt(
                data[:NONCE_BYTES],
                data[NONCE_BYTES:],
                _aad(sealed.originator_id, sealed.version, sealed.field, key.key_id, header),
            )
    except InvalidTag as e:
        raise TamperedData(f"{where} failed authentication") from e
    return orjson.loads(data), keys
