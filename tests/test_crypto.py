"""The crypto layer: master key, key vault, sealed fields, and the mapper inside the help desk.

Everything runs on real SQLite files in tmp_path (and, through the `runtime` fixture, on
PostgreSQL too); nothing is mocked.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import secrets
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crypto.errors import KeyVaultError, ScopeErased, TamperedData, UnknownKey, WrongMasterKey
from crypto.fields import NONCE_BYTES, Sealed, open_sealed, seal
from crypto.master import KEY_BYTES, MasterKey
from crypto.vault import KEY_ID_BYTES, DataKey, KeyVault, _kek_context, _wrap_context
from domain.personal import ERASED
from domain.ticket import Priority, Ticket
from domain.user import User, UserKind
from ticketlog.config import Settings
from ticketlog.runtime import Runtime

# Helpers


def _vault(path: Path, master: MasterKey) -> KeyVault:
    return KeyVault.open_sqlite(path, master)


def _same_key(a: MasterKey, b: MasterKey) -> bool:
    """Whether two master keys are the same key (what one wraps, the other unwraps)."""
    data, context = secrets.token_bytes(KEY_BYTES), b"test-context"
    try:
        return b.unwrap(a.wrap(data, context), context) == data
    except Exception:
        return False


def _rows(path: Path) -> list[tuple[bytes, str, str | None, bytes | None]]:
    """Every row of data_keys, read with a separate sqlite3 connection."""
    conn = sqlite3.connect(path)
    try:
        return [
            (bytes(r[0]), r[1], r[2], None if r[3] is None else bytes(r[3]))
            for r in conn.execute("SELECT key_id, scope, owner, wrapped FROM data_keys")
        ]
    finally:
        conn.close()


def _wrapped(path: Path, scope: str) -> bytes:
    wrapped = {s: w for _, s, _, w in _rows(path)}[scope]
    assert wrapped is not None, f"{scope} is already destroyed"
    return wrapped


def _kek_wrapped(path: Path, owner: str) -> bytes | None:
    """The owner's key-encryption key as stored (wrapped by the master key), None if destroyed."""
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT wrapped FROM owner_keys WHERE owner=?", [owner]).fetchone()
    finally:
        conn.close()
    return None if row is None or row[0] is None else bytes(row[0])


def _unwrap_stored(path: Path, master: MasterKey, key: DataKey) -> bytes:
    """A data key's raw bytes, unwrapped from its row as an attacker with the master key would."""
    wrapped = _wrapped(path, key.scope)
    context = _wrap_context(key.key_id, key.scope)
    if key.owner is None:
        return master.unwrap(wrapped, context)
    kek_wrapped = _kek_wrapped(path, key.owner)
    assert kek_wrapped is not None
    kek = AESGCM(master.unwrap(kek_wrapped, _kek_context(key.owner)))
    return kek.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], context)


def _files_holding(directory: Path, needle: bytes) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.is_file() and needle in p.read_bytes())


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: BaseException | None = error
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


def _flip(envelope: str, index: int) -> str:
    raw = bytearray(base64.b64decode(envelope))
    raw[index] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


@pytest.fixture
def master() -> MasterKey:
    return MasterKey.generate()


@pytest.fixture
def keys_path(tmp_path: Path) -> Path:
    return tmp_path / "vault" / "keys.db"


@pytest.fixture
def vault(keys_path: Path, master: MasterKey) -> Iterator[KeyVault]:
    v = _vault(keys_path, master)
    yield v
    v.close()


# MasterKey


def test_master_key_text_round_trip() -> None:
    text = MasterKey.new_text()
    assert "=" not in text
    assert len(base64.urlsafe_b64decode(text + "=")) == KEY_BYTES
    a = MasterKey.from_text(text)
    # Key files end with a newline; surrounding whitespace is not part of the key.
    b = MasterKey.from_text(f"  {text}\n")
    assert _same_key(a, b)
    assert not _same_key(a, MasterKey.from_text(MasterKey.new_text()))
    assert MasterKey.new_text() != text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abcde", "not valid base64"),
        ("", "32 bytes"),
        (base64.urlsafe_b64encode(bytes(16)).decode(), "32 bytes"),
        (base64.urlsafe_b64encode(bytes(33)).decode(), "32 bytes"),
        (base64.urlsafe_b64encode(bytes(64)).decode(), "32 bytes"),
    ],
)
def test_master_key_text_must_be_base64_of_32_bytes(text: str, message: str) -> None:
    with pytest.raises(KeyVaultError, match=message):
        MasterKey.from_text(text)


def test_master_key_bytes_must_be_32_long() -> None:
    with pytest.raises(KeyVaultError):
        MasterKey(bytes(31))
    MasterKey(bytes(KEY_BYTES))


