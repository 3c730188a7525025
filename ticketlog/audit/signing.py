"""The log's signing key (kept apart from data keys), checkpoints, and notes signed with it."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from crypto.checkpoint import Checkpoint, NoteError, NoteSigner, NoteVerifier, open_checkpoint
from crypto.merkle import RootBuilder, verify_consistency
from ticketlog.audit.store import AuditLog, LogGap
from ticketlog.config import ConfigError, Settings

if TYPE_CHECKING:
    from ticketlog.runtime import Runtime


def load_signer(settings: Settings, *, may_create: bool) -> NoteSigner:
    """TICKETLOG_SIGNING_KEY, else the key file (created 0600 on first use when allowed)."""
    if settings.signing_key:
        signer = _parse_signer(settings.signing_key, "TICKETLOG_SIGNING_KEY")
    else:
        path = settings.signing_key_path
        if not path.exists():
            if not may_create:
                raise ConfigError(
                    f"no signing key: set TICKETLOG_SIGNING_KEY or create {path} "
                    "(`ticketlog audit checkpoint` makes one)"
                )
            _write_private(path, NoteSigner.generate(settings.log_origin).to_text() + "\n")
        signer = _parse_signer(path.read_text(), str(path))
    if signer.name != settings.log_origin:
        raise ConfigError(
            f"the signing key is named {signer.name!r} but the log is {settings.log_origin!r} "
            "(TICKETLOG_LOG_ORIGIN)"
        )
    return signer


def _parse_signer(text: str, where: str) -> NoteSigner:
    try:
        return NoteSigner.from_text(text)
    except NoteError as e:
        raise ConfigError(f"{where} is not a signing key: {e}") from None


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def local_verifier(settings: Settings) -> NoteVerifier | None:
    """The public key of the local signing key, if this machine has one."""
    if not settings.signing_key and not settings.signing_key_path.exists():
        return None
    return load_signer(settings, may_create=False).verifier


def read_verifier(text_or_path: str) -> NoteVerifier:
    """A verifier key given as text, or as a file holding it."""
    try:
        is_file = Path(text_or_path).is_file()
    except OSError:
        is_file = False
    text = Path(text_or_path).read_text() if is_file else text_or_path
    try:
        return NoteVerifier.from_text(text)
    except NoteError as e:
        raise ConfigError(f"not a public key: {e}") from None


def sign_note(settings: Settings, text: str) -> str:
    """Sign any note (e.g. an erasure certificate) with the log's key, in signed-note format."""
    return load_signer(settings, may_create=True).sign(text)


log = logging.getLogger("ticketlog.audit")


class CheckpointRefused(Exception):
    """The leaves do not match the events, or the tree does not extend the last checkpoint."""


@dataclass(frozen=True)
class Made:
    checkpoint: Checkpoint
    note: str
    new: bool


