"""Signed notes and checkpoints (C2SP): what verifies, and the forgeries that must not."""

from __future__ import annotations

import base64
import hashlib

import pytest

from crypto.checkpoint import (
    Checkpoint,
    NoteError,
    NoteSigner,
    NoteVerifier,
    key_id,
    open_checkpoint,
)

ORIGIN = "example.com/ticketlog"
ROOT = hashlib.sha256(b"root").digest()


@pytest.fixture(scope="module")
def signer() -> NoteSigner:
    return NoteSigner.generate(ORIGIN)


def test_a_checkpoint_round_trips_through_its_signed_note(signer: NoteSigner) -> None:
    note = Checkpoint(ORIGIN, 42, ROOT).sign(signer)
    body, sig = note.split("\n\n")
    assert body == f"{ORIGIN}\n42\n{base64.b64encode(ROOT).decode()}"
    assert sig.startswith(f"\u2014 {ORIGIN} ")
    blob = base64.b64decode(sig.split(" ")[2])
    assert blob[:4] == key_id(ORIGIN, signer.verifier.public_key)
    assert len(blob) == 68
    assert open_checkpoint(note, signer.verifier, ORIGIN) == Checkpoint(ORIGIN, 42, ROOT)


def test_keys_round_trip_as_text_and_check_their_ids(signer: NoteSigner) -> None:
    again = NoteSigner.from_text(signer.to_text())
    assert again.verifier == signer.verifier
    assert NoteVerifier.from_text(signer.verifier.to_text()) == signer.verifier
    name, hex_id, key = signer.verifier.to_text().split("+", 2)
    with pytest.raises(NoteError, match="id does not match"):
        NoteVerifier.from_text(f"{name}+{'0' * 8}+{key}")
    with pytest.raises(NoteError, match="id does not match"):
        NoteVerifier.from_text(f"other.example+{hex_id}+{key}")
    for bad in ["", "name+abcd", f"{name}+{hex_id}+!!!", f"{name}+{hex_id}+{'A' * 44}"]:
        with pytest.raises(NoteError):
            NoteVerifier.from_text(bad)


def test_forged_and_malformed_notes_are_refused(signer: NoteSigner) -> None:
    note = Checkpoint(ORIGIN, 42, ROOT).sign(signer)
    other = NoteSigner.generate(ORIGIN)  # same name, different key
    forgeries = {
        "size changed": note.replace("\n42\n", "\n43\n"),
        "signed by another key of the same name": Checkpoint(ORIGIN, 42, ROOT).sign(other),
        "no signature": note.split("\n\n")[0] + "\n\n",
        "no blank line": note.replace("\n\n", "\n"),
        "signature bytes flipped": _flip_signature(note),
        "not text": b"bytes",
        "truncated signature": note[:-20] + "\n",
    }
    for why, forged in forgeries.items():
        with pytest.raises(NoteError):
            open_checkpoint(forged, signer.verifier, ORIGIN)  # type: ignore[arg-type]
        assert why
    with pytest.raises(NoteError, match="not 'elsewhere"):
        open_checkpoint(note, signer.verifier, "elsewhere")


def test_signatures_by_unknown_keys_are_ignored_not_trusted(signer: NoteSigner) -> None:
    stranger = NoteSigner.generate("witness.example")
    note = Checkpoint(ORIGIN, 7, ROOT).sign(signer)
    cosigned = note + stranger.sign(Checkpoint(ORIGIN, 7, ROOT).text()).split("\n\n")[1]
    assert open_checkpoint(cosigned, signer.verifier).size == 7
    with pytest.raises(NoteError, match="no signature by"):
        open_checkpoint(stranger.sign(Checkpoint(ORIGIN, 7, ROOT).text()), signer.verifier)


def test_checkpoint_text_is_strict() -> None:
    root = base64.b64encode(ROOT).decode()
    for text in [
        f"{ORIGIN}\n007\n{root}\n",
        f"{ORIGIN}\n-1\n{root}\n",
        f"{ORIGIN}\n1\n{base64.b64encode(ROOT[:31]).decode()}\n",
        f"{ORIGIN}\n1\n",
        f"\n1\n{root}\n",
    ]:
        with pytest.raises(NoteError):
            Checkpoint.from_text(text)
    assert Checkpoint.from_text(f"{ORIGIN}\n0\n{root}\nextension line\n").size == 0


def test_note_text_must_be_lines(signer: NoteSigner) -> None:
    for text in ["no newline", "two\n\nparagraphs\n", "\nleading\n", "tab\there\n"]:
        with pytest.raises(NoteError):
            signer.sign(text)


def _flip_signature(note: str) -> str:
    body, line = note.split("\n\n")
    prefix, name, blob = line.split(" ")
    raw = bytearray(base64.b64decode(blob))
    raw[10] ^= 1
    return f"{body}\n\n{prefix} {name} {base64.b64encode(bytes(raw)).decode()}\n"
