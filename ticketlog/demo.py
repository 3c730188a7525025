"""`ticketlog demo`: a small help desk, one customer erased, and what that changed."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson

from api.present import Opener
from domain.ticket import Priority, Status
from domain.user import UserKind
from ticketlog.config import Settings
from ticketlog.runtime import Runtime

CUSTOMERS = [
    ("Maria Lopez", "maria.lopez@harbor-tiles.example", "+34 600 123 456", "Harbor Tiles"),
    ("Kenji Watanabe", "kenji@watanabe-design.example", "+81 90 1234 5678", "Watanabe Design"),
    ("Aisha Bello", "aisha.bello@greenfield.example", None, "Greenfield Farms"),
]
AGENTS = [
    ("Sam Carter", "sam@support.ticketlog.example"),
    ("Priya Nair", "priya@support.ticketlog.example"),
]


def _seed(rt: Runtime) -> dict[str, Any]:
    desk = rt.desk
    customers = [desk.register_user(UserKind.CUSTOMER, *c) for c in CUSTOMERS]
    agents = [desk.register_user(UserKind.AGENT, n, e) for n, e in AGENTS]
    maria, kenji, aisha = customers
    sam, priya = agents

    t1 = desk.open_ticket(
        maria,
        "Invoice 2291 charged twice",
        "My card was charged twice for invoice 2291 on 3 March.",
        Priority.HIGH,
        ["billing"],
    )
    desk.assign(t1, sam)
    desk.add_comment(
        t1, sam, "Sorry about that, Maria. I have refunded the duplicate charge.", True
    )
    desk.add_comment(t1, sam, "Refund ref RF-88213 issued via the payments console.", False)
    desk.change_status(t1, Status.SOLVED)

    t2 = desk.open_ticket(
        maria,
        "Cannot reset my password",
        "The reset link for maria.lopez@harbor-tiles.example expires instantly.",
    )
    desk.assign(t2, priya)
    desk.change_status(t2, Status.PENDING)
    desk.add_comment(t2, maria, "Still broken this morning, tried from my phone too.", True)

    t3 = desk.open_ticket(
        kenji,
        "Export to PDF cuts off the last page",
        "Exports of our 12-page brochure stop at page 11.",
        Priority.NORMAL,
        ["export", "pdf"],
    )
    desk.assign(t3, sam)
    desk.add_comment(t3, maria, "Same here at Harbor Tiles — following this one.", True)
    desk.add_comment(t3, sam, "Reproduced; a fix ships in 4.2.1.", True)

    t4 = desk.open_ticket(
        aisha, "Add a second admin", "Please make our farm manager an admin.", Priority.LOW
    )
    desk.assign(t4, priya)
    desk.change_status(t4, Status.SOLVED)
    rt.runner.catch_up()
    return {
        "maria": maria,
        "tickets": [t1, t2, t3, t4],
        "names": {t1: "T1", t2: "T2", t3: "T3", t4: "T4"},
    }


def _ticket_lines(rt: Runtime, ticket_id: UUID, label: str) -> dict[str, Any]:
    row = rt.queries.ticket(str(ticket_id))
    assert row is not None
    t = Opener(rt.vault, may_see_restricted=True).ticket(row)
    return {
        "ticket": label,
        "status": t["status"],
        "priority": t["priority"],
        "assigned": t["assignee_id"] is not None,
        "subject": t["subject"],
        "comments": [c["body"] for c in t["comments"]],
    }


def _scan(data_dir: Path, needles: list[str]) -> dict[str, int]:
    hits = {}
    for path in sorted(p for p in data_dir.rglob("*") if p.is_file()):
        raw = path.read_bytes()
        hits[path.name] = sum(raw.count(n.encode()) for n in needles)
    return hits


def run_demo(data_dir: str | None, as_json: bool = False) -> int:
    with tempfile.TemporaryDirectory(prefix="ticketlog-demo-") as tmp:
        root = Path(data_dir) if data_dir else Path(tmp)
        rt = Runtime.open(Settings(data_dir=root))
        try:
            seeded = _seed(rt)
            labels = seeded["names"]
            before = [_ticket_lines(rt, t, labels[t]) for t in seeded["tickets"]]
            needles = [v for c in CUSTOMERS[:1] for v in c if v]
            report = rt.desk.erase_subject(seeded["maria"])
            rt.runner.catch_up()
            after = [_ticket_lines(rt, t, labels[t]) for t in seeded["tickets"]]
            profile = Opener(rt.vault, may_see_restricted=True).user(
                rt.queries.user(str(seeded["maria"])) or {}
            )
        finally:
            rt.close()
        result = {
            "data_dir": str(root),
            "erased": {"subject": str(report.subject_id), "keys_destroyed": report.keys_destroyed},
            "profile_after": {
                k: profile[k] for k in ("name", "email", "phone", "organization", "erased")
            },
            "before": before,
            "after": after,
            "plaintext_hits_on_disk": _scan(root, needles),
        }
    if as_json:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        _print_human(result)
    return 0


def _print_human(r: dict[str, Any]) -> None:
    print("Seeded 3 customers, 2 agents and 4 tickets; then erased Maria Lopez.\n")
    print(f"Keys destroyed: {', '.join(r['erased']['keys_destroyed'])}")
    p = r["profile_after"]
    print(f"Her profile now: name={p['name']} email={p['email']} erased={p['erased']}\n")
    for before, after in zip(r["before"], r["after"], strict=True):
        print(
            f"{before['ticket']}  status {after['status']:<8} priority {after['priority']:<7}"
            f" assigned {'yes' if after['assigned'] else 'no'}  (kept: not personal data)"
        )
        print(f"    subject before: {before['subject']!r}")
        print(f"    subject after:  {after['subject']!r}")
        for b, a in zip(before["comments"], after["comments"], strict=True):
            state = "unreadable" if a is None else "kept"
            print(f"    comment {state:<10} {b!r}")
    hits = r["plaintext_hits_on_disk"]
    print(
        f"\nRaw bytes of {len(hits)} files under {r['data_dir']} searched for her name, email, "
        f"phone and company: {sum(hits.values())} matches."
    )
    print("The log was never rewritten: her events are still there, as ciphertext nobody can open.")