class Checkpointer:
    """Signs tree heads. Before signing it re-hashes the events it has not yet seen and checks
    them against their leaves, and checks the new tree extends the latest checkpoint; it then
    keeps the tree's frontier, so each later checkpoint only reads what is new."""

    def __init__(self, log: AuditLog, signer: NoteSigner, origin: str) -> None:
        self.log = log
        self.signer = signer
        self.origin = origin
        self._builder = RootBuilder()
        self._last_id = 0
        self._lock = threading.Lock()

    @property
    def covered(self) -> int:
        """How many leaves this checkpointer has already checked."""
        return self._builder.size

    def make(self) -> Made:
        with self._lock:
            latest = self.log.latest_checkpoint()
            anchor = None
            if latest is not None:
                anchor = open_checkpoint(latest.note, self.signer.verifier, self.origin)
                if anchor.size < self._builder.size:
                    # Signed (perhaps by another process) behind our frontier: prove it is a
                    # prefix of the tree we hold rather than re-reading the log.
                    self._check_behind(anchor)
                    anchor = None
            size = self.log.tree_size()
            if latest is not None and latest.size > size:
                raise CheckpointRefused(
                    f"the log has {size} leaves but a checkpoint signed {latest.size}"
                )
            self._extend(size, anchor)
            root = self._builder.root()
            if anchor is not None and anchor.size == size and anchor.root != root:
                raise CheckpointRefused(f"the tree of size {size} differs from its checkpoint")
            checkpoint = Checkpoint(self.origin, size, root)
            if latest is not None and latest.size == size:
                return Made(checkpoint, latest.note, new=False)
            note = checkpoint.sign(self.signer)
            self.log.add_checkpoint(size, root, note)
            return Made(checkpoint, note, new=True)

    def _extend(self, size: int, anchor: Checkpoint | None) -> None:
        start = self._builder.size
        rows = self.log.events(after=self._last_id)
        for leaf in self.log.leaves(start, size):
            if anchor is not None and self._builder.size == anchor.size:
                self._check_anchor(anchor)
            row = next(rows, None)
            if leaf.index != self._builder.size or row is None:
                raise CheckpointRefused(f"position {self._builder.size} has no event or leaf")
            if row.notification_id != leaf.notification_id or row.leaf_hash() != leaf.digest:
                raise CheckpointRefused(
                    f"the event at position {leaf.index} does not match its leaf; "
                    "run `ticketlog audit verify`"
                )
            self._builder.add(leaf.digest)
            self._last_id = row.notification_id
        if anchor is not None and self._builder.size == anchor.size:
            self._check_anchor(anchor)
        if self._builder.size != size:
            raise CheckpointRefused(f"the log has no leaf at position {self._builder.size}")

    def _check_behind(self, anchor: Checkpoint) -> None:
        size = self._builder.size
        try:
            proof = self.log.consistency_proof(anchor.size, size)
        except LogGap as e:
            raise CheckpointRefused(str(e)) from None
        if not verify_consistency(anchor.size, size, anchor.root, self._builder.root(), proof):
            raise CheckpointRefused(
                f"the signed checkpoint of size {anchor.size} is not a prefix of the log"
            )

    def _check_anchor(self, anchor: Checkpoint) -> None:
        if self._builder.root() != anchor.root:
            self._builder, self._last_id = RootBuilder(), 0
            raise CheckpointRefused(
                f"the log no longer matches the signed checkpoint of size {anchor.size}"
            )


class CheckpointThread:
    """Makes a checkpoint every `every` events or `interval` seconds, whichever comes first."""

    POLL_SECONDS = 1.0

    def __init__(self, checkpointer: Checkpointer, every: int, interval: float) -> None:
        self.checkpointer = checkpointer
        self.every = every
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="checkpoints", daemon=True)
        self.error: Exception | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        waited = self.interval  # sign at once on start
        while not self._stop.is_set():
            try:
                pending = self.checkpointer.log.tree_size() - self.checkpointer.covered
                if pending >= self.every or (pending > 0 and waited >= self.interval):
                    made = self.checkpointer.make()
                    log.info("signed checkpoint of size %d", made.checkpoint.size)
                    waited = 0.0
            except CheckpointRefused as e:
                self.error = e
                log.error("checkpoint refused: %s", e)
                return  # never sign over a log that fails its checks; verify says why
            except Exception as e:  # storage hiccups: try again next round
                log.warning("checkpoint failed: %s", type(e).__name__)
            self._stop.wait(self.POLL_SECONDS)
            waited += self.POLL_SECONDS


def start_checkpoints(runtime: Runtime) -> CheckpointThread:
    """The serving process's checkpoint thread (TICKETLOG_CHECKPOINT_EVERY / _INTERVAL)."""
    settings = runtime.settings
    thread = CheckpointThread(
        runtime.checkpointer(), settings.checkpoint_every, settings.checkpoint_interval
    )
    thread.start()
    return thread
