"""Owner key-encryption keys: batch key creation, erasure through the KEK, the purge, and
vaults written before KEKs existed (every key wrapped by the master key)."""

from __future__ import annotations

import secrets
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crypto.errors import ScopeErased
from crypto.fields import NONCE_BYTES
from crypto.master import KEY_BYTES, MasterKey
from crypto.vault import KEY_ID_BYTES, KeyVault, _wrap_context
from domain.ticket import Ticket
from domain.user import UserKind
from ticketlog.runtime import Runtime

# The vault's schema and check row as the first release wrote them.
OLD_SCHEMA = (
    "CREATE TABLE vault_meta (name TEXT PRIMARY KEY, value BYTEA NOT NULL)",
    "CREATE TABLE data_keys (key_id BYTEA PRIMARY KEY, scope TEXT NOT NULL UNIQUE, owner TEXT,"
    " wrapped BYTEA, created_at TEXT NOT NULL, destroyed_at TEXT)",
    "CREATE INDEX data_keys_owner ON data_keys (owner)",
    "CREATE TABLE legal_holds (owner TEXT PRIMARY KEY, since TEXT NOT NULL)",
)


def _old_vault(path: Path, master: MasterKey, keys: dict[str, str | None]) -> dict[str, bytes]:
    """A vault file in the old layout holding `keys` (scope -> owner); returns raw keys."""
    conn = sqlite3.connect(path)
    raw_keys = {}
    try:
        for statement in OLD_SCHEMA:
            conn.execute(statement)
        check = master.wrap(b"ticketlog master key check v1", b"ticketlog/master-check")
        conn.execute("INSERT INTO vault_meta VALUES ('master_check', ?)", [check])
        for scope, owner in keys.items():
            key_id, raw = secrets.token_bytes(KEY_ID_BYTES), secrets.token_bytes(KEY_BYTES)
            wrapped = master.wrap(raw, _wrap_context(key_id, scope))
            conn.execute(
                "INSERT INTO data_keys (key_id, scope, owner, wrapped, created_at)"
                " VALUES (?, ?, ?, ?, '2026-01-01T00:00:00+00:00')",
                [key_id, scope, owner, wrapped],
            )
            raw_keys[scope] = key_id + raw
        conn.commit()
    finally:
        conn.close()
    return raw_keys


def _wrapped_rows(path: Path) -> dict[str, bytes]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT scope, wrapped FROM data_keys WHERE wrapped IS NOT NULL")
        return {scope: bytes(wrapped) for scope, wrapped in rows}
    finally:
        conn.close()


def _files_holding(directory: Path, needle: bytes) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.is_file() and needle in p.read_bytes())


def _opens(key_aead: AESGCM | None, raw: bytes) -> bool:
    """Whether the vault's key is the raw key: it opens what the raw key sealed."""
    assert key_aead is not None
    nonce = secrets.token_bytes(NONCE_BYTES)
    return key_aead.decrypt(nonce, AESGCM(raw).encrypt(nonce, b"x", None), None) == b"x"


def test_an_old_layout_vault_still_reads_and_erases(tmp_path: Path) -> None:
    path, master = tmp_path / "keys.db", MasterKey.generate()
    old = _old_vault(
        path,
        master,
        {"user:alice": "user:alice", "ticket:t1": "user:alice", "user:bob": "user:bob"},
    )
    before = _wrapped_rows(path)
    with closing(KeyVault.open_sqlite(path, master)) as vault:
        for scope, key_and_raw in old.items():
            key = vault.key_by_id(key_and_raw[:KEY_ID_BYTES])
            assert key.scope == scope
            assert _opens(key.aead, key_and_raw[KEY_ID_BYTES:])
        # A new ticket of an old person gets a key under her (new) KEK.
        t2 = vault.key_for_writing("ticket:t2", "user:alice")
        assert vault.owned_scopes("user:alice") == [
            ("ticket:t1", False),
            ("ticket:t2", False),
            ("user:alice", False),
        ]

        destruction = vault.destroy_owned_by("user:alice")
        assert destruction.destroyed_now == ["ticket:t1", "ticket:t2", "user:alice"]
        for scope in ("user:alice", "ticket:t1"):
            assert vault.key_by_id(old[scope][:KEY_ID_BYTES]).destroyed
            assert vault.is_destroyed(scope)
        assert vault.key_by_id(t2.key_id).destroyed
        assert not vault.key_by_id(old["user:bob"][:KEY_ID_BYTES]).destroyed
        with pytest.raises(ScopeErased):
            vault.key_for_writing("ticket:t3", "user:alice")
        vault.wait_purged()
        for scope in ("user:alice", "ticket:t1"):
            assert _files_holding(tmp_path, before[scope]) == []
        assert _files_holding(tmp_path, before["user:bob"])
        assert set(_wrapped_rows(path)) == {"user:bob"}
    with closing(KeyVault.open_sqlite(path, master)) as reopened:
        assert reopened.is_destroyed("ticket:t2")
        with pytest.raises(ScopeErased):
            reopened.key_for_writing("user:alice", "user:alice")


