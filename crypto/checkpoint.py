"""Signed notes (C2SP signed-note) with Ed25519, and transparency-log checkpoints in them.

A note is UTF-8 text ending in a newline, a blank line, then one line per signature:
"— <key name> <base64(key id || signature)>". The key id is the first four bytes of
SHA-256(name || "\\n" || 0x01 || public key). A checkpoint (C2SP tlog-checkpoint) is a note
whose text is "<origin>\\n<tree size>\\n<base64 root hash>\\n".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from crypto.merkle import HASH_SIZE

ED25519_ALG = 0x01
SIGNATURE_PREFIX = "\u2014 "  # em dash, space
MAX_NOTE_BYTES = 1 << 20


class NoteError(Exception):
    """A note, key or checkpoint is malformed, or no trusted signature verifies."""


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError) as e:
        raise NoteError("not valid base64") from e


def _check_name(name: str) -> str:
    if not name or any(c in name for c in "+ \t\n\r") or not name.isprintable():
        raise NoteError("a key name is non-empty printable text without '+' or spaces")
    return name


def key_id(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519_ALG]) + public_key).digest()[:4]


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class NoteVerifier:
    """A public key that checks signatures by one named signer."""

    name: str
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key)

    def to_text(self) -> str:
        """The C2SP verifier key: name+hex key id+base64(0x01 || public key)."""
        encoded = base64.b64encode(bytes([ED25519_ALG]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    @classmethod
    def from_text(cls, text: str) -> NoteVerifier:
        parts = text.strip().split("+", 2)
        if len(parts) != 3:
            raise NoteError("a verifier key is name+keyid+base64 key")
        name, hex_id, encoded = parts
        raw = _b64decode(encoded)
        if len(raw) != 33 or raw[0] != ED25519_ALG:
            raise NoteError("not an Ed25519 verifier key")
        verifier = cls(_check_name(name), raw[1:])
        if hex_id != verifier.key_id.hex():
            raise NoteError("the verifier key's id does not match its name and key")
        return verifier

    def verify(self, note: str) -> str:
        """The note's text, if this key signed it; NoteError otherwise."""
        text, signatures = split_note(note)
        public = Ed25519PublicKey.from_public_bytes(self.public_key)
        for name, blob in signatures:
            if name != self.name or blob[:4] != self.key_id:
                continue  # someone else's signature: ignored, as the spec says
            try:
                public.verify(blob[4:], text.encode())
            except InvalidSignature:
                raise NoteError(f"the signature by {self.name} does not verify") from None
            return text
        raise NoteError(f"the note carries no signature by {self.name}")


@dataclass(frozen=True)
class NoteSigner:
    name: str
    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls, name: str) -> NoteSigner:
        return cls(_check_name(name), Ed25519PrivateKey.generate())

    @property
    def verifier(self) -> NoteVerifier:
        return NoteVerifier(self.name, _raw_public(self.private_key.public_key()))

    def to_text(self) -> str:
        """The C2SP signer key: PRIVATE+KEY+name+hex key id+base64(0x01 || seed)."""
        seed = self.private_key.private_bytes_raw()
        encoded = base64.b64encode(bytes([ED25519_ALG]) + seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.verifier.key_id.hex()}+{encoded}"

    @classmethod
    def from_text(cls, text: str) -> NoteSigner:
        parts = text.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise NoteError("a signer key is PRIVATE+KEY+name+keyid+base64 seed")
        name, hex_id, encoded = parts[2:]
        raw = _b64decode(encoded)
        if len(raw) != 33 or raw[0] != ED25519_ALG:
            raise NoteError("not an Ed25519 signer key")
        signer = cls(_check_name(name), Ed25519PrivateKey.from_private_bytes(raw[1:]))
        if hex_id != signer.verifier.key_id.hex():
            raise NoteError("the signer key's id does not match its name and key")
        return signer

    def sign(self, text: str) -> str:
        """A signed note: the text (which must end in a newline), a blank line, a signature."""
        _check_text(text)
        signature = self.private_key.sign(text.encode())
        blob = base64.b64encode(self.verifier.key_id + signature).decode()
        return f"{text}\n{SIGNATURE_PREFIX}{self.name} {blob}\n"


def _check_text(text: str) -> None:
    if not text.endswith("\n") or "\n\n" in text or text.startswith("\n"):
        raise NoteError("note text is non-empty lines, each ending in a newline")
    if any(not line.isprintable() for line in text[:-1].split("\n")):
        raise NoteError("note text is printable characters only")


def split_note(note: str) -> tuple[str, list[tuple[str, bytes]]]:
    """The text and the (key name, key id || signature) pairs of a signed note."""
    if not isinstance(note, str) or len(note.encode()) > MAX_NOTE_BYTES:
        raise NoteError("not a note")
    cut = note.rfind("\n\n")
    if cut < 0 or not note.endswith("\n"):
        raise NoteError("a note is text, a blank line, then signature lines")
    text = note[: cut + 1]
    _check_text(text)
    signatures = []
    for line in note[cut + 2 : -1].split("\n"):
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteError("a signature line starts with an em dash and a space")
        fields = line[len(SIGNATURE_PREFIX) :].split(" ")
        if len(fields) != 2:
            raise NoteError("a signature line is '— name base64'")
        blob = _b64decode(fields[1])
        if len(blob) < 5:
            raise NoteError("a signature is too short")
        signatures.append((fields[0], blob))
    if not signatures:
        raise NoteError("the note has no signatures")
    return text, signatures


@dataclass(frozen=True)
class Checkpoint:
    """A tree head: this log (origin) had `size` leaves with this root."""

    origin: str
    size: int
    root: bytes

    def text(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"

    @classmethod
    def from_text(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise NoteError("a checkpoint is origin, size and root hash, one per line")
        origin, size_text, root_text = lines[:3]
        if not origin or not size_text.isdigit() or (size_text != "0" and size_text[0] == "0"):
            raise NoteError("a checkpoint's size is a decimal number")
        root = _b64decode(root_text)
        if len(root) != HASH_SIZE:
            raise NoteError("a checkpoint's root hash is 32 bytes")
        return cls(origin, int(size_text), root)

    def sign(self, signer: NoteSigner) -> str:
        return signer.sign(self.text())


def open_checkpoint(note: str, verifier: NoteVerifier, origin: str | None = None) -> Checkpoint:
    """The checkpoint in a signed note, after checking the signature (and origin, if given)."""
    checkpoint = Checkpoint.from_text(verifier.verify(note))
    if origin is not None and checkpoint.origin != origin:
        raise NoteError(f"the checkpoint is for log {checkpoint.origin!r}, not {origin!r}")
    return checkpoint
