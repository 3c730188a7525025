"""Where encrypted attachment files live: files under the data dir, or a PostgreSQL table.

Blobs hold ciphertext only (crypto/files.py); a blob is written completely before the event
that refers to it is recorded, so a crash leaves at worst an orphan, which `delete_orphans`
removes once it is older than a grace period and no event names it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Protocol

from projections.sql import Database

READ_BYTES = 256 * 1024
ROW_BYTES = 1024 * 1024  # ciphertext per row in the PostgreSQL store


class BlobMissing(LookupError):
    """No complete blob with this id."""


class BlobWriter(Protocol):
    def write(self, data: bytes) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class BlobStore(Protocol):
    def create(self, blob_id: str) -> BlobWriter: ...

    def read(self, blob_id: str) -> Iterator[bytes]: ...

    def delete(self, blob_id: str) -> None: ...

    def blobs_before(self, cutoff: datetime) -> list[str]:
        """Ids of blobs (complete or not) created before the cutoff."""
        ...


def _safe_id(blob_id: str) -> str:
    if not blob_id or not all(ch in "0123456789abcdef-" for ch in blob_id):
        raise BlobMissing(blob_id[:64])
    return blob_id


class _FileWriter:
    def __init__(self, final: Path) -> None:
        self._final = final
        self._partial = final.with_suffix(".part")
        self._file: BinaryIO = open(self._partial, "xb")  # noqa: SIM115 (closed in commit/abort)

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def commit(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._partial, self._final)
        dir_fd = os.open(self._final.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def abort(self) -> None:
        self._file.close()
        self._partial.unlink(missing_ok=True)


class FileBlobStore:
    """One file per blob under `$DATA_DIR/blobs/`; `<id>.part` until complete."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def create(self, blob_id: str) -> BlobWriter:
        return _FileWriter(self.directory / _safe_id(blob_id))

    def read(self, blob_id: str) -> Iterator[bytes]:
        path = self.directory / _safe_id(blob_id)
        try:
            f = open(path, "rb")  # noqa: SIM115 (closed by the generator)
        except FileNotFoundError:
            raise BlobMissing(blob_id) from None
        return self._chunks(f)

    @staticmethod
    def _chunks(f: BinaryIO) -> Iterator[bytes]:
        with f:
            while piece := f.read(READ_BYTES):
                yield piece

    def delete(self, blob_id: str) -> None:
        safe = _safe_id(blob_id)
        for path in (self.directory / safe, self.directory / f"{safe}.part"):
            path.unlink(missing_ok=True)

    def blobs_before(self, cutoff: datetime) -> list[str]:
        limit = cutoff.timestamp()
        found = set()
        for path in self.directory.iterdir():
            try:
                if path.stat().st_mtime < limit:
                    found.add(path.name.removesuffix(".part"))
            except FileNotFoundError:
                continue  # completed (renamed) or deleted meanwhile
        return sorted(found)


class _TableWriter:
    def __init__(self, db: Database, blob_id: str) -> None:
        self._db = db
        self._blob_id = blob_id
        self._buffer = bytearray()
        self._seq = 0
        with db.transaction() as c:
            c.execute(
                "INSERT INTO attachment_blobs (blob_id, created_at, complete) VALUES (?, ?, 0)",
                [blob_id, datetime.now(UTC).isoformat()],
            )

    def write(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= ROW_BYTES:
            self._flush(bytes(self._buffer[:ROW_BYTES]))
            del self._buffer[:ROW_BYTES]

    def _flush(self, data: bytes) -> None:
        with self._db.transaction() as c:
            c.execute(
                "INSERT INTO attachment_blob_rows (blob_id, seq, data) VALUES (?, ?, ?)",
                [self._blob_id, self._seq, data],
            )
        self._seq += 1

    def commit(self) -> None:
        if self._buffer:
            self._flush(bytes(self._buffer))
            self._buffer.clear()
        with self._db.transaction() as c:
            c.execute("UPDATE attachment_blobs SET complete = 1 WHERE blob_id = ?", [self._blob_id])

    def abort(self) -> None:
        self._buffer.clear()
        _delete_rows(self._db, self._blob_id)


def _delete_rows(db: Database, blob_id: str) -> None:
    with db.transaction() as c:
        c.execute("DELETE FROM attachment_blob_rows WHERE blob_id = ?", [blob_id])
        c.execute("DELETE FROM attachment_blobs WHERE blob_id = ?", [blob_id])


class TableBlobStore:
    """Blobs as rows of ~1 MiB in the event store's PostgreSQL database."""

    schema = (
        "CREATE TABLE IF NOT EXISTS attachment_blobs ("
        " blob_id TEXT PRIMARY KEY, created_at TEXT NOT NULL, complete INTEGER NOT NULL)",
        "CREATE TABLE IF NOT EXISTS attachment_blob_rows ("
        " blob_id TEXT NOT NULL, seq INTEGER NOT NULL, data BYTEA NOT NULL,"
        " PRIMARY KEY (blob_id, seq))",
    )

    def __init__(self, db: Database) -> None:
        self.db = db
        db.execute_script(self.schema)

    def create(self, blob_id: str) -> BlobWriter:
        return _TableWriter(self.db, _safe_id(blob_id))

    def read(self, blob_id: str) -> Iterator[bytes]:
        with self.db.transaction(commit=False) as c:
            row = c.execute(
                "SELECT complete FROM attachment_blobs WHERE blob_id = ?", [blob_id]
            ).fetchone()
        if row is None or not row["complete"]:
            raise BlobMissing(blob_id)
        return self._rows(blob_id)

    def _rows(self, blob_id: str) -> Iterator[bytes]:
        seq = -1
        while True:
            with self.db.transaction(commit=False) as c:
                rows = c.execute(
                    "SELECT seq, data FROM attachment_blob_rows WHERE blob_id = ? AND seq > ?"
                    " ORDER BY seq LIMIT 4",
                    [blob_id, seq],
                ).fetchall()
            if not rows:
                return
            for row in rows:
                seq = row["seq"]
                yield bytes(row["data"])

    def delete(self, blob_id: str) -> None:
        _delete_rows(self.db, blob_id)

    def blobs_before(self, cutoff: datetime) -> list[str]:
        with self.db.transaction(commit=False) as c:
            rows = c.execute(
                "SELECT blob_id FROM attachment_blobs WHERE created_at < ? ORDER BY blob_id",
                [cutoff.astimezone(UTC).isoformat()],
            ).fetchall()
        return [r["blob_id"] for r in rows]