def test_load_or_create_file_creates_a_private_key_file(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "nested" / "master.key"
    created = MasterKey.load_or_create_file(path, may_create=True)
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert _same_key(created, MasterKey.from_text(path.read_text()))
    # Once it exists, it is read back (with or without permission to create).
    content = path.read_text()
    assert _same_key(created, MasterKey.load_or_create_file(path, may_create=True))
    assert _same_key(created, MasterKey.load_or_create_file(path, may_create=False))
    assert path.read_text() == content


def test_load_or_create_file_refuses_to_invent_a_key_when_not_allowed(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    with pytest.raises(KeyVaultError, match="missing") as info:
        MasterKey.load_or_create_file(path, may_create=False)
    assert str(path) in str(info.value)
    assert "restore the master key" in str(info.value)
    assert not path.exists()


def test_load_or_create_file_rejects_a_corrupt_key_file(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_text("not a key\n")
    with pytest.raises(KeyVaultError):
        MasterKey.load_or_create_file(path, may_create=True)
    assert path.read_text() == "not a key\n"


# KeyVault


def test_wrong_master_key_is_refused(keys_path: Path, master: MasterKey) -> None:
    v = _vault(keys_path, master)
    v.key_for_writing("user:alice", "user:alice")
    v.close()
    with pytest.raises(WrongMasterKey):
        _vault(keys_path, MasterKey.generate())
    # The failed attempt did not rebind the vault to the wrong key.
    again = _vault(keys_path, master)
    try:
        assert not again.key_for_writing("user:alice", "user:alice").destroyed
    finally:
        again.close()


def test_wrong_master_key_is_refused_even_on_an_empty_vault(
    keys_path: Path, master: MasterKey
) -> None:
    _vault(keys_path, master).close()
    with pytest.raises(WrongMasterKey):
        _vault(keys_path, MasterKey.generate())


def test_key_for_writing_creates_once(keys_path: Path, master: MasterKey) -> None:
    v = _vault(keys_path, master)
    first = v.key_for_writing("user:alice", "user:alice")
    assert len(first.key_id) == KEY_ID_BYTES
    assert (first.scope, first.owner, first.destroyed) == ("user:alice", "user:alice", False)
    assert v.key_for_writing("user:alice", "user:alice").key_id == first.key_id
    sealed = Sealed("o", 1, "f", seal("hello", [first], "o", 1, "f"))
    v.close()
    assert len(_rows(keys_path)) == 1

    # Reopened, the same key (same id, same material) comes back.
    reopened = _vault(keys_path, master)
    try:
        again = reopened.key_for_writing("user:alice", "user:alice")
        assert again.key_id == first.key_id
        assert open_sealed(sealed, reopened) == "hello"
    finally:
        reopened.close()
    assert len(_rows(keys_path)) == 1


def test_ticket_scope_needs_an_owner_to_be_created(vault: KeyVault) -> None:
    with pytest.raises(KeyVaultError):
        vault.key_for_writing("ticket:t1", None)
    created = vault.key_for_writing("ticket:t1", "user:alice")
    # Later writers (comments) do not know the owner; the existing key is found without it.
    assert vault.key_for_writing("ticket:t1", None).key_id == created.key_id
    assert vault.key_for_writing("ticket:t1", None).owner == "user:alice"


def test_destroyed_scope_is_never_recreated(keys_path: Path, master: MasterKey) -> None:
    v = _vault(keys_path, master)
    key = v.key_for_writing("ticket:t1", "user:alice")
    assert v.destroy_scope("ticket:t1") is True
    with pytest.raises(ScopeErased) as info:
        v.key_for_writing("ticket:t1", "user:alice")
    assert info.value.scope == "ticket:t1"
    assert v.is_destroyed("ticket:t1")
    v.close()

    reopened = _vault(keys_path, master)
    try:
        with pytest.raises(ScopeErased):
            reopened.key_for_writing("ticket:t1", "user:alice")
        assert reopened.key_by_id(key.key_id).destroyed
    finally:
        reopened.close()
    rows = _rows(keys_path)
    assert [(kid, scope, wrapped) for kid, scope, _, wrapped in rows] == [
        (key.key_id, "ticket:t1", None)
    ]


def test_key_by_id_of_an_unknown_id_raises(vault: KeyVault) -> None:
    vault.key_for_writing("user:alice", "user:alice")
    unknown = secrets.token_bytes(KEY_ID_BYTES)
    with pytest.raises(UnknownKey, match=unknown.hex()):
        vault.key_by_id(unknown)


def test_destroy_owned_by_destroys_the_person_and_their_tickets_only(vault: KeyVault) -> None:
    alice = vault.key_for_writing("user:alice", "user:alice")
    t1 = vault.key_for_writing("ticket:t1", "user:alice")
    t2 = vault.key_for_writing("ticket:t2", "user:alice")
    bob = vault.key_for_writing("user:bob", "user:bob")
    t3 = vault.key_for_writing("ticket:t3", "user:bob")

    destruction = vault.destroy_owned_by("user:alice")

    expected = ["ticket:t1", "ticket:t2", "user:alice"]
    assert destruction.destroyed_now == expected
    assert destruction.destroyed_total == expected
    for key in (alice, t1, t2):
        assert vault.key_by_id(key.key_id).destroyed
    for key in (bob, t3):
        assert not vault.key_by_id(key.key_id).destroyed
    assert vault.key_for_writing("user:bob", "user:bob").key_id == bob.key_id
    assert vault.owned_scopes("user:alice") == [(s, True) for s in expected]
    assert vault.owned_scopes("user:bob") == [("ticket:t3", False), ("user:bob", False)]

    again = vault.destroy_owned_by("user:alice")
    assert again.destroyed_now == []
    assert again.destroyed_total == expected


def test_destroy_owned_by_reports_scopes_destroyed_earlier(vault: KeyVault) -> None:
    vault.key_for_writing("user:alice", "user:alice")
    vault.key_for_writing("ticket:t1", "user:alice")
    vault.key_for_writing("ticket:t2", "user:alice")
    assert vault.destroy_scope("ticket:t1")
    destruction = vault.destroy_owned_by("user:alice")
    assert destruction.destroyed_now == ["ticket:t2", "user:alice"]
    assert destruction.destroyed_total == ["ticket:t1", "ticket:t2", "user:alice"]


def test_destroy_owned_by_a_person_without_keys_leaves_a_tombstone(
    keys_path: Path, master: MasterKey
) -> None:
    v = _vault(keys_path, master)
    destruction = v.destroy_owned_by("user:carol")
    assert destruction.destroyed_now == []
    assert destruction.destroyed_total == ["user:carol"]
    assert v.is_destroyed("user:carol")
    with pytest.raises(ScopeErased):
        v.key_for_writing("user:carol", "user:carol")
    # Nor can a new key be made for something she would own.
    with pytest.raises(ScopeErased):
        v.key_for_writing("ticket:t9", "user:carol")
    v.close()

    reopened = _vault(keys_path, master)
    try:
        with pytest.raises(ScopeErased):
            reopened.key_for_writing("user:carol", "user:carol")
        with pytest.raises(ScopeErased):
            reopened.key_for_writing("ticket:t9", "user:carol")
    finally:
        reopened.close()
    assert [(scope, wrapped) for _, scope, _, wrapped in _rows(keys_path)] == [("user:carol", None)]


def test_destroy_scope_destroys_one_ticket_alone(vault: KeyVault) -> None:
    alice = vault.key_for_writing("user:alice", "user:alice")
    t1 = vault.key_for_writing("ticket:t1", "user:alice")
    t2 = vault.key_for_writing("ticket:t2", "user:alice")

    assert vault.destroy_scope("ticket:t1") is True

    assert vault.key_by_id(t1.key_id).destroyed
    assert not vault.key_by_id(t2.key_id).destroyed
    assert not vault.key_by_id(alice.key_id).destroyed
    assert vault.key_for_writing("ticket:t2", None).key_id == t2.key_id
    assert vault.key_for_writing("user:alice", "user:alice").key_id == alice.key_id
    assert vault.destroy_scope("ticket:t1") is False
    assert vault.destroy_scope("ticket:never-made") is False


def test_cached_keys_report_destruction_at_once(vault: KeyVault) -> None:
    user = vault.key_for_writing("user:alice", "user:alice")
    ticket = vault.key_for_writing("ticket:t1", "user:alice")
    # Warm the cache through both paths.
    assert not vault.key_by_id(user.key_id).destroyed
    assert not vault.key_by_id(ticket.key_id).destroyed

    vault.destroy_scope("ticket:t1")
    assert vault.key_by_id(ticket.key_id).destroyed
    with pytest.raises(ScopeErased):
        vault.key_for_writing("ticket:t1", None)
    assert not vault.key_by_id(user.key_id).destroyed

    vault.destroy_owned_by("user:alice")
    assert vault.key_by_id(user.key_id).destroyed
    with pytest.raises(ScopeErased):
        vault.key_for_writing("user:alice", "user:alice")


def test_another_vault_sees_a_destruction_once_its_cache_is_dropped(
    keys_path: Path, master: MasterKey
) -> None:
    writer = _vault(keys_path, master)
    reader = _vault(keys_path, master)
    try:
        key = writer.key_for_writing("user:alice", "user:alice")
        assert not reader.key_by_id(key.key_id).destroyed
        writer.destroy_owned_by("user:alice")
        reader.forget_cached()
        assert reader.key_by_id(key.key_id).destroyed
        with pytest.raises(ScopeErased):
            reader.key_for_writing("user:alice", "user:alice")
    finally:
        reader.close()
        writer.close()


def test_hot_keys_are_served_from_the_cache(keys_path: Path, master: MasterKey) -> None:
    v = _vault(keys_path, master)
    key = v.key_for_writing("user:alice", "user:alice")
    v.close()

    fresh = _vault(keys_path, master)
    try:
        assert fresh.lookups == 0
        assert fresh.key_by_id(key.key_id).key_id == key.key_id
        after_first = fresh.lookups
        assert after_first == 1
        for _ in range(200):
            fresh.key_by_id(key.key_id)
            fresh.key_for_writing("user:alice", "user:alice")
        assert fresh.lookups == after_first
    finally:
        fresh.close()


# Destroyed key material on disk


def test_destroyed_key_material_is_gone_from_every_vault_file(
    keys_path: Path, master: MasterKey
) -> None:
    v = _vault(keys_path, master)
    for i in range(40):  # enough rows for several pages and a busy WAL
        v.key_for_writing(f"user:u{i}", f"user:u{i}")
        v.key_for_writing(f"ticket:t{i}", f"user:u{i}")
    victims = {
        "user:u7": v.key_for_writing("user:u7", "user:u7"),
        "ticket:t7": v.key_for_writing("ticket:t7", None),
        "ticket:t20": v.key_for_writing("ticket:t20", None),
    }
    survivor_wrapped = _wrapped(keys_path, "user:u8")
    kek = _kek_wrapped(keys_path, "user:u7")
    assert kek is not None
    assert _files_holding(keys_path.parent, kek)
    material: dict[str, list[bytes]] = {}
    for scope, key in victims.items():
        wrapped = _wrapped(keys_path, scope)
        raw = _unwrap_stored(keys_path, master, key)
        # It really is the data key: it opens what the vault's key sealed.
        assert key.aead is not None
        nonce = secrets.token_bytes(NONCE_BYTES)
        assert AESGCM(raw).decrypt(nonce, key.aead.encrypt(nonce, b"x", None), None) == b"x"
        material[scope] = [wrapped, wrapped[12:28], raw]
    directory = keys_path.parent
    # The scan can see key material at all: before destruction it is on disk somewhere.
    for scope, (wrapped, _, _) in material.items():
        assert _files_holding(directory, wrapped), scope

    assert v.destroy_owned_by("user:u7").destroyed_now == ["ticket:t7", "user:u7"]
    assert v.destroy_scope("ticket:t20")
    # The owner's key-encryption key is gone at once: every key it wrapped is unrecoverable.
    assert _files_holding(directory, kek) == []
    assert _files_holding(directory, kek[12:28]) == []
    v.wait_purged()  # then the purge empties the rows it wrapped

    def leftovers() -> list[tuple[str, int, list[str]]]:
        return [
            (scope, n, files)
            for scope, needles in material.items()
            for n, needle in enumerate(needles)
            if (files := _files_holding(directory, needle))
        ]

    assert leftovers() == []  # vault still open: keys.db, keys.db-wal and keys.db-shm
    assert _files_holding(directory, survivor_wrapped)
    v.close()
    assert leftovers() == []
    assert _files_holding(directory, survivor_wrapped)


def test_destroyed_key_material_is_gone_even_while_another_connection_reads(
    keys_path: Path, master: MasterKey
) -> None:
    v = _vault(keys_path, master)
    try:
        for i in range(5):
            v.key_for_writing(f"user:u{i}", f"user:u{i}")
        wrapped = _wrapped(keys_path, "user:u3")
        kek = _kek_wrapped(keys_path, "user:u3")
        assert kek is not None
        # Another process reading the vault (a second CLI, a backup) holds a snapshot for a
        # while: the destruction waits for it, then leaves nothing behind.
        reading = threading.Event()

        def read_for_a_while() -> None:
            reader = sqlite3.connect(keys_path, isolation_level=None)
            try:
                reader.execute("BEGIN")
                reader.execute("SELECT count(*) FROM data_keys").fetchone()
                reading.set()
                time.sleep(0.5)
                reader.execute("COMMIT")
            finally:
                reader.close()

        thread = threading.Thread(target=read_for_a_while)
        thread.start()
        assert reading.wait(5)
        v.destroy_owned_by("user:u3")
        thread.join()
        assert _files_holding(keys_path.parent, kek) == []
        v.wait_purged()
        v.key_for_writing("user:u9", "user:u9")  # the vault keeps working afterwards
        assert _files_holding(keys_path.parent, wrapped) == []
    finally:
        v.close()


def test_a_reader_holding_the_vault_past_the_timeout_fails_the_destruction_until_repeated(
    keys_path: Path, master: MasterKey
) -> None:
    v = KeyVault.open_sqlite(keys_path, master, busy_timeout=0.2)
    for i in range(5):
        v.key_for_writing(f"user:u{i}", f"user:u{i}")
    kek = _kek_wrapped(keys_path, "user:u3")
    assert kek is not None
    reader = sqlite3.connect(keys_path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM owner_keys").fetchone()  # holds its snapshot
        # The keys are destroyed, but their old pages are still on disk: the caller hears so
        # and must not report the erasure done.
        with pytest.raises(KeyVaultError, match="repeat the erasure"):
            v.destroy_owned_by("user:u3")
        assert _files_holding(keys_path.parent, kek)
        assert v.key_for_writing("user:u4", "user:u4").aead is not None  # the vault still works
        with pytest.raises(ScopeErased):
            v.key_for_writing("user:u3", "user:u3")
        reader.execute("COMMIT")
        # Repeated, the erasure finishes: nothing new to destroy, and no file holds the key.
        assert v.destroy_owned_by("user:u3").destroyed_now == []
        assert _files_holding(keys_path.parent, kek) == []

        # A vault opened after a destruction that never got its checkpoint (a crash, or a
        # reader, in between) removes the old pages itself.
        kek = _kek_wrapped(keys_path, "user:u1")
        assert kek is not None
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM owner_keys").fetchone()
        with pytest.raises(KeyVaultError):
            v.destroy_owned_by("user:u1")
        v.close()  # the reader still has the file open, so the WAL outlives this connection
        reader.execute("COMMIT")
        assert _files_holding(keys_path.parent, kek)
        v = KeyVault.open_sqlite(keys_path, master, busy_timeout=0.2)
        assert _files_holding(keys_path.parent, kek) == []
    finally:
        reader.close()
        v.close()


# Sealed fields


@pytest.fixture
def layers(vault: KeyVault) -> list[DataKey]:
    """A ticket key (innermost) and its commenter's key, like an agent's comment."""
    return [
        vault.key_for_writing("ticket:t1", "user:alice"),
        vault.key_for_writing("user:agent", "user:agent"),
    ]


@pytest.mark.parametrize(
    "value",
    [
        "Quentin's card ends 9921",
        None,
        "",
        'Zoë Ångström — 東京都 🎫 \u0000 \\ "quoted"',
        "long " * 50_000,
        {"nested": ["json", 1, 2.5, True, None]},
    ],
    ids=["str", "none", "empty", "unicode", "long", "json"],
)
@pytest.mark.parametrize("n_layers", [1, 2])
def test_seal_and_open_round_trip(
    vault: KeyVault, layers: list[DataKey], value: Any, n_layers: int
) -> None:
    used = layers[:n_layers]
    envelope = seal(value, used, "origin-1", 3, "body")
    sealed = Sealed("origin-1", 3, "body", envelope)
    assert sealed.key_ids == [k.key_id for k in used]
    assert open_sealed(sealed, vault) == value
    assert Sealed.from_text(sealed.to_text()) == sealed
    if isinstance(value, str) and value:
        assert value.encode() not in base64.b64decode(envelope)


def test_sealing_twice_gives_different_envelopes(layers: list[DataKey]) -> None:
    assert seal("same", layers, "o", 1, "f") != seal("same", layers, "o", 1, "f")


@pytest.mark.parametrize("destroyed", [0, 1, 2])
def test_destroying_any_layer_erases_the_value(vault: KeyVault, destroyed: int) -> None:
    scopes = ["ticket:t1", "user:bob", "user:carol"]
    keys = [
        vault.key_for_writing("ticket:t1", "user:alice"),
        vault.key_for_writing("user:bob", "user:bob"),
        vault.key_for_writing("user:carol", "user:carol"),
    ]
    sealed = Sealed("o", 2, "body", seal("secret", keys, "o", 2, "body"))
    other = Sealed("o", 3, "body", seal("other", [keys[(destroyed + 1) % 3]], "o", 3, "body"))
    assert open_sealed(sealed, vault) == "secret"

    assert vault.destroy_scope(scopes[destroyed])

    assert open_sealed(sealed, vault) is ERASED
    assert open_sealed(other, vault) == "other"


def test_erasing_the_ticket_owner_erases_every_layered_value(
    vault: KeyVault, layers: list[DataKey]
) -> None:
    sealed = Sealed("o", 2, "body", seal("secret", layers, "o", 2, "body"))
    vault.destroy_owned_by("user:alice")
    assert open_sealed(sealed, vault) is ERASED


@pytest.mark.parametrize(
    "change",
    [
        {"originator_id": "another-origin"},
        {"version": 4},
        {"field": "subject"},
    ],
    ids=["originator_id", "version", "field"],
)
def test_a_sealed_value_is_bound_to_where_it_was_stored(
    vault: KeyVault, layers: list[DataKey], change: dict[str, Any]
) -> None:
    for used in (layers[:1], layers):
        sealed = Sealed("origin-1", 3, "body", seal("secret", used, "origin-1", 3, "body"))
        moved = dataclasses.replace(sealed, **change)
        with pytest.raises(TamperedData):
            open_sealed(moved, vault)


@pytest.mark.parametrize("n_layers", [1, 2])
@pytest.mark.parametrize("where", ["nonce", "first", "middle", "tag"])
def test_a_flipped_ciphertext_byte_is_detected(
    vault: KeyVault, layers: list[DataKey], n_layers: int, where: str
) -> None:
    envelope = seal("a secret long enough to have a middle", layers[:n_layers], "o", 1, "body")
    header = 2 + n_layers * KEY_ID_BYTES
    size = len(base64.b64decode(envelope))
    index = {
        "nonce": header,
        "first": header + NONCE_BYTES,
        "middle": (header + size) // 2,
        "tag": size - 1,
    }[where]
    with pytest.raises(TamperedData):
        open_sealed(Sealed("o", 1, "body", _flip(envelope, index)), vault)


def test_an_unknown_envelope_version_is_tampering(vault: KeyVault, layers: list[DataKey]) -> None:
    envelope = seal("secret", layers, "o", 1, "body")
    with pytest.raises(TamperedData):
        open_sealed(Sealed("o", 1, "body", _flip(envelope, 0)), vault)


def test_a_key_id_changed_to_a_foreign_one_is_unknown(
    vault: KeyVault, layers: list[DataKey]
) -> None:
    envelope = seal("secret", layers, "o", 1, "body")
    with pytest.raises(UnknownKey):
        open_sealed(Sealed("o", 1, "body", _flip(envelope, 2)), vault)


def test_stripping_inner_layers_from_the_header_is_tampering(
    vault: KeyVault, layers: list[DataKey]
) -> None:
    raw = base64.b64decode(seal("secret", layers, "o", 1, "body"))
    outer = layers[-1]
    stripped = bytes([raw[0], 1]) + outer.key_id + raw[2 + len(layers) * KEY_ID_BYTES :]
    with pytest.raises(TamperedData):
        open_sealed(Sealed("o", 1, "body", base64.b64encode(stripped).decode()), vault)


@pytest.mark.parametrize("value", ["sealed", "erased"])
def test_seal_refuses_sealed_or_erased_values(layers: list[DataKey], value: str) -> None:
    already: Any = ERASED if value == "erased" else Sealed("o", 1, "f", "AQE=")
    with pytest.raises(TypeError):
        seal(already, layers, "o", 1, "f")


def test_seal_needs_a_key(layers: list[DataKey]) -> None:
    with pytest.raises(ValueError, match="at least one key"):
        seal("x", [], "o", 1, "f")


@pytest.mark.parametrize("envelope", ["", "AQ==", "AQE=", "!!notbase64!!", "AgE" + "A" * 60])
def test_malformed_envelopes_are_tampering(vault: KeyVault, envelope: str) -> None:
    with pytest.raises(TamperedData):
        open_sealed(Sealed("o", 1, "body", envelope), vault)


# The mapper inside the help desk (SQLite and PostgreSQL event stores)

PERSON = {
    "name": "Ottoline Fizzwhistle",
    "email": "ottoline.fizzwhistle@unique-mail.example",
    "phone": "+44 7700 900457",
    "organization": "Fizzwhistle Lanterns Ltd",
}
SUBJECT = "Lantern order LX-90817 never arrived"
BODY = "Deliver to 4 Grimbleshanks Row, my code is 7731"
OWN_COMMENT = "Still waiting on LX-90817, Ottoline"
AGENT_COMMENT = "Dispatched again to Grimbleshanks Row"
OTHER_COMMENT = "Same for me: Pemberton-Quayle here"
NEEDLES = [
    *PERSON.values(),
    SUBJECT,
    BODY,
    OWN_COMMENT,
    AGENT_COMMENT,
    OTHER_COMMENT,
    "Fizzwhistle",
    "Grimbleshanks",
    "LX-90817",
    "Pemberton",
]


@dataclasses.dataclass
class Scene:
    requester: UUID
    agent: UUID
    other: UUID
    ticket: UUID
    own_comment: int
    agent_comment: int
    other_comment: int


def _stage(runtime: Runtime) -> Scene:
    desk = runtime.desk
    requester = desk.register_user(UserKind.CUSTOMER, **PERSON)
    agent = desk.register_user(UserKind.AGENT, "Agent Pomfrey-Nib", "pomfrey@desk.example")
    other = desk.register_user(
        UserKind.CUSTOMER, "Pemberton-Quayle", "pq@elsewhere.example", organization="Quayle Co"
    )
    ticket = desk.open_ticket(requester, SUBJECT, BODY, priority=Priority.HIGH, tags=["Billing"])
    desk.assign(ticket, agent)
    desk.add_comment(ticket, requester, OWN_COMMENT, public=True)
    desk.add_comment(ticket, agent, AGENT_COMMENT, public=True)
    desk.add_comment(ticket, other, OTHER_COMMENT, public=True)
    # The comments' event versions, read from the log (not from add_comment's return value).
    version_of = {
        e.author_id: e.originator_version
        for e in desk.ticket_history(ticket)
        if isinstance(e, Ticket.CommentAdded)
    }
    return Scene(
        requester=requester,
        agent=agent,
        other=other,
        ticket=ticket,
        own_comment=version_of[requester],
        agent_comment=version_of[agent],
        other_comment=version_of[other],
    )


def _stored(runtime: Runtime) -> list[Any]:
    notifications = list(runtime.desk.recorder.select_notifications(start=None, limit=100))
    assert notifications
    return notifications


def _stored_event(runtime: Runtime, originator: UUID, version: int) -> Any:
    [found] = [
        n
        for n in _stored(runtime)
        if str(n.originator_id).replace("-", "") == originator.hex
        and n.originator_version == version
    ]
    return found


def _state(notification: Any) -> dict[str, Any]:
    state: dict[str, Any] = json.loads(bytes(notification.state))
    return state


def test_stored_events_hold_no_plaintext_but_keep_the_rest_readable(runtime: Runtime) -> None:
    scene = _stage(runtime)
    stored = _stored(runtime)
    for n in stored:
        raw = bytes(n.state)
        assert [s for s in NEEDLES if s.encode() in raw] == [], n.topic
        assert [s for s in NEEDLES if s.lower().encode() in raw.lower()] == [], n.topic

    by_topic: dict[str, list[dict[str, Any]]] = {}
    for n in stored:
        by_topic.setdefault(n.topic.rsplit(":", 1)[1], []).append(_state(n))

    [opened] = by_topic["Ticket.Opened"]
    assert opened["priority"] == "high"
    assert opened["tags"] == ["billing"]
    assert scene.requester.hex in json.dumps(opened["requester_id"])
    for field in ("subject", "body"):
        assert isinstance(opened[field], str)
        assert opened[field] not in (SUBJECT, BODY)
    assert [s["status"] for s in by_topic["Ticket.StatusChanged"]] == ["open"]
    assert scene.agent.hex in json.dumps(by_topic["Ticket.Assigned"][0]["assignee_id"])
    assert {s["kind"] for s in by_topic["User.Registered"]} == {"customer", "agent"}
    comments = by_topic["Ticket.CommentAdded"]
    assert [s["public"] for s in comments] == [True, True, True]
    for author, comment in zip((scene.requester, scene.agent, scene.other), comments, strict=True):
        assert author.hex in json.dumps(comment["author_id"])


def test_history_opens_personal_fields(runtime: Runtime) -> None:
    scene = _stage(runtime)
    [registered] = runtime.desk.history(scene.requester)
    assert isinstance(registered, User.Registered)
    assert {f: getattr(registered, f) for f in PERSON} == PERSON

    events = runtime.desk.ticket_history(scene.ticket)
    opened = events[0]
    assert isinstance(opened, Ticket.Opened)
    assert (opened.subject, opened.body) == (SUBJECT, BODY)
    bodies = [e.body for e in events if isinstance(e, Ticket.CommentAdded)]
    assert bodies == [OWN_COMMENT, AGENT_COMMENT, OTHER_COMMENT]


def test_erasure_erases_personal_fields_and_keeps_the_rest(runtime: Runtime) -> None:
    scene = _stage(runtime)
    report = runtime.desk.erase_subject(scene.requester)
    assert not report.already_erased
    assert set(report.keys_destroyed_now) == {
        f"user:{scene.requester}",
        f"ticket:{scene.ticket}",
    }

    registered, erased = runtime.desk.history(scene.requester)
    assert isinstance(registered, User.Registered)
    assert isinstance(erased, User.SubjectErased)
    assert all(getattr(registered, f) is ERASED for f in PERSON)
    assert registered.kind == "customer"
    assert erased.keys_destroyed == 2

    events = runtime.desk.ticket_history(scene.ticket)
    opened = events[0]
    assert isinstance(opened, Ticket.Opened)
    assert opened.subject is ERASED
    assert opened.body is ERASED
    assert opened.requester_id == scene.requester
    assert opened.priority == "high"
    assert opened.tags == ["billing"]
    assert [e.status for e in events if isinstance(e, Ticket.StatusChanged)] == ["open"]
    comments = [e for e in events if isinstance(e, Ticket.CommentAdded)]
    # The ticket's content is the requester's: every comment on it goes with it.
    assert [c.body for c in comments] == [ERASED, ERASED, ERASED]
    assert [c.author_id for c in comments] == [scene.requester, scene.agent, scene.other]

    # The other people are untouched.
    [agent] = runtime.desk.history(scene.agent)
    assert isinstance(agent, User.Registered)
    assert agent.name == "Agent Pomfrey-Nib"

    again = runtime.desk.erase_subject(scene.requester)
    assert again.already_erased
    assert again.keys_destroyed_now == []
    assert set(again.keys_destroyed) == set(report.keys_destroyed)

    # Still no plaintext anywhere in the stored events.
    for n in _stored(runtime):
        assert [s for s in NEEDLES if s.encode() in bytes(n.state)] == []


def test_erasing_a_commenter_erases_their_comment_only(runtime: Runtime) -> None:
    scene = _stage(runtime)
    runtime.desk.erase_subject(scene.other)

    events = runtime.desk.ticket_history(scene.ticket)
    opened = events[0]
    assert isinstance(opened, Ticket.Opened)
    assert (opened.subject, opened.body) == (SUBJECT, BODY)
    bodies = {e.originator_version: e.body for e in events if isinstance(e, Ticket.CommentAdded)}
    assert bodies == {
        scene.own_comment: OWN_COMMENT,
        scene.agent_comment: AGENT_COMMENT,
        scene.other_comment: ERASED,
    }
    [registered, _] = runtime.desk.history(scene.other)
    assert isinstance(registered, User.Registered)
    assert registered.name is ERASED
    assert registered.organization is ERASED


def test_erasing_an_agent_erases_their_comments_only(runtime: Runtime) -> None:
    scene = _stage(runtime)
    runtime.desk.erase_subject(scene.agent)
    events = runtime.desk.ticket_history(scene.ticket)
    assert isinstance(events[0], Ticket.Opened)
    assert events[0].subject == SUBJECT
    assert [e.body for e in events if isinstance(e, Ticket.CommentAdded)] == [
        OWN_COMMENT,
        ERASED,
        OTHER_COMMENT,
    ]


def test_comment_layers(runtime: Runtime) -> None:
    scene = _stage(runtime)
    vault = runtime.vault
    ticket_key = vault.key_for_writing(f"ticket:{scene.ticket}", None)
    assert ticket_key.owner == f"user:{scene.requester}"

    def key_ids(version: int) -> list[bytes]:
        stored = _stored_event(runtime, scene.ticket, version)
        event = runtime.desk.sealing_mapper.to_domain_event(stored)
        assert isinstance(event, Ticket.CommentAdded)
        assert isinstance(event.body, Sealed)
        assert event.body.version == version
        assert event.body.field == "body"
        return event.body.key_ids

    # The requester's own comment: only the ticket's key (erasing them destroys it anyway).
    assert key_ids(scene.own_comment) == [ticket_key.key_id]
    # Anyone else's: the ticket's key inside, the author's key outside.
    for author, version in ((scene.agent, scene.agent_comment), (scene.other, scene.other_comment)):
        author_key = vault.key_for_writing(f"authored:{author}", f"user:{author}")
        assert key_ids(version) == [ticket_key.key_id, author_key.key_id]

    opened = runtime.desk.sealing_mapper.to_domain_event(_stored_event(runtime, scene.ticket, 1))
    assert isinstance(opened, Ticket.Opened)
    assert isinstance(opened.subject, Sealed)
    assert opened.subject.key_ids == [ticket_key.key_id]
    registered = runtime.desk.sealing_mapper.to_domain_event(
        _stored_event(runtime, scene.requester, 1)
    )
    assert isinstance(registered, User.Registered)
    assert isinstance(registered.email, Sealed)
    assert registered.email.key_ids == [
        vault.key_for_writing(f"user:{scene.requester}", None).key_id
    ]


def test_nothing_new_is_sealed_for_a_person_whose_keys_are_gone(runtime: Runtime) -> None:
    """Keys destroyed but the erasure not yet recorded (a crash in between erase_subject)."""
    scene = _stage(runtime)
    runtime.vault.destroy_owned_by(f"user:{scene.other}")
    with pytest.raises(ScopeErased):
        runtime.desk.open_ticket(scene.other, "New subject", "New body")
    with pytest.raises(ScopeErased):
        runtime.desk.add_comment(scene.ticket, scene.other, "more", public=True)
    with pytest.raises(ScopeErased):
        runtime.desk.update_user(scene.other, {"name": "Someone Else"})
    # Repeating the erasure records it.
    report = runtime.desk.erase_subject(scene.other)
    assert not report.already_erased
    assert report.keys_destroyed_now == []


# Moving stored data around (SQLite event store)


@pytest.fixture
def sqlite_runtime(tmp_path: Path) -> Iterator[Runtime]:
    rt = Runtime.open(Settings(data_dir=tmp_path / "data"))
    yield rt
    rt.close()


def _swap_states(events_db: Path, a: tuple[UUID, int], b: tuple[UUID, int]) -> None:
    conn = sqlite3.connect(events_db, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")

        def where(ref: tuple[UUID, int]) -> tuple[str, list[Any]]:
            return (
                "originator_id IN (?, ?) AND originator_version = ?",
                [ref[0].hex, str(ref[0]), ref[1]],
            )

        states = []
        for ref in (a, b):
            clause, params = where(ref)
            [(state,)] = conn.execute(
                f"SELECT state FROM stored_events WHERE {clause}", params
            ).fetchall()
            states.append(bytes(state))
        for ref, state in ((a, states[1]), (b, states[0])):
            clause, params = where(ref)
            updated = conn.execute(
                f"UPDATE stored_events SET state = ? WHERE {clause}", [state, *params]
            )
            assert updated.rowcount == 1
        conn.execute("COMMIT")
    finally:
        conn.close()


def _raises_tampered(call: Any) -> None:
    with pytest.raises(Exception) as info:  # noqa: PT011 - checked through the cause chain
        call()
    assert any(isinstance(e, TamperedData) for e in _chain(info.value)), repr(info.value)


def test_swapped_user_events_fail_to_open(sqlite_runtime: Runtime) -> None:
    scene = _stage(sqlite_runtime)
    desk = sqlite_runtime.desk
    _swap_states(sqlite_runtime.settings.events_path, (scene.requester, 1), (scene.other, 1))
    _raises_tampered(lambda: desk.history(scene.requester))
    _raises_tampered(lambda: desk.history(scene.other))
    # Untouched streams still read.
    [agent] = desk.history(scene.agent)
    assert isinstance(agent, User.Registered)
    assert agent.name == "Agent Pomfrey-Nib"


def test_swapped_comments_fail_to_open(sqlite_runtime: Runtime) -> None:
    scene = _stage(sqlite_runtime)
    desk = sqlite_runtime.desk
    second = desk.open_ticket(scene.other, "Another subject", "Another body")
    desk.add_comment(second, scene.agent, "A reply elsewhere", public=True)
    [elsewhere] = [
        e.originator_version for e in desk.history(second) if isinstance(e, Ticket.CommentAdded)
    ]
    events_db = sqlite_runtime.settings.events_path

    # Within one ticket: same keys, different version.
    _swap_states(events_db, (scene.ticket, scene.agent_comment), (scene.ticket, scene.own_comment))
    _raises_tampered(lambda: desk.history(scene.ticket))
    _swap_states(events_db, (scene.ticket, scene.agent_comment), (scene.ticket, scene.own_comment))
    assert [e.body for e in desk.history(scene.ticket) if isinstance(e, Ticket.CommentAdded)] == [
        OWN_COMMENT,
        AGENT_COMMENT,
        OTHER_COMMENT,
    ]

    # Across tickets: same author, different originator.
    _swap_states(events_db, (scene.ticket, scene.agent_comment), (second, elsewhere))
    _raises_tampered(lambda: desk.history(scene.ticket))
    _raises_tampered(lambda: desk.history(second))
