"""Crypto-shredding: per-subject data keys, sealed personal fields, and the event mapper.

Every personal field is sealed (AES-256-GCM) under the data key of each data subject it
belongs to. Data keys live in a key vault, wrapped by a master key. Destroying a subject's keys
makes all of their data unreadable everywhere at once, without touching the log.
"""

from crypto.errors import (
    CryptoError,
    KeyVaultError,
    ScopeErased,
    TamperedData,
    UnknownKey,
    WrongMasterKey,
)
from crypto.fields import Sealed
from crypto.master import MasterKey
from crypto.vault import DataKey, KeyVault

__all__ = [
    "CryptoError",
    "DataKey",
    "KeyVault",
    "KeyVaultError",
    "MasterKey",
    "ScopeErased",
    "Sealed",
    "TamperedData",
    "UnknownKey",
    "WrongMasterKey",
]
