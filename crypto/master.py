"""The master key that wraps every data key (envelope encryption)."""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crypto.errors import KeyVaultError

KEY_BYTES = 32
NONCE_BYTES = 12


class MasterKey:
    """A 256-bit key used only to wrap and unwrap data keys."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise KeyVaultError(f"the master key must be {KEY_BYTES} bytes, got {len(key)}")
        self._aead = AESGCM(key)

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def from_text(cls, text: str) -> MasterKey:
        """Parse the base64 form used in TICKETLOG_MASTER_KEY and in key files."""
        try:
            raw = base64.urlsafe_b64decode(text.strip().encode() + b"==")
        except (binascii.Error, ValueError) as e:
            raise KeyVaultError("the master key is not valid base64") from e
        return cls(raw)

    @staticmethod
    def new_text() -> str:
        return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode().rstrip("=")

    @classmethod
    def load_or_create_file(cls, path: Path, *, may_create: bool) -> MasterKey:
        """Read the key file, or create it (mode 0600) when there is nothing yet to unlock."""
        if path.exists():
            return cls.from_text(path.read_text())
        if not may_create:
            raise KeyVaultError(
                f"master key file {path} is missing but the key vault already holds keys; "
                "restore the master key (or set TICKETLOG_MASTER_KEY) — a new one would make "
                "every stored personal field unreadable"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        text = cls.new_text()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text + "\n")
        return cls.from_text(text)

    def wrap(self, data_key: bytes, context: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data_key, context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        # InvalidTag propagates: the caller knows whether that means a wrong key or corruption.
        return self._aead.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], context)
