"""The orjson transcoder decodes exactly what the library's own transcoder decodes."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from uuid import uuid4

import pytest
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    TranscodingNotRegisteredError,
    UUIDAsHex,
)

from crypto.transcoder import FastJSONTranscoder


def library() -> JSONTranscoder:
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    return transcoder


STATES = [
    {
        "id": uuid4(),
        "at": datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
        "amount": Decimal("1.10"),
        "nested": {"ids": [uuid4(), {"deep": [uuid4()]}], "n": 2**63 - 1, "m": -(2**63)},
        "text": "naïve \u2603 \U0001f600",
        "empty": {},
        "pair": {"_type_": "x"},
    },
    {"nan": float("nan"), "big": 10**30},  # orjson refuses these: the library decodes them
    {"ints": [2**64 - 1, 2**64, -(2**63) - 1, 2**70], "floats": [1e19, -1.5e300, 0.1]},
    2**64,
    [1, 2.5, None, True, {"_type_": "uuid_hex", "_data_": uuid4().hex}],
]


@pytest.mark.parametrize("state", STATES)
def test_same_objects_as_the_library(state: object) -> None:
    data = library().encode(state)
    ours, theirs = FastJSONTranscoder.like(library()).decode(data), library().decode(data)
    assert repr(ours) == repr(theirs)


def test_escaped_lone_surrogate_decodes_alike() -> None:
    data = (
        b'{"lone": "\\ud800", "id": {"_type_": "uuid_hex", "_data_": "%s"}}' % uuid4().hex.encode()
    )
    assert repr(FastJSONTranscoder.like(library()).decode(data)) == repr(library().decode(data))


def test_unknown_transcoding_is_refused_alike() -> None:
    data = b'{"a": {"_type_": "nope", "_data_": 1}}'
    with pytest.raises(TranscodingNotRegisteredError):
        library().decode(data)
    with pytest.raises(TranscodingNotRegisteredError):
        FastJSONTranscoder.like(library()).decode(data)


def test_encodes_the_same_bytes() -> None:
    state = {"id": uuid4(), "at": datetime.now(UTC), "text": "é"}
    assert FastJSONTranscoder.like(library()).encode(state) == library().encode(state)
