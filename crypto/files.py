"""Chunked AES-256-GCM for files, so large attachments stream through bounded memory.

Layout: a header (magic, version, key id), then records of nonce + ciphertext + tag, each
holding CHUNK_BYTES of plaintext except the last, which holds 0..CHUNK_BYTES. Each record's
associated data binds the file id, the record's index and whether it is the last one, so
records cannot be reordered, dropped, swapped between files, or the file truncated at a record
boundary (the new last record was not sealed as final) without failing authentication.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Iterable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crypto.errors import TamperedData
from crypto.vault import KEY_ID_BYTES, DataKey, KeyVault

MAGIC = b"TLF1"
CHUNK_BYTES = 64 * 1024
NONCE_BYTES = 12
TAG_BYTES = 16
HEADER_BYTES = len(MAGIC) + KEY_ID_BYTES
RECORD_BYTES = NONCE_BYTES + CHUNK_BYTES + TAG_BYTES


def _aad(file_id: str, index: int, final: bool, header: bytes) -> bytes:
    return b"ticketlog/file/v1|" + file_id.encode() + struct.pack(">Q?", index, final) + header


class FileSealer:
    """Encrypts a file fed in pieces of any size; `update` and `finish` return ciphertext."""

    def __init__(self, key: DataKey, file_id: str) -> None:
        if key.aead is None:
            raise ValueError("destroyed keys never seal files")
        self._aead = key.aead
        self._file_id = file_id
        self._header = MAGIC + key.key_id
        self._buffer = bytearray()
        self._index = 0
        self._started = False
        self.plaintext_bytes = 0

    def update(self, data: bytes) -> bytes:
        self.plaintext_bytes += len(data)
        self._buffer += data
        out = bytearray(self._take_header())
        # A full chunk is sealed only once more data follows: until then it might be the last.
        while len(self._buffer) > CHUNK_BYTES:
            out += self._record(bytes(self._buffer[:CHUNK_BYTES]), final=False)
            del self._buffer[:CHUNK_BYTES]
        return bytes(out)

    def finish(self) -> bytes:
        out = self._take_header() + self._record(bytes(self._buffer), final=True)
        self._buffer.clear()
        return out

    def _take_header(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return self._header

    def _record(self, chunk: bytes, final: bool) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._aead.encrypt(
            nonce, chunk, _aad(self._file_id, self._index, final, self._header)
        )
        self._index += 1
        return nonce + sealed


def key_id_of(header: bytes) -> bytes:
    if len(header) < HEADER_BYTES or header[: len(MAGIC)] != MAGIC:
        raise TamperedData("not a file this service encrypted")
    return header[len(MAGIC) : HEADER_BYTES]


def file_key(header: bytes, vault: KeyVault) -> DataKey:
    """The key a sealed file names (destroyed or not), from its first HEADER_BYTES."""
    return vault.key_by_id(key_id_of(header))


def open_file(ciphertext: Iterable[bytes], key: DataKey, file_id: str) -> Iterator[bytes]:
    """Plaintext chunks of a sealed file read in pieces of any size; TamperedData if altered."""
    if key.aead is None:
        raise ValueError("the file's key was destroyed")
    aead = key.aead
    buffer = bytearray()
    header: bytes | None = None
    index = 0
    for piece in ciphertext:
        buffer += piece
        if header is None:
            if len(buffer) < HEADER_BYTES:
                continue
            header = bytes(buffer[:HEADER_BYTES])
            if key_id_of(header) != key.key_id:
                raise TamperedData(f"file {file_id} names another key")
            del buffer[:HEADER_BYTES]
        # Keep at least one record back: only the end of the stream says which one is last.
        while len(buffer) > RECORD_BYTES:
            yield _open_record(aead, bytes(buffer[:RECORD_BYTES]), file_id, index, False, header)
            del buffer[:RECORD_BYTES]
            index += 1
    if header is None or len(buffer) < NONCE_BYTES + TAG_BYTES:
        raise TamperedData(f"file {file_id} is truncated")
    yield _open_record(aead, bytes(buffer), file_id, index, True, header)


def _open_record(
    aead: AESGCM, record: bytes, file_id: str, index: int, final: bool, header: bytes
) -> bytes:
    try:
        return aead.decrypt(
            record[:NONCE_BYTES], record[NONCE_BYTES:], _aad(file_id, index, final, header)
        )
    except InvalidTag as e:
        raise TamperedData(f"file {file_id} record {index} failed authentication") from e