def test_an_old_layout_tombstone_still_refuses_new_keys(tmp_path: Path) -> None:
    path, master = tmp_path / "keys.db", MasterKey.generate()
    _old_vault(path, master, {"user:carol": "user:carol"})
    conn = sqlite3.connect(path)
    conn.execute("UPDATE data_keys SET wrapped=NULL, destroyed_at=created_at")
    conn.commit()
    conn.close()
    with closing(KeyVault.open_sqlite(path, master)) as vault, pytest.raises(ScopeErased):
        vault.key_for_writing("ticket:t9", "user:carol")


def test_erasure_destroys_one_kek_and_the_purge_empties_what_it_wrapped(tmp_path: Path) -> None:
    path, master = tmp_path / "keys.db", MasterKey.generate()
    with closing(KeyVault.open_sqlite(path, master)) as vault:
        tickets = vault.keys_for_writing((f"ticket:t{i}", "user:dan") for i in range(50))
        vault.key_for_writing("user:dan", "user:dan")
        vault.key_for_writing("ticket:x", "user:eve")
        destruction = vault.destroy_owned_by("user:dan")
        assert len(destruction.destroyed_now) == 51
        # Unreadable at once, whether or not the purge has run yet.
        assert all(vault.key_by_id(k.key_id).destroyed for k in tickets.values())
        assert all(destroyed for _, destroyed in vault.owned_scopes("user:dan"))
        vault.wait_purged()
        assert set(_wrapped_rows(path)) == {"ticket:x"}


def test_rows_left_by_a_crash_before_the_purge_are_purged_at_open(tmp_path: Path) -> None:
    path, master = tmp_path / "keys.db", MasterKey.generate()
    vault = KeyVault.open_sqlite(path, master)
    vault.keys_for_writing([("user:fay", "user:fay"), ("ticket:t1", "user:fay")])
    vault.close()
    wrapped = _wrapped_rows(path)
    # What an erasure that crashed right after its commit leaves: the KEK gone, rows not yet.
    conn = sqlite3.connect(path)
    conn.execute("UPDATE owner_keys SET wrapped=NULL, destroyed_at=created_at")
    conn.commit()
    conn.close()
    with closing(KeyVault.open_sqlite(path, master)) as vault:
        assert vault.is_destroyed("ticket:t1")
        vault.wait_purged()
        assert _wrapped_rows(path) == {}
        assert _files_holding(tmp_path, wrapped["ticket:t1"]) == []


def test_a_save_that_needs_a_key_of_an_erased_person_creates_no_keys(runtime: Runtime) -> None:
    desk = runtime.desk
    kept = desk.register_user(UserKind.CUSTOMER, "Kept Person", "kept@example.com")
    gone = desk.register_user(UserKind.CUSTOMER, "Gone Person", "gone@example.com")
    desk.erase_subject(gone)
    before = runtime.vault.owned_scopes(f"user:{kept}")
    batch = [Ticket.open(kept, f"Subject {i}", "Body", desk.clock()) for i in range(5)]
    batch.append(Ticket.open(gone, "Subject", "Body", desk.clock()))
    with pytest.raises(ScopeErased):
        desk.save(*batch)
    assert runtime.vault.owned_scopes(f"user:{kept}") == before

    # Without the erased person, one save creates every ticket's key and seals under it.
    batch = [Ticket.open(kept, f"Subject {i}", "Body", desk.clock()) for i in range(5)]
    assert len(desk.save(*batch)) == 5
    assert len(runtime.vault.owned_scopes(f"user:{kept}")) == len(before) + 5
    for ticket in batch:
        assert desk.repository.get(ticket.id).subject == ticket.subject
