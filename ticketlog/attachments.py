"""Attachments: encrypt while receiving, store the blob, then record the event.

The file is sealed chunk by chunk under the ticket's content key as it arrives, so no plaintext
byte is ever written anywhere; erasing the requester (or shredding the ticket) destroys that
key and with it every attachment of the ticket.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from crypto.fields import open_sealed
from crypto.files import HEADER_BYTES, FileSealer, file_key, open_file
from crypto.vault import DataKey, KeyVault
from domain.personal import Erased
from projections.attachments import AttachmentQueries
from projections.runner import ProjectionRunner
from ticketlog.blobs import BlobMissing, BlobStore, BlobWriter
from ticketlog.desk import HelpDesk

DEFAULT_MAX_BYTES = 25 * 1024 * 1024
ORPHAN_GRACE = timedelta(hours=1)


class TooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"attachments are limited to {limit:,} bytes")
        self.limit = limit


class Gone(Exception):
    """The attachment's key was destroyed: the file is unreadable for good."""


class Upload:
    """One file being received: plaintext in, ciphertext to the blob store, hash as it goes."""

    def __init__(
        self, ticket_id: UUID, attachment_id: UUID, key: DataKey, writer: BlobWriter, limit: int
    ) -> None:
        self.ticket_id = ticket_id
        self.attachment_id = attachment_id
        self._sealer = FileSealer(key, str(self.attachment_id))
        self._writer = writer
        self._hash = hashlib.sha256()
        self._limit = limit

    @property
    def size(self) -> int:
        return self._sealer.plaintext_bytes

    def feed(self, data: bytes) -> None:
        if self._sealer.plaintext_bytes + len(data) > self._limit:
            raise TooLarge(self._limit)
        self._put(self._sealer.update(data))

    def finish(self) -> str:
        """Write the last record and make the blob complete; returns the ciphertext hash."""
        self._put(self._sealer.finish())
        self._writer.commit()
        return self._hash.hexdigest()

    def abort(self) -> None:
        self._writer.abort()

    def _put(self, ciphertext: bytes) -> None:
        if ciphertext:
            self._hash.update(ciphertext)
            self._writer.write(ciphertext)


@dataclass(frozen=True)
class Download:
    meta: dict[str, Any]
    name: str
    chunks: Iterator[bytes]


class Attachments:
    def __init__(
        self,
        desk: HelpDesk,
        vault: KeyVault,
        blobs: BlobStore,
        queries: AttachmentQueries,
        runner: ProjectionRunner,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.desk = desk
        self.vault = vault
        self.blobs = blobs
        self.queries = queries
        self.runner = runner
        self.max_bytes = max_bytes

    def begin(self, ticket_id: UUID, expected_version: int | None = None) -> Upload:
        """Check the ticket takes files, then open a blob; ScopeErased if its key is gone."""
        self.desk.check_attachable(ticket_id, expected_version)
        key = self.vault.key_for_writing(f"ticket:{ticket_id}", owner=None)
        attachment_id = uuid4()
        writer = self.blobs.create(str(attachment_id))
        return Upload(ticket_id, attachment_id, key, writer, self.max_bytes)

    def complete(
        self,
        upload: Upload,
        uploader_id: UUID,
        name: str,
        content_type: str,
        expected_version: int | None = None,
    ) -> UUID:
        """Blob first, then the event: a failure in between leaves only an orphan blob."""
        sha256 = upload.finish()
        try:
            self.desk.add_attachment(
                upload.ticket_id,
                upload.attachment_id,
                uploader_id,
                name,
                upload.size,
                content_type,
                sha256,
                expected_version,
            )
        except BaseException:
            self.blobs.delete(str(upload.attachment_id))
            raise
        return upload.attachment_id

    def open(self, ticket_id: str, attachment_id: str) -> Download | None:
        """The file's metadata and plaintext stream; None if unknown, Gone if erased."""
        meta = self.queries.attachment(ticket_id, attachment_id)
        if meta is None:
            return None
        name = open_sealed(meta["name"], self.vault)
        if isinstance(name, Erased):
            raise Gone(attachment_id)
        try:
            chunks = self.blobs.read(attachment_id)
        except BlobMissing:
            raise Gone(attachment_id) from None
        head = b""
        for piece in chunks:
            head += piece
            if len(head) >= HEADER_BYTES:
                break
        key = file_key(head, self.vault)
        if key.destroyed:
            raise Gone(attachment_id)
        return Download(meta, name, open_file(_prepend(head, chunks), key, attachment_id))

    def delete_orphans(self, grace: timedelta = ORPHAN_GRACE) -> list[str]:
        """Remove blobs older than `grace` that no recorded event names."""
        self.runner.catch_up()
        candidates = self.blobs.blobs_before(datetime.now(UTC) - grace)
        known = self.queries.known(candidates)
        orphans = [blob_id for blob_id in candidates if blob_id not in known]
        for blob_id in orphans:
            self.blobs.delete(blob_id)
        return orphans


def _prepend(head: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield head
    yield from rest
