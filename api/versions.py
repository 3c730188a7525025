"""Optimistic concurrency for clients: `ETag: "<version>"` out, `If-Match` in.

The version is the aggregate's (a ticket's, a user's or an organization's). The desk compares
it with the aggregate each command loads, so a command that lost a race and re-runs refuses
instead of applying on newer state."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Header, Response

from api.errors import ApiError
from api.schemas import ErrorOut

MAX_VERSION_DIGITS = 18  # fits a BIGINT
_VERSION = re.compile(
    rf'^(?:W/)?"([0-9]{{1,{MAX_VERSION_DIGITS}}})"$|^([0-9]{{1,{MAX_VERSION_DIGITS}}})$'
)

IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        description=(
            "Apply the command only if the ticket (user, organization) is still at this version: "
            'the ETag of a previous answer ("7"), or the bare number (7). Otherwise 412 '
            "version_mismatch."
        ),
    ),
]

ETAG_HEADER = {
    "ETag": {"description": 'the resource\'s version, as "<version>"', "schema": {"type": "string"}}
}


def expected_version(if_match: str | None) -> int | None:
    """The version an If-Match header names; None when absent or `*` (any version)."""
    if if_match is None:
        return None
    value = if_match.strip()
    if value == "*":
        return None
    found = _VERSION.match(value)
    if found is None:
        raise ApiError(
            400,
            "invalid_if_match",
            'If-Match must name one version: 7, "7" or W/"7" (or *)',
        )
    return int(found.group(1) or found.group(2))


def etag(version: int) -> str:
    return f'"{version}"'


def tagged(response: Response, resource: dict[str, Any]) -> dict[str, Any]:
    """Give the answer the ETag of the ticket, user or organization it carries."""
    response.headers["ETag"] = etag(int(resource["version"]))
    return resource


def command_responses(status: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI for a ticket command: the ETag on success, 400 and 412 for If-Match."""
    return {
        status: {"headers": ETAG_HEADER},
        400: {"model": ErrorOut, "description": "If-Match does not name a version"},
        412: {
            "model": ErrorOut,
            "description": "the ticket is not at the If-Match version (version_mismatch; "
            "details give current_version); nothing was stored",
        },
    }
