"""/v1/tickets/{id}/attachments: upload (multipart, encrypted as it streams), list, download.

The upload reads the request body itself and feeds the multipart parser chunk by chunk:
Starlette's form support would spool a large file, in plaintext, to a temporary file.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from api.deps import RuntimeDep, parse_id, require
from api.errors import ApiError
from api.present import Opener
from api.schemas import AttachmentList, AttachmentOut
from api.tokens import Role
from api.versions import IfMatch, command_responses, expected_version
from ticketlog.attachments import Gone, TooLarge, Upload
from ticketlog.runtime import Runtime

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

router = APIRouter(prefix="/v1/tickets", tags=["attachments"])
SERVICE = require(Role.SERVICE)

MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}$")
FIELD_BYTES = 100  # the only form field is a UUID
DRAIN_BYTES = 64 * 1024 * 1024  # read this much past the limit so the client sees the 413


class BadForm(Exception):
    pass


class _Form:
    """Collects one `file` part (its data handed over as it arrives) and small fields."""

    def __init__(self) -> None:
        self.fields: dict[str, bytearray] = {}
        self.filename: str | None = None
        self.content_type = "application/octet-stream"
        self.file_seen = False
        self.pending: list[bytes] = []
        self._headers: dict[str, str] = {}
        self._field = bytearray()
        self._value = bytearray()
        self._target: str | None = None

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: self._field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._value.extend(d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
        }

    def _part_begin(self) -> None:
        self._headers = {}
        self._target = None

    def _header_end(self) -> None:
        # latin-1 keeps every byte; the file name is decoded as UTF-8 later.
        self._headers[self._field.decode("latin-1").lower()] = self._value.decode("latin-1")
        self._field.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get("content-disposition", ""))
        name = options.get(b"name", b"").decode("latin-1")
        if name == "file":
            if self.file_seen:
                raise BadForm("send exactly one `file` part")
            self.file_seen = True
            self.filename = _clean_filename(options.get(b"filename", b"").decode("latin-1"))
            media, _ = parse_options_header(self._headers.get("content-type", ""))
            if media:
                self.content_type = media.decode("latin-1")
                if not MEDIA_TYPE.match(self.content_type):
                    raise BadForm("the file's content type is not a valid media type")
        elif name == "uploader_id":
            self.fields[name] = bytearray()
        else:
            raise BadForm("unexpected form field (allowed: file, uploader_id)")
        self._target = name

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._target == "file":
            self.pending.append(bytes(data[start:end]))
        elif self._target is not None:
            field = self.fields[self._target]
            field.extend(data[start:end])
            if len(field) > FIELD_BYTES:
                raise BadForm(f"{self._target} is too long")

    def take_pending(self) -> bytes:
        data = b"".join(self.pending)
        self.pending.clear()
        return data


def _clean_filename(raw: str) -> str:
    # Parsed as latin-1 by the multipart parser; browsers send UTF-8.
    try:
        text = raw.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise BadForm("the file name is not valid UTF-8") from None
    name = text.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not name or len(name) > 255 or any(ord(ch) < 32 for ch in name):
        raise BadForm("the file needs a name of 1 to 255 printable characters")
    return name


def _present(runtime: Runtime, row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "name": Opener(runtime.vault).value(row["name"])}


@router.post(
    "/{ticket_id}/attachments",
    status_code=201,
    response_model=AttachmentOut,
    dependencies=[SERVICE],
    responses={
        413: {"description": "the file is larger than TICKETLOG_MAX_ATTACHMENT_BYTES"},
        **{k: v for k, v in command_responses(201).items() if k != 201},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file", "uploader_id"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "uploader_id": {"type": "string", "format": "uuid"},
                        },
                    }
                }
            },
        }
    },
)
async def upload(
    ticket_id: str, request: Request, runtime: RuntimeDep, if_match: IfMatch = None
) -> dict[str, Any]:
    """multipart/form-data with one `file` part and an `uploader_id` field."""
    tid = parse_id(ticket_id, "ticket")
    version = expected_version(if_match)
    media, options = parse_options_header(request.headers.get("content-type"))
    boundary = options.get(b"boundary")
    if media != b"multipart/form-data" or not boundary:
        raise ApiError(415, "unsupported_media_type", "send multipart/form-data")
    form = _Form()
    try:
        parser = MultipartParser(boundary, form.callbacks())
    except (MultipartParseError, ValueError):
        raise ApiError(400, "bad_request", "the multipart boundary is invalid") from None
    upload = await run_in_threadpool(runtime.attachments.begin, tid, version)
    body = request.stream()
    try:
        await _receive(body, parser, form, upload)
        uploader_id = _uploader(form)
    except TooLarge as e:
        upload.abort()
        await _drain(body)
        raise ApiError(413, "payload_too_large", str(e)) from None
    except BadForm as e:
        upload.abort()
        raise ApiError(422, "invalid_input", str(e)) from None
    except MultipartParseError:
        upload.abort()
        raise ApiError(422, "invalid_input", "the multipart body is malformed") from None
    except BaseException:
        upload.abort()
        raise
    assert form.filename is not None
    attachment_id = await run_in_threadpool(
        runtime.attachments.complete,
        upload,
        uploader_id,
        form.filename,
        form.content_type,
        version,
    )
    await run_in_threadpool(runtime.runner.catch_up)
    row = runtime.attachments.queries.attachment(str(tid), str(attachment_id))
    assert row is not None
    return _present(runtime, row)


async def _receive(
    body: AsyncIterator[bytes], parser: MultipartParser, form: _Form, upload: Upload
) -> None:
    async for chunk in body:
        parser.write(chunk)
        if form.pending:
            await run_in_threadpool(upload.feed, form.take_pending())
    parser.finalize()
    if form.pending:
        await run_in_threadpool(upload.feed, form.take_pending())


def _uploader(form: _Form) -> UUID:
    if not form.file_seen:
        raise BadForm("a `file` part is required")
    raw = form.fields.get("uploader_id")
    if not raw:
        raise BadForm("an `uploader_id` field is required")
    try:
        return UUID(raw.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise BadForm("uploader_id must be a UUID") from None


async def _drain(body: AsyncIterator[bytes]) -> None:
    """Read on past the limit (up to a bound) so the client gets to read the 413."""
    read = 0
    async for chunk in body:
        read += len(chunk)
        if read > DRAIN_BYTES:
            return


@router.get("/{ticket_id}/attachments", response_model=AttachmentList, dependencies=[SERVICE])
def list_attachments(ticket_id: str, runtime: RuntimeDep) -> dict[str, Any]:
    tid = str(parse_id(ticket_id, "ticket"))
    if runtime.queries.ticket(tid) is None:
        raise ApiError(404, "not_found", f"no ticket with id {tid}")
    rows = runtime.attachments.queries.of_ticket(tid)
    return {"items": [_present(runtime, r) for r in rows]}


@router.get(
    "/{ticket_id}/attachments/{attachment_id}",
    dependencies=[SERVICE],
    response_class=StreamingResponse,
    responses={
        200: {"description": "the file, with its content type"},
        410: {"description": "the attachment was erased"},
    },
)
def download(ticket_id: str, attachment_id: str, runtime: RuntimeDep) -> StreamingResponse:
    tid = str(parse_id(ticket_id, "ticket"))
    aid = str(parse_id(attachment_id, "attachment"))
    try:
        found = runtime.attachments.open(tid, aid)
    except Gone:
        raise ApiError(410, "gone", "this attachment was erased") from None
    if found is None:
        raise ApiError(404, "not_found", f"no attachment with id {aid} on ticket {tid}")
    return StreamingResponse(
        found.chunks,
        media_type=found.meta["content_type"],
        headers={
            "Content-Length": str(found.meta["size"]),
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(found.name)}",
            "X-Content-Type-Options": "nosniff",
        },
    )
