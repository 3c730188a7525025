"""Proof of erasure: a certificate signed with the log's key.

It says who was erased, which keys were destroyed, when, where the erasure event sits in the
log (with an inclusion proof against a signed checkpoint covering it), and what a residue scan
found: before destroying the keys, the person's values are opened in memory and searched for
in the raw bytes of every file under the data dir (and every row of the PostgreSQL schemas);
after, searched again, together with the person's email blind-index digest (which the vault
holds by design until the erasure deletes it). Matches must be zero both times. The
certificate holds file names and counts, never the values searched for.
"""

from __future__ import annotations

import base64
import mmap
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import psycopg

from api.present import Opener
from crypto.checkpoint import NoteError, NoteVerifier, open_checkpoint
from crypto.merkle import verify_inclusion
from domain.personal import personal_fields_of
from domain.user import User
from ticketlog.audit.signing import sign_note
from ticketlog.config import PostgresURL
from ticketlog.desk import ErasureReport
from ticketlog.runtime import Runtime

HEADER = "ticketlog erasure certificate v1"
MIN_NEEDLE = 4  # shorter values ("Hi", "ok") would match by chance


@dataclass(frozen=True)
class ScanResult:
    places_scanned: int
    values_searched: int
    matches: list[dict[str, Any]]  # {"place": file or table, "count": n}
    email_digests_searched: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "places_scanned": self.places_scanned,
            "values_searched": self.values_searched,
            "email_digests_searched": self.email_digests_searched,
            "matches": self.matches,
        }


def personal_values(runtime: Runtime, user_id: UUID) -> list[str]:
    """Every personal value about the person that can still be opened, in memory only."""
    values: set[str] = set()
    for event in runtime.desk.history(user_id):
        for field in personal_fields_of(type(event)):
            value = getattr(event, field)
            if isinstance(value, str):
                values.add(value)
    opener = Opener(runtime.vault, may_see_restricted=True)
    for ticket in runtime.queries.tickets_requested_by(str(user_id)):
        opened = opener.ticket(ticket)
        values.update(v for v in (opened["subject"], opened["body"]) if isinstance(v, str))
        values.update(c["body"] for c in opened["comments"] if isinstance(c["body"], str))
    for comment in runtime.queries.comments_elsewhere_by(str(user_id)):
        body = opener.comment(comment)["body"]
        if isinstance(body, str):
            values.add(body)
    return sorted(v for v in (v.strip() for v in values) if len(v) >= MIN_NEEDLE)


def residue_scan(runtime: Runtime, values: list[str], digests: Sequence[bytes] = ()) -> ScanResult:
    """Count the values (and, after an erasure, the person's email digests) in every place."""
    needles = [v.encode() for v in values] + list(digests)
    pattern = re.compile(b"|".join(re.escape(n) for n in needles)) if needles else None
    matches: list[dict[str, Any]] = []
    places = 0
    root = runtime.settings.data_dir
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        places += 1
        count = _count_in_file(path, pattern)
        if count:
            matches.append({"place": str(path.relative_to(root)), "count": count})
    for url in _postgres_urls(runtime):
        scanned, found = _scan_postgres(url, pattern)
        places += scanned
        matches += found
    return ScanResult(places, len(values), matches, len(digests))


def _count_in_file(path: Path, pattern: re.Pattern[bytes] | None) -> int:
    if pattern is None:
        return 0
    try:
        with path.open("rb") as f:
            if path.stat().st_size == 0:
                return 0
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return sum(1 for _ in pattern.finditer(data))
    except OSError:
        return 0


def _postgres_urls(runtime: Runtime) -> list[PostgresURL]:
    settings = runtime.settings
    urls = [settings.postgres] if settings.postgres else []
    if settings.keyvault_is_postgres and settings.keyvault_url:
        urls.append(PostgresURL.parse(settings.keyvault_url))
    return [u for u in urls if u is not None]


def _scan_postgres(
    url: PostgresURL, pattern: re.Pattern[bytes] | None
) -> tuple[int, list[dict[str, Any]]]:
    found = []
    with psycopg.connect(url.conninfo(), autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                [url.schema],
            ).fetchall()
        ]
        for table in tables:
            if pattern is None:
                continue
            count = 0
            with conn.cursor() as cur:
                cur.execute(f'SELECT * FROM "{url.schema}"."{table}"')  # names from the catalog
                for row in cur:
                    for value in row:
                        if value is None:
                            continue
                        raw = value if isinstance(value, bytes) else str(value).encode()
                        count += sum(1 for _ in pattern.finditer(raw))
            if count:
                found.append({"place": f"postgresql:{url.schema}.{table}", "count": count})
    return len(tables), found


