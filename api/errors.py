"""Every error is JSON: {"error": {"code", "message", "details"?}} with the right status."""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

import orjson
import psycopg
from eventsourcing.persistence import IntegrityError, OperationalError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from api import storage_faults
from crypto.errors import DestructionUnfinished, KeyVaultError, ScopeErased, TamperedData
from domain.errors import DomainError, NotFound, ProcessingRestricted, VersionMismatch
from projections.kafka import ViewsLagging
from projections.queries import BadCursor
from ticketlog.logs import REQUEST_ID_HEADER, request_id

log = logging.getLogger("ticketlog.api")


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


class JSONBody(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return JSONBody({"error": body}, status_code=status, headers=headers)


def storage_fault_response(exc: BaseException, method: str) -> Response:
    """503 with a stable code: storage_full, storage_busy, storage_unavailable, views_lagging."""
    fault = storage_faults.answer_for(exc, method)
    log.error("storage fault %s: %s", fault.code, type(exc).__name__)
    return error_response(
        503, fault.code, fault.message, headers={"Retry-After": str(fault.retry_after)}
    )


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    423: "processing_restricted",
}


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Never echo the rejected input: it may be someone's personal data.
    return [
        {
            "loc": [str(p) for p in err.get("loc", ())],
            "type": err.get("type"),
            "msg": err.get("msg"),
        }
        for err in exc.errors()
    ]


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> Response:
        return error_response(
            422, "invalid_input", "the request is not valid", _validation_details(exc)
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, code, str(exc.detail), headers=headers)

    @app.exception_handler(NotFound)
    async def not_found(_: Request, exc: NotFound) -> Response:
        return error_response(404, "not_found", exc.message)

    @app.exception_handler(ProcessingRestricted)
    async def restricted(_: Request, exc: ProcessingRestricted) -> Response:
        return error_response(423, exc.code, exc.message)

    @app.exception_handler(VersionMismatch)
    async def stale(_: Request, exc: VersionMismatch) -> Response:
        return error_response(
            412,
            exc.code,
            exc.message,
            [{"current_version": exc.current, "expected_version": exc.expected}],
            headers={"ETag": f'"{exc.current}"'},
        )

    @app.exception_handler(DomainError)
    async def rule(_: Request, exc: DomainError) -> Response:
        return error_response(409, exc.code, exc.message)

    @app.exception_handler(ScopeErased)
    async def erased(_: Request, exc: ScopeErased) -> Response:
        return error_response(409, exc.code, "the person this data belongs to has been erased")

    @app.exception_handler(IntegrityError)
    async def conflict(_: Request, exc: IntegrityError) -> Response:
        return error_response(409, "conflict", "a concurrent change won; retry the command")

    @app.exception_handler(BadCursor)
    async def bad_cursor(_: Request, exc: BadCursor) -> Response:
        return error_response(422, "invalid_cursor", str(exc))

    async def storage_fault(request: Request, exc: Exception) -> Response:
        if isinstance(exc, OSError) and storage_faults.classify(exc) is None:
            return await unexpected(request, exc)  # not a full disk: a bug or a broken host
        return storage_fault_response(exc, request.method)

    # The library wraps driver errors; the vault and some stores meet them unwrapped.
    for kind in (OperationalError, sqlite3.OperationalError, psycopg.OperationalError, OSError):
        app.add_exception_handler(kind, storage_fault)
    # What each request stored, read by `storage_faults.answer_for`, is tracked by RequestLog.

    @app.exception_handler(ViewsLagging)
    async def lagging(_: Request, exc: ViewsLagging) -> Response:
        log.warning("views lagging: %s", exc)
        return error_response(
            503,
            "views_lagging",
            "the command was stored; the views have not caught up yet, read again shortly",
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(KeyVaultError)
    async def vault(_: Request, exc: KeyVaultError) -> Response:
        if isinstance(exc, DestructionUnfinished):
            log.warning("erasure unfinished: %s", exc)
            return error_response(
                503,
                exc.code,
                "the keys are destroyed, but a reader of the key vault kept their old copies "
                "on disk; repeat the request to finish the erasure",
                headers={"Retry-After": "1"},
            )
        log.error("key vault error: %s", exc.code)
        return error_response(503, exc.code, "the key vault cannot serve this request")

    @app.exception_handler(TamperedData)
    async def tampered(_: Request, exc: TamperedData) -> Response:
        log.error("tampered data: %s", exc)
        return error_response(500, exc.code, "stored data failed authentication")

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unexpected error: %s", type(exc).__name__)
        # Answered outside the request-id middleware (Starlette's outermost layer), so the
        # header is set here; the id is still in this task's context.
        rid = request_id.get()
        headers = {REQUEST_ID_HEADER: rid} if rid else None
        return error_response(
            500, "internal_error", "an unexpected error occurred", headers=headers
        )
