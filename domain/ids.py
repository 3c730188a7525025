"""Text forms of ids, remembered: decoding and projecting a log formats the same ids often."""

from __future__ import annotations

from uuid import UUID

_id_texts: dict[int, str] = {}


def id_text(value: UUID) -> str:
    """`str(value)`, remembered: a batch's events name the same few tickets and people over
    and over, and formatting a UUID was a tenth of a rebuild. Keyed by the UUID's integer,
    whose hash is cheaper than the UUID's own."""
    text = _id_texts.get(value.int)
    if text is None:
        if len(_id_texts) >= 4096:  # bounded, so memory stays flat however long the log
            _id_texts.clear()
        text = _id_texts[value.int] = str(value)
    return text
