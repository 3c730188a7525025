"""No plaintext personal data at rest, before or after erasure, and erasure survives restores.

These tests read the raw bytes of every file under the data dir (and, on PostgreSQL, every
row of every table in the test's schema): if a personal value is anywhere, they find it.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
from pathlib import Path

import pytest

from api.tokens import Role
from tests.conftest import Api, open_api, postgres_hits, raw_hits
from ticketlog.config import Settings
from ticketlog.runtime import Runtime

PERSON = {
    "name": "Quentin Zebulon-Marsh",
    "email": "quentin.zebulon@marsh-unique.example",
    "phone": "+44 7700 900123",
    "organization": "Zebulon Marsh Holdings",
}
CONTENT = {
    "subject": "Refund for order QZ-44871",
    "body": "Please refund order QZ-44871 to my card ending 9921",
    "comment": "My home address is 17 Quillfeather Lane",
}
NEEDLES = [*PERSON.values(), *CONTENT.values(), "Quillfeather", "QZ-44871"]


def _seed(api: Api) -> dict[str, str]:
    person = api.user(**PERSON)
    agent = api.user(kind="agent", name="Agent Smith-Wesson", email="agent@desk.example")
    other = api.user()
    ticket = api.ticket(person["id"], subject=CONTENT["subject"], body=CONTENT["body"])
    api.post(
        f"/v1/tickets/{ticket['id']}/comments",
        {"author_id": person["id"], "body": CONTENT["comment"], "public": True},
    )
    api.post(
        f"/v1/tickets/{ticket['id']}/comments",
        {"author_id": agent["id"], "body": "Agent reply Wxyzzy", "public": True},
    )
    elsewhere = api.ticket(other["id"])
    api.post(
        f"/v1/tickets/{elsewhere['id']}/comments",
        {"author_id": person["id"], "body": "Quillfeather remark", "public": True},
    )
    # Exercise reads and an invalid request carrying personal data too.
    api.get(f"/v1/tickets/{ticket['id']}")
    api.get(f"/v1/subjects/{person['id']}/export", role=Role.COMPLIANCE)
    api.post("/v1/users", {"kind": "customer", "name": PERSON["name"], "email": "Quillfeather"})
    return {"person": str(person["id"]), "ticket": str(ticket["id"])}


def _all_hits(settings: Settings, needles: list[str]) -> list[tuple[str, str]]:
    return raw_hits(settings.data_dir, needles) + postgres_hits(settings, needles)


def _wrapped_keys(settings: Settings) -> dict[str, bytes]:
    conn = sqlite3.connect(settings.keys_path)
    try:
        rows = conn.execute("SELECT scope, wrapped FROM data_keys WHERE wrapped IS NOT NULL")
        return {scope: bytes(wrapped) for scope, wrapped in rows}
    finally:
        conn.close()


def _vault_bytes(settings: Settings) -> bytes:
    paths = settings.keys_path.parent.glob(settings.keys_path.name + "*")
    return b"".join(p.read_bytes() for p in paths)


def test_no_plaintext_anywhere_before_and_after_erasure(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    needles = [*NEEDLES, PERSON["email"].upper()]  # the refused request below sends this form
    runtime = Runtime.open(settings)
    try:
        for api in open_api(runtime)():
            ids = _seed(api)
            runtime.runner.catch_up()
            assert _all_hits(settings, NEEDLES) == []

            # The blind index refuses the address again (any case) and holds only its digest.
            taken = api.post(
                "/v1/users", {"kind": "customer", **PERSON, "email": PERSON["email"].upper()}
            )
            assert (taken.status_code, taken.json()["error"]["code"]) == (409, "email_taken")
            digest = runtime.desk.emails.digest(PERSON["email"])
            assert digest in _vault_bytes(settings)
            assert _all_hits(settings, needles) == []

            wrapped_before = _wrapped_keys(settings)
            assert f"user:{ids['person']}" in wrapped_before
            r = api.post(f"/v1/subjects/{ids['person']}/erase", role=Role.COMPLIANCE)
            assert r.status_code == 200
            assert _all_hits(settings, needles) == []
    finally:
        runtime.close()
    assert digest not in _vault_bytes(settings)  # no linkable digest survives the erasure

    # The destroyed keys' material is gone from every file of the vault, WAL included.
    erased_scopes = (
        f"user:{ids['person']}",
        f"ticket:{ids['ticket']}",
        f"authored:{ids['person']}",  # their comment on someone else's ticket
    )
    destroyed = {s: w for s, w in wrapped_before.items() if s in erased_scopes}
    assert len(destroyed) == 3
    for path in settings.keys_path.parent.glob(settings.keys_path.name + "*"):
        raw = path.read_bytes()
        for scope, wrapped in destroyed.items():
            assert wrapped not in raw, f"{scope}'s key material survives in {path.name}"
            assert wrapped[12:28] not in raw, f"part of {scope}'s key survives in {path.name}"
    # Keys of people not erased are still there (the scan above would not be meaningful if the
    # vault simply lost everything).
    assert len(_wrapped_keys(settings)) == len(wrapped_before) - 3

    # Nothing personal reached a log line either.
    assert not [n for n in needles if n in caplog.text]


def test_restored_old_event_store_keeps_erased_people_unreadable(tmp_path: Path) -> None:
    """A backup of events.db from before an erasure, put back beside the current keys.db."""
    settings = Settings(data_dir=tmp_path / "data")
    backup = tmp_path / "events-backup.db"
    runtime = Runtime.open(settings)
    try:
        for api in open_api(runtime)():
            ids = _seed(api)
    finally:
        runtime.close()
    shutil.copy(settings.events_path, backup)  # closed cleanly: the WAL is checkpointed

    runtime = Runtime.open(settings)
    try:
        for api in open_api(runtime)():
            assert (
                api.post(f"/v1/subjects/{ids['person']}/erase", role=Role.COMPLIANCE).status_code
                == 200
            )
    finally:
        runtime.close()

    # Restore: the old log (without the erasure event), fresh views rebuilt from it.
    shutil.copy(backup, settings.events_path)
    for stale in settings.data_dir.glob("views.db*"):
        stale.unlink()
    runtime = Runtime.open(settings)
    try:
        runtime.runner.catch_up()
        for api in open_api(runtime)():
            user = api.get(f"/v1/users/{ids['person']}").json()
            assert user["erased"] is True
            assert user["name"] is None
            assert user["email"] is None
            ticket = api.get(f"/v1/tickets/{ids['ticket']}").json()
            assert ticket["subject"] is None
            assert ticket["body"] is None
            assert all(c["body"] is None for c in ticket["comments"])
            history = api.get(f"/v1/tickets/{ids['ticket']}/history", role=Role.AUDITOR).json()
            assert history["events"][0]["erased_fields"] == ["body", "subject"]
            # No new key can be made for the erased person either.
            r = api.post(
                "/v1/tickets", {"requester_id": ids["person"], "subject": "s", "body": "b"}
            )
            assert r.status_code == 409
    finally:
        runtime.close()
    assert raw_hits(settings.data_dir, NEEDLES) == []
