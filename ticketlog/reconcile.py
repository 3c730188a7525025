"""Bring a (restored) key vault back in line with the erasures the log records.

A restored old keys.db would resurrect everyone erased since that backup. The log's erasure
journal (SubjectErased, Anonymized, ContentShredded events, as the compliance view lists them)
says which keys must not exist; this destroys them again. For a restore of *both* stores, the
journal exported off-site (`ticketlog compliance journal`) covers erasures newer than the log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from crypto.errors import HeldByLaw
from ticketlog.runtime import Runtime


@dataclass
class ReconcileReport:
    entries: int = 0
    destroyed_again: list[str] = field(default_factory=list)


def journal(runtime: Runtime) -> list[dict[str, Any]]:
    runtime.runner.catch_up()
    return runtime.queries.erasure_journal()


def write_journal(runtime: Runtime, path: Path) -> int:
    entries = journal(runtime)
    path.write_bytes(
        orjson.dumps(
            {"ticketlog_erasure_journal": 1, "entries": entries}, option=orjson.OPT_INDENT_2
        )
    )
    return len(entries)


def read_journal(path: Path) -> list[dict[str, Any]]:
    data = orjson.loads(path.read_bytes())
    if data.get("ticketlog_erasure_journal") != 1:
        raise ValueError(f"{path} is not a ticketlog erasure journal")
    entries: list[dict[str, Any]] = data["entries"]
    return entries


def reconcile(runtime: Runtime, extra: list[dict[str, Any]] | None = None) -> ReconcileReport:
    report = ReconcileReport()
    for entry in [*journal(runtime), *(extra or [])]:
        report.entries += 1
        try:
            report.destroyed_again += _apply(runtime, entry["kind"], entry["target_id"])
        except HeldByLaw as held:
            # The log says this erasure happened, so any hold was released before it: a
            # restored vault may still carry the old hold.
            runtime.vault.set_hold(held.owner, False)
            report.destroyed_again += _apply(runtime, entry["kind"], entry["target_id"])
    return report


def _apply(runtime: Runtime, kind: str, target: str) -> list[str]:
    vault = runtime.vault
    if kind == "erase":
        return vault.destroy_owned_by(f"user:{target}").destroyed_now
    scope = f"user:{target}" if kind == "anonymize" else f"ticket:{target}"
    return [scope] if vault.destroy_scope(scope) else []
