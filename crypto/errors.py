"""Errors of the crypto layer. Messages name scopes and key ids, never personal values."""


class CryptoError(Exception):
    code = "crypto_error"


class KeyVaultError(CryptoError):
    """The key vault cannot be used (missing, corrupt, or not the vault this log needs)."""

    code = "key_vault_error"


class WrongMasterKey(KeyVaultError):
    code = "wrong_master_key"


class DestructionUnfinished(KeyVaultError):
    """Keys are destroyed, but a reader of the vault kept their old page images on disk: the
    erasure is not done until it is repeated (which finds nothing left to destroy)."""

    code = "erasure_unfinished"


class UnknownKey(KeyVaultError):
    """A sealed value names a key the vault never had: the vault does not match the log."""

    code = "unknown_key"


class ScopeErased(CryptoError):
    """New personal data was about to be written under a destroyed key."""

    code = "subject_erased"

    def __init__(self, scope: str) -> None:
        super().__init__(f"the data of {scope} has been erased; nothing new can be stored for it")
        self.scope = scope


class TamperedData(CryptoError):
    """A sealed value failed authentication: it was altered or moved."""

    code = "tampered_data"


class HeldByLaw(CryptoError):
    """A legal hold forbids destroying this person's keys until it is released."""

    code = "legal_hold"

    def __init__(self, owner: str) -> None:
        super().__init__(f"a legal hold on {owner} forbids destroying their keys")
        self.owner = owner