def erase_with_certificate(
    runtime: Runtime, user_id: UUID, reason: str = "request"
) -> tuple[ErasureReport, str | None]:
    """Erase, then certify. An erasure repeated later returns the certificate already made."""
    user = runtime.desk.get(User, user_id)
    if user.erased:
        return runtime.desk.erase_subject(user_id, reason), user.certificate
    runtime.runner.catch_up()
    values = personal_values(runtime, user_id)
    # The blind index holds the person's email digest until the erasure deletes it: searched
    # for after only (before, the vault holds it by design).
    digests = runtime.desk.emails.digests_of(f"user:{user_id}")
    before = residue_scan(runtime, values)
    report = runtime.desk.erase_subject(user_id, reason)
    runtime.runner.catch_up()
    after = residue_scan(runtime, values, digests)
    del values
    note = sign_note(runtime.settings, _certificate_text(runtime, report, before, after))
    runtime.desk.run(lambda: _attach(runtime, user_id, note))
    runtime.runner.catch_up()
    return report, note


def _attach(runtime: Runtime, user_id: UUID, note: str) -> User:
    user = runtime.desk.get(User, user_id)
    user.attach_certificate(note, runtime.desk.clock())
    return user


def _certificate_text(
    runtime: Runtime, report: ErasureReport, before: ScanResult, after: ScanResult
) -> str:
    body: dict[str, Any] = {
        "subject_id": str(report.subject_id),
        "erased_at": report.erased_at.isoformat(),
        "keys_destroyed": report.keys_destroyed,
        "log_position": report.position,
        "residue_scan": {"before": before.to_dict(), "after": after.to_dict()},
        "certified_at": datetime.now(UTC).isoformat(),
    }
    audit = runtime.audit
    if audit is not None and report.position is not None:
        made = runtime.checkpointer().make()
        leaf = audit.leaf_of_event(report.position)
        if leaf is not None:
            body["checkpoint"] = made.note
            body["inclusion"] = {
                "leaf_index": leaf.index,
                "leaf_hash": base64.b64encode(leaf.digest).decode(),
                "tree_size": made.checkpoint.size,
                "proof": [
                    base64.b64encode(h).decode()
                    for h in audit.inclusion_proof(leaf.index, made.checkpoint.size)
                ],
            }
    return f"{HEADER}\n{orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode()}\n"


@dataclass(frozen=True)
class CertificateCheck:
    ok: bool
    subject_id: str | None
    problems: list[str]
    facts: dict[str, Any]


def verify_certificate(note: str, verifier: NoteVerifier) -> CertificateCheck:
    """Check a certificate offline: signature, residue scans, and the erasure event's
    inclusion in the signed checkpoint it names."""
    problems: list[str] = []
    try:
        text = verifier.verify(note)
    except NoteError as e:
        return CertificateCheck(False, None, [f"signature: {e}"], {})
    header, _, rest = text.partition("\n")
    if header != HEADER:
        return CertificateCheck(False, None, ["not a ticketlog erasure certificate"], {})
    try:
        body = orjson.loads(rest)
    except orjson.JSONDecodeError:
        return CertificateCheck(False, None, ["the certificate body is not JSON"], {})
    for when in ("before", "after"):
        scan = body.get("residue_scan", {}).get(when, {})
        if scan.get("matches"):
            places = ", ".join(f"{m['place']} ({m['count']})" for m in scan["matches"])
            problems.append(f"residue scan {when} erasure found personal data in {places}")
    inclusion = body.get("inclusion")
    if inclusion is None:
        problems.append("no inclusion proof of the erasure event")
    else:
        try:
            checkpoint = open_checkpoint(body["checkpoint"], verifier)
            proof = [base64.b64decode(h) for h in inclusion["proof"]]
            included = checkpoint.size == inclusion["tree_size"] and verify_inclusion(
                base64.b64decode(inclusion["leaf_hash"]),
                inclusion["leaf_index"],
                checkpoint.size,
                proof,
                checkpoint.root,
            )
        except (NoteError, KeyError, ValueError, TypeError):
            included = False
        if not included:
            problems.append("the erasure event is not proven to be in the signed checkpoint")
    facts = {k: body.get(k) for k in ("erased_at", "keys_destroyed", "log_position")}
    facts["places_scanned"] = body.get("residue_scan", {}).get("after", {}).get("places_scanned")
    return CertificateCheck(not problems, body.get("subject_id"), problems, facts)


def stored_certificate(runtime: Runtime, user_id: UUID) -> str | None:
    user = runtime.desk.get(User, user_id)
    return user.certificate
