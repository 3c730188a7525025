"""Attachments: encrypted as they stream in, downloadable, gone after erasure, never plaintext."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from api.tokens import Role
from crypto.errors import TamperedData
from crypto.files import CHUNK_BYTES, RECORD_BYTES, FileSealer, open_file
from crypto.master import MasterKey
from crypto.vault import KeyVault
from tests.conftest import Api, open_api, postgres_hits, raw_hits
from tests.test_cli import run_cli
from ticketlog.blobs import FileBlobStore, TableBlobStore
from ticketlog.config import Settings
from ticketlog.runtime import Runtime


def upload(
    api: Api,
    ticket_id: object,
    uploader_id: object,
    data: bytes,
    name: str = "report.pdf",
    content_type: str = "application/pdf",
) -> httpx.Response:
    return api.client.post(
        f"/v1/tickets/{ticket_id}/attachments",
        files={"file": (name, data, content_type)},
        data={"uploader_id": str(uploader_id)},
        headers=api.headers(Role.SERVICE),
    )


def streamed_form(
    uploader_id: object, name: str, chunks: Iterable[bytes]
) -> tuple[dict[str, str], Iterator[bytes]]:
    """A multipart body produced piece by piece (as a browser sends a large file)."""
    boundary = uuid.uuid4().hex

    def body() -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="uploader_id"\r\n\r\n'
            f"{uploader_id}\r\n--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: text/plain\r\n\r\n"
        ).encode()
        yield from chunks
        yield f"\r\n--{boundary}--\r\n".encode()

    return {"Content-Type": f"multipart/form-data; boundary={boundary}"}, body()


# The chunked file cipher


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[KeyVault]:
    v = KeyVault.open_sqlite(tmp_path / "keys.db", MasterKey.generate())
    yield v
    v.close()


def seal_file(vault: KeyVault, data: bytes, file_id: str = "f1", piece: int = 10_000) -> bytes:
    sealer = FileSealer(vault.key_for_writing("user:u1", "user:u1"), file_id)
    out = b"".join(sealer.update(data[i : i + piece]) for i in range(0, len(data), piece))
    return out + sealer.finish()


def open_all(vault: KeyVault, sealed: bytes, file_id: str = "f1", piece: int = 7_777) -> bytes:
    key = vault.key_for_writing("user:u1", "user:u1")
    pieces = (sealed[i : i + piece] for i in range(0, len(sealed), piece))
    return b"".join(open_file(pieces, key, file_id))


@pytest.mark.parametrize(
    "size", [0, 1, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1, 3 * CHUNK_BYTES + 5]
)
def test_files_round_trip_whatever_their_size(vault: KeyVault, size: int) -> None:
    data = os.urandom(size)
    sealed = seal_file(vault, data)
    assert open_all(vault, sealed) == data
    if size >= 64:
        assert data[:64] not in sealed


def test_reordered_dropped_truncated_or_moved_records_fail(vault: KeyVault) -> None:
    data = os.urandom(3 * CHUNK_BYTES + 100)
    sealed = seal_file(vault, data)
    header, body = sealed[:20], sealed[20:]
    records = [body[i : i + RECORD_BYTES] for i in range(0, len(body), RECORD_BYTES)]
    assert len(records) == 4
    tampered = {
        "reordered": header + records[1] + records[0] + records[2] + records[3],
        "dropped": header + records[0] + records[2] + records[3],
        "truncated at a record": header + records[0] + records[1] + records[2],
        "truncated mid-record": sealed[:-10],
        "flipped bit": sealed[:100] + bytes([sealed[100] ^ 1]) + sealed[101:],
    }
    for what, variant in tampered.items():
        with pytest.raises(TamperedData):
            open_all(vault, variant)
        assert what
    with pytest.raises(TamperedData):
        open_all(vault, sealed, file_id="another file")


# The HTTP API


def test_upload_list_and_download_stream_the_same_bytes(api: Api) -> None:
    requester = api.user()
    ticket = api.ticket(requester["id"])
    data = os.urandom(2 * CHUNK_BYTES + 12_345)
    r = upload(api, ticket["id"], requester["id"], data, name="Ünïcode report.pdf")
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["name"] == "Ünïcode report.pdf"
    assert created["size"] == len(data)
    assert created["content_type"] == "application/pdf"
    assert created["uploader_id"] == requester["id"]

    # The recorded hash is the ciphertext's: anyone can check the stored blob against the log.
    stored = b"".join(api.runtime.attachments.blobs.read(created["id"]))
    assert hashlib.sha256(stored).hexdigest() == created["sha256"]
    assert data[:1000] not in stored

    r = api.get(f"/v1/tickets/{ticket['id']}/attachments/{created['id']}")
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["content-type"] == "application/pdf"
    assert "filename*=UTF-8''%C3%9Cn%C3%AFcode%20report.pdf" in r.headers["content-disposition"]

    listing = api.get(f"/v1/tickets/{ticket['id']}/attachments").json()["items"]
    assert [a["id"] for a in listing] == [created["id"]]
    history = api.get(f"/v1/tickets/{ticket['id']}/history", role=Role.AUDITOR).json()
    added = history["events"][-1]
    assert added["type"] == "AttachmentAdded"
    assert added["data"]["name"] == "Ünïcode report.pdf"
    assert added["data"]["sha256"] == created["sha256"]
    assert api.get(f"/v1/tickets/{ticket['id']}").json()["version"] == added["version"]


def test_empty_files_are_attachments_too(api: Api) -> None:
    requester = api.user()
    ticket = api.ticket(requester["id"])
    r = upload(api, ticket["id"], requester["id"], b"", name="empty.txt", content_type="text/plain")
    assert r.status_code == 201, r.text
    got = api.get(f"/v1/tickets/{ticket['id']}/attachments/{r.json()['id']}")
    assert got.status_code == 200
    assert got.content == b""


def test_after_the_requester_is_erased_the_download_is_gone(api: Api) -> None:
    requester = api.user()
    agent = api.user(kind="agent")
    ticket = api.ticket(requester["id"])
    r = upload(api, ticket["id"], agent["id"], b"invoice lines" * 1000, name="invoice.txt")
    assert r.status_code == 201, r.text
    aid = r.json()["id"]
    erased = api.post(f"/v1/subjects/{requester['id']}/erase", role=Role.COMPLIANCE)
    assert erased.status_code == 200

    r = api.get(f"/v1/tickets/{ticket['id']}/attachments/{aid}")
    assert r.status_code == 410
    assert r.json()["error"]["code"] == "gone"
    listing = api.get(f"/v1/tickets/{ticket['id']}/attachments").json()["items"]
    assert listing[0]["name"] is None
    assert listing[0]["size"] == 13_000
    # Nothing new can be attached to the erased requester's ticket.
    r = upload(api, ticket["id"], agent["id"], b"more")
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "subject_erased"


def _runtime_with(settings: Settings, **changes: object) -> Runtime:
    return Runtime.open(dataclasses.replace(settings, **changes))  # type: ignore[arg-type]


def test_files_beyond_the_limit_are_refused_with_413_and_leave_nothing(
    settings: Settings,
) -> None:
    runtime = _runtime_with(settings, max_attachment_bytes=100_000)
    try:
        for api in open_api(runtime)():
            requester = api.user()
            ticket = api.ticket(requester["id"])
            assert upload(api, ticket["id"], requester["id"], b"x" * 100_000).status_code == 201
            r = upload(api, ticket["id"], requester["id"], b"x" * 100_001)
            assert r.status_code == 413
            assert r.json()["error"]["code"] == "payload_too_large"
            listing = api.get(f"/v1/tickets/{ticket['id']}/attachments").json()["items"]
            assert len(listing) == 1
            blobs = runtime.attachments.blobs.blobs_before(_far_future())
            assert blobs == [listing[0]["id"]]
    finally:
        runtime.close()


def _far_future() -> object:
    from datetime import UTC, datetime

    return datetime.now(UTC) + timedelta(days=1)


def test_bad_uploads_are_json_4xx(api: Api) -> None:
    requester = api.user()
    ticket = api.ticket(requester["id"])
    tid = ticket["id"]
    headers = api.headers(Role.SERVICE)
    r = api.client.post(f"/v1/tickets/{tid}/attachments", json={"x": 1}, headers=headers)
    assert r.status_code == 415
    r = api.client.post(
        f"/v1/tickets/{tid}/attachments",
        data={"uploader_id": requester["id"]},
        files={"other": ("a.txt", b"a")},
        headers=headers,
    )
    assert r.status_code == 422
    r = api.client.post(
        f"/v1/tickets/{tid}/attachments",
        content=b"--b\r\nnonsense",
        headers={**headers, "Content-Type": "multipart/form-data; boundary=b"},
    )
    assert r.status_code == 422
    assert upload(api, tid, "not-a-uuid", b"a").status_code == 422
    assert upload(api, tid, requester["id"], b"a", content_type="bad type").status_code == 422
    assert upload(api, tid, uuid.uuid4(), b"a").status_code == 404
    assert upload(api, uuid.uuid4(), requester["id"], b"a").status_code == 404
    r = api.get(f"/v1/tickets/{tid}/attachments/{uuid.uuid4()}")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
    r = api.client.post(f"/v1/tickets/{tid}/attachments", files={"file": ("a", b"a")})
    assert r.status_code == 401
    # Nothing was attached and no blob is left from the refused uploads.
    assert api.get(f"/v1/tickets/{tid}/attachments").json()["items"] == []
    assert api.runtime.attachments.blobs.blobs_before(_far_future()) == []


def test_closed_tickets_take_no_attachments(api: Api) -> None:
    requester = api.user()
    agent = api.user(kind="agent")
    tid = api.ticket(requester["id"])["id"]
    api.post(f"/v1/tickets/{tid}/assign", {"assignee_id": agent["id"]})
    api.post(f"/v1/tickets/{tid}/status", {"status": "solved"})
    api.post(f"/v1/tickets/{tid}/status", {"status": "closed"})
    r = upload(api, tid, agent["id"], b"late")
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "ticket_closed"


def _recent_files_with(directory: Path, needle: bytes, since: float) -> list[str]:
    hits = []
    for root, _dirs, files in os.walk(directory):
        for name in files:
            path = Path(root) / name
            try:
                if path.stat().st_mtime < since:
                    continue
                if needle in path.read_bytes():
                    hits.append(str(path))
            except OSError:
                continue  # vanished or unreadable: not ours
    return hits


def test_no_plaintext_reaches_any_disk_during_and_after_a_large_upload(
    api: Api, settings: Settings
) -> None:
    started = time.time() - 1
    marker = f"ATTACHMENT-PLAINTEXT-{uuid.uuid4().hex}\n".encode()
    filename = f"secret-name-{uuid.uuid4().hex}.txt"
    requester = api.user()
    ticket = api.ticket(requester["id"])
    blobs = api.runtime.attachments.blobs
    total_chunks = 160  # 160 x 64 KiB = 10 MiB, far above Starlette's 1 MiB spooling threshold
    scans: list[list[object]] = []

    def stored_bytes() -> int:
        if isinstance(blobs, FileBlobStore):
            return sum(p.stat().st_size for p in blobs.directory.iterdir())
        assert isinstance(blobs, TableBlobStore)
        with blobs.db.transaction(commit=False) as c:
            row = c.execute("SELECT COALESCE(SUM(LENGTH(data)), 0) AS n FROM attachment_blob_rows")
            return int(row.fetchone()["n"])

    piece = (marker * (CHUNK_BYTES // len(marker) + 1))[:CHUNK_BYTES]

    def chunks() -> Iterator[bytes]:
        for i in range(total_chunks):
            if i == total_chunks // 2:
                # Midway: wait until the server has stored several MiB, then search every disk.
                deadline = time.monotonic() + 60
                while stored_bytes() < 3 * 1024 * 1024:
                    assert time.monotonic() < deadline, "the server stored nothing"
                    time.sleep(0.02)
                scans.append(_recent_files_with(Path(tempfile.gettempdir()), marker, started))
                scans.append(raw_hits(settings.data_dir, [marker.decode().strip(), filename]))
                scans.append(postgres_hits(settings, [marker.decode().strip(), filename]))
            yield piece

    headers, body = streamed_form(requester["id"], filename, chunks())
    r = api.client.post(
        f"/v1/tickets/{ticket['id']}/attachments",
        content=body,
        headers={**api.headers(Role.SERVICE), **headers},
    )
    assert r.status_code == 201, r.text
    assert r.json()["size"] == total_chunks * CHUNK_BYTES
    assert scans == [[], [], []]
    assert _recent_files_with(Path(tempfile.gettempdir()), marker, started) == []
    assert raw_hits(settings.data_dir, [marker.decode().strip(), filename]) == []
    assert postgres_hits(settings, [marker.decode().strip(), filename]) == []
    # ...and the file is whole.
    received = hashlib.sha256()
    with api.client.stream(
        "GET",
        f"/v1/tickets/{ticket['id']}/attachments/{r.json()['id']}",
        headers=api.headers(Role.SERVICE),
    ) as download:
        for chunk in download.iter_bytes():
            received.update(chunk)
    assert received.hexdigest() == hashlib.sha256(piece * total_chunks).hexdigest()


def test_orphaned_blobs_are_deleted_and_recorded_ones_kept(api: Api, settings: Settings) -> None:
    requester = api.user()
    ticket = api.ticket(requester["id"])
    kept = upload(api, ticket["id"], requester["id"], b"kept").json()["id"]
    attachments = api.runtime.attachments
    # An upload cut short by a crash: a complete blob, and a partial one, with no event.
    for complete in (True, False):
        up = attachments.begin(uuid.UUID(ticket["id"]))
        up.feed(b"orphan" * 1000)
        if complete:
            up.finish()
    orphans = set(attachments.blobs.blobs_before(_far_future())) - {kept}
    assert len(orphans) == 2
    # Within the grace period an upload may still be in progress: nothing is deleted.
    assert attachments.delete_orphans(timedelta(hours=1)) == []
    assert set(attachments.delete_orphans(timedelta(0))) == orphans
    assert attachments.blobs.blobs_before(_far_future()) == [kept]
    assert api.get(f"/v1/tickets/{ticket['id']}/attachments/{kept}").content == b"kept"


def test_clean_command_deletes_orphans(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    runtime = Runtime.open(Settings(data_dir=data_dir))
    try:
        user = runtime.desk.register_user("customer", "Ann", "ann@example.com")
        tid = runtime.desk.open_ticket(user, "s", "b")
        up = runtime.attachments.begin(tid)
        up.feed(b"orphan")
        up.finish()
    finally:
        runtime.close()
    result = run_cli(data_dir, "attachments", "clean", "--grace-seconds", "0", "--json")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("-") >= 4
    assert list((data_dir / "blobs").iterdir()) == []
