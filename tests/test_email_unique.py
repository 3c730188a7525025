"""One user per email address, through a keyed blind index in the key vault."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from eventsourcing.persistence import OperationalError

from api.tokens import Role
from crypto.blind_index import BACKFILLED, EmailIndex, Reservation, canonical_email
from crypto.master import MasterKey
from crypto.vault import KeyVault
from domain.errors import RuleViolation
from domain.user import UserKind
from tests.conftest import Api
from tests.test_cli import run_cli
from tests.test_faults import locked
from ticketlog.certificates import residue_scan
from ticketlog.config import PostgresURL, Settings
from ticketlog.desk import ABANDONED_AFTER
from ticketlog.email_index import backfill_once, reindex
from ticketlog.runtime import Runtime


def _register(api: Api, email: str) -> tuple[int, str | None]:
    r = api.post("/v1/users", {"kind": "customer", "name": "Some One", "email": email})
    return r.status_code, (r.json().get("error") or {}).get("code")


def test_canonical_form_casefolds_the_whole_address() -> None:
    assert canonical_email(" Ada.Lovelace@Example.COM ") == "ada.lovelace@example.com"
    assert canonical_email("STRASSE@x.example") == canonical_email("straße@x.example")


def test_a_taken_address_is_refused_in_any_case_and_nothing_is_stored(api: Api) -> None:
    first = api.user(email="Ada.Lovelace@Example.com")
    recorder = api.runtime.desk.recorder
    head = recorder.max_notification_id()
    for email in ("ada.lovelace@example.com", "ADA.LOVELACE@EXAMPLE.COM"):
        assert _register(api, email) == (409, "email_taken")
    assert recorder.max_notification_id() == head
    assert api.get(f"/v1/users/{first['id']}").json()["email"] == "Ada.Lovelace@example.com"


def test_an_update_to_a_taken_address_is_refused_and_an_update_frees_the_old(api: Api) -> None:
    ann = api.user(email="ann@upd.example")
    bob = api.user(email="bob@upd.example")
    r = api.patch(f"/v1/users/{bob['id']}", {"email": "ANN@upd.example"})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "email_taken")
    assert api.patch(f"/v1/users/{ann['id']}", {"email": "ann.new@upd.example"}).status_code == 200
    # Her own address again in another case is hers, not taken.
    assert api.patch(f"/v1/users/{ann['id']}", {"email": "Ann.New@upd.example"}).status_code == 200
    assert api.patch(f"/v1/users/{bob['id']}", {"name": "Bob Renamed"}).status_code == 200
    assert _register(api, "ann@upd.example")[0] == 201  # freed by her change
    assert _register(api, "ann.new@upd.example") == (409, "email_taken")
    assert _register(api, "bob@upd.example") == (409, "email_taken")
    assert api.patch(f"/v1/users/{uuid.uuid4()}", {"email": "x@upd.example"}).status_code == 404
    assert _register(api, "x@upd.example")[0] == 201  # the unknown id reserved nothing


def test_an_erased_or_anonymized_persons_address_can_be_registered_again(api: Api) -> None:
    gone = api.user(email="gone@erase.example")
    anon = api.user(email="anon@erase.example")
    owner = f"user:{gone['id']}"
    assert api.runtime.desk.emails.digests_of(owner) != []
    r = api.post(f"/v1/subjects/{gone['id']}/erase", role=Role.COMPLIANCE)
    assert r.status_code == 200
    assert api.runtime.desk.emails.digests_of(owner) == []
    assert api.post(f"/v1/subjects/{anon['id']}/anonymize", role=Role.COMPLIANCE).status_code == 200
    assert _register(api, "Gone@erase.example")[0] == 201
    assert _register(api, "anon@erase.example")[0] == 201


def test_concurrent_registrations_of_one_address_make_exactly_one_user(api: Api) -> None:
    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(lambda _: _register(api, "race@conc.example"), range(24)))
    assert sorted(answers, key=str).count((201, None)) == 1
    assert answers.count((409, "email_taken")) == 23


# The vault's own stores: SQLite and PostgreSQL.


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def vault_opener(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[KeyVault, list[KeyVault]]]:
    """A vault, and a factory list of further vaults on the same store (other processes)."""
    master = MasterKey.generate()
    opened: list[KeyVault] = []

    def open_one() -> KeyVault:
        if request.param == "sqlite":
            vault = KeyVault.open_sqlite(tmp_path / "keys.db", master)
        else:
            url = PostgresURL.parse(request.getfixturevalue("postgres_url"))
            schema = request.getfixturevalue("pg_schema")
            vault = KeyVault.open_postgres(url.conninfo(), schema, master)
        opened.append(vault)
        return vault

    first = open_one()
    others = [open_one() for _ in range(6)]
    yield first, others
    for vault in opened:
        vault.close()


def test_vault_reservations_are_exclusive_across_processes(
    vault_opener: tuple[KeyVault, list[KeyVault]],
) -> None:
    vault, others = vault_opener
    index = EmailIndex(vault)
    digest = index.digest("one@vault.example")
    assert all(EmailIndex(v).digest("ONE@vault.example") == digest for v in others)
    start = threading.Barrier(len(others))

    def reserve(i: int) -> Reservation:
        start.wait()
        return EmailIndex(others[i]).reserve(digest, f"user:{i}")

    with ThreadPoolExecutor(max_workers=len(others)) as pool:
        results = list(pool.map(reserve, range(len(others))))
    assert results.count(Reservation.NEW) == 1
    assert results.count(Reservation.TAKEN) == len(others) - 1
    winner = f"user:{results.index(Reservation.NEW)}"
    assert index.reserve(digest, winner) is Reservation.HELD
    assert index.owner_of(digest) == winner

    # Erasure and the destruction of a profile scope both delete the person's digest.
    vault.keys_for_writing([(winner, winner)])
    vault.destroy_owned_by(winner)
    assert index.owner_of(digest) is None
    assert index.reserve(digest, "user:p") is Reservation.NEW
    vault.keys_for_writing([("user:p", "user:p")])
    vault.destroy_scope("user:p")
    assert index.digests_of("user:p") == []


# Users registered before the index existed.


def _forget_index(runtime: Runtime) -> None:
    with runtime.vault.transaction() as c:
        c.execute("DELETE FROM email_index")
        c.execute("DELETE FROM vault_meta WHERE name=?", [BACKFILLED])


def test_backfill_indexes_existing_users_and_reports_duplicates(runtime: Runtime) -> None:
    desk = runtime.desk
    first = desk.register_user(UserKind.CUSTOMER, "First", "dup@old.example")
    _forget_index(runtime)
    second = desk.register_user(UserKind.CUSTOMER, "Second", "DUP@old.example")
    third = desk.register_user(UserKind.AGENT, "Third", "third@old.example")
    changed = desk.register_user(UserKind.CUSTOMER, "Changed", "before@old.example")
    desk.update_user(changed, {"email": "after@old.example"})
    erased = desk.register_user(UserKind.CUSTOMER, "Erased", "erased@old.example")
    desk.erase_subject(erased)
    _forget_index(runtime)
    # Left behind by a crash between a reservation and its save, long ago.
    orphan = desk.emails.digest("orphan@old.example")
    with runtime.vault.transaction() as c:
        c.execute(
            "INSERT INTO email_index (digest, owner, created_at) VALUES (?, ?, ?)",
            [orphan, f"user:{uuid.uuid4()}", (datetime.now(UTC) - timedelta(hours=1)).isoformat()],
        )
    seen: list[tuple[int, int]] = []

    report = backfill_once(desk, lambda done, total: seen.append((done, total)))
    assert report is not None
    assert (report.users, report.added, report.released) == (4, 3, 1)
    assert report.duplicates == [{"user_id": str(second), "held_by": str(first)}]
    assert seen
    assert seen[-1][0] == seen[-1][1]
    assert backfill_once(desk) is None  # once per vault

    for email in ("dup@old.example", "third@old.example", "after@old.example"):
        with pytest.raises(RuleViolation) as refused:
            desk.register_user(UserKind.CUSTOMER, "New", email)
        assert refused.value.code == "email_taken"
    for email in ("before@old.example", "erased@old.example", "orphan@old.example"):
        desk.register_user(UserKind.CUSTOMER, "New", email)
    assert desk.emails.owner_of(desk.emails.digest("third@old.example")) == f"user:{third}"
    assert reindex(desk).added == 0  # repeating changes nothing


def test_the_residue_scan_finds_the_digest_until_erasure(runtime: Runtime) -> None:
    person = runtime.desk.register_user(UserKind.CUSTOMER, "Res Idue", "residue@scan.example")
    digests = runtime.desk.emails.digests_of(f"user:{person}")
    assert len(digests) == 1
    assert residue_scan(runtime, [], digests).matches != []
    runtime.desk.erase_subject(person)
    assert residue_scan(runtime, [], digests).matches == []


def test_cli_backfills_and_reports(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    rt = Runtime.open(Settings(data_dir=data_dir))
    try:
        a = rt.desk.register_user(UserKind.CUSTOMER, "A", "same@cli.example")
        _forget_index(rt)
        b = rt.desk.register_user(UserKind.CUSTOMER, "B", "same@cli.example")
        _forget_index(rt)
    finally:
        rt.close()
    done = run_cli(data_dir, "keys", "index-emails", "--json")
    assert done.returncode == 0, done.stderr
    report = orjson.loads(done.stdout)
    assert report["added"] == 1
    assert report["duplicates"] == [{"user_id": str(b), "held_by": str(a)}]
    assert "same@cli.example" not in done.stdout + done.stderr


def _abandon(vault: KeyVault, digest: bytes) -> None:
    """Age a reservation past ABANDONED_AFTER, as if its registration had died."""
    earlier = (datetime.now(UTC) - ABANDONED_AFTER - timedelta(minutes=1)).isoformat()
    with vault.transaction() as c:
        c.execute("UPDATE email_index SET created_at = ? WHERE digest = ?", [earlier, digest])


def test_an_address_left_by_a_registration_that_was_never_stored_is_taken_over(api: Api) -> None:
    # The server died between reserving the address and saving the person: no user holds it.
    emails = api.runtime.desk.emails
    phantom = f"user:{uuid.uuid4()}"
    for email in ("young@phantom.example", "old@phantom.example"):
        assert emails.reserve(emails.digest(email), phantom) is Reservation.NEW
    _abandon(api.runtime.vault, emails.digest("old@phantom.example"))
    # A young reservation may be a registration still under way: it keeps its address.
    assert _register(api, "young@phantom.example") == (409, "email_taken")
    assert _register(api, "OLD@phantom.example") == (201, None)
    assert _register(api, "old@phantom.example") == (409, "email_taken")  # now a real user's


def test_an_address_taken_over_is_released_again_when_the_save_fails(tmp_path: Path) -> None:
    rt = Runtime.open(Settings(data_dir=tmp_path / "data", lock_timeout=1))
    try:
        desk = rt.desk
        digest = desk.emails.digest("twice@phantom.example")
        phantom = f"user:{uuid.uuid4()}"  # a registration that died before its save
        assert desk.emails.reserve(digest, phantom) is Reservation.NEW
        _abandon(rt.vault, digest)

        with locked(tmp_path / "data" / "events.db"), pytest.raises(OperationalError):
            desk.register_user(UserKind.CUSTOMER, "First Try", "twice@phantom.example")
        assert desk.emails.owner_of(digest) is None  # neither the phantom's nor the failed one's

        # So the retry gets the address at once, not after the failed try's reservation ages.
        user = desk.register_user(UserKind.CUSTOMER, "First Try", "twice@phantom.example")
        assert desk.emails.owner_of(digest) == f"user:{user}"
    finally:
        rt.close()
