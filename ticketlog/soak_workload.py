"""The soak's clients: each drives a help desk of its own through the HTTP API.

Each client registers its own people and opens its own tickets, so it knows what every answer
must be: a 2xx, or one of the refusals it provoked on purpose (a comment on a closed ticket, a
write to an erased person's ticket, an unknown id). Anything else is an error."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

# How often each kind of request is chosen (a kind that cannot run yet is skipped).
WEIGHTS: dict[str, int] = {
    "register": 8,
    "open": 10,
    "comment": 18,
    "assign": 8,
    "status": 12,
    "read_ticket": 14,
    "read_user": 8,
    "list": 8,
    "export": 3,
    "erase": 1,
    "closed_comment": 2,
    "erased_comment": 2,
    "missing": 2,
}
NEXT_STATUS = {
    "new": ["open", "pending", "on_hold"],
    "open": ["pending", "on_hold", "solved"],
    "pending": ["open", "on_hold", "solved"],
    "on_hold": ["open", "pending", "solved"],
    "solved": ["closed", "open"],
}
MAX_TICKETS = 300  # per client; older closed tickets are let go


@dataclass
class KindStats:
    latencies_ms: list[float] = field(default_factory=list)
    ok: int = 0
    expected_4xx: int = 0
    unexpected_4xx: int = 0
    server_errors: int = 0  # 5xx, or no answer at all


@dataclass
class Stats:
    kinds: dict[str, KindStats] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)  # first few errors: codes only
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(
        self, kind: str, ms: float, outcome: str, status: int | None, code: str | None
    ) -> None:
        with self.lock:
            stats = self.kinds.setdefault(kind, KindStats())
            stats.latencies_ms.append(ms)
            setattr(stats, outcome, getattr(stats, outcome) + 1)
            if outcome in ("unexpected_4xx", "server_errors") and len(self.samples) < 20:
                self.samples.append({"kind": kind, "status": status, "code": code})

    def totals(self) -> tuple[int, int]:
        """(requests, errors) so far."""
        with self.lock:
            requests = sum(len(k.latencies_ms) for k in self.kinds.values())
            errors = sum(k.unexpected_4xx + k.server_errors for k in self.kinds.values())
        return requests, errors


@dataclass
class Ticket:
    requester: str
    status: str = "new"
    assignee: str | None = None


class Client:
    def __init__(
        self,
        index: int,
        base_url: str,
        tokens: dict[str, str],
        stats: Stats,
        erase_gate: threading.Semaphore,
    ) -> None:
        self.index = index
        self.http = httpx.Client(base_url=base_url, timeout=120)
        self.tokens = tokens
        self.stats = stats
        self.erase_gate = erase_gate  # erasures scan every file: one at a time is plenty
        self.rng = random.Random(index)  # noqa: S311 (a workload mix, not a secret)
        self.customers: list[str] = []
        self.agents: list[str] = []
        self.tickets: dict[str, Ticket] = {}
        self.erased_tickets: list[str] = []
        self.sent = 0
        self.actions: dict[str, Callable[[], bool]] = {
            kind: getattr(self, f"_{kind}") for kind in WEIGHTS
        }

    def run(self, deadline: float) -> None:
        try:
            self._register_agent()
            self._register()
            kinds, weights = list(WEIGHTS), list(WEIGHTS.values())
            while time.monotonic() < deadline:
                kind = self.rng.choices(kinds, weights)[0]
                self.actions[kind]()  # False: nothing to act on yet; pick again
        finally:
            self.http.close()

    def _call(
        self,
        kind: str,
        method: str,
        path: str,
        body: Any = None,
        role: str = "service",
        expect: tuple[int, str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """Send one request and count it; the JSON answer when it succeeded."""
        self.sent += 1
        headers = {
            "Authorization": f"Bearer {self.tokens[role]}",
            "X-Request-ID": f"soak-{self.index}-{self.sent}",
        }
        started = time.perf_counter()
        try:
            r = self.http.request(method, path, json=body, headers=headers, params=params)
        except httpx.HTTPError as e:
            ms = (time.perf_counter() - started) * 1000
            self.stats.record(kind, ms, "server_errors", None, type(e).__name__)
            return None
        ms = (time.perf_counter() - started) * 1000
        code = _error_code(r) if r.status_code >= 400 else None
        if r.is_success:
            self.stats.record(kind, ms, "ok", r.status_code, None)
            return dict(r.json())
        if expect is not None and (r.status_code, code) == expect:
            self.stats.record(kind, ms, "expected_4xx", r.status_code, code)
        elif r.status_code >= 500:
            self.stats.record(kind, ms, "server_errors", r.status_code, code)
        else:
            self.stats.record(kind, ms, "unexpected_4xx", r.status_code, code)
        return None

    def _person(self, kind: str) -> dict[str, str]:
        tag = uuid.uuid4().hex[:10]
        return {
            "kind": kind,
            "name": f"Soak {kind.title()} {tag}",
            "email": f"soak-{tag}@example.com",
            "phone": f"+1 555 {self.rng.randrange(1000, 9999)}",
        }

    def _register_agent(self) -> bool:
        made = self._call("register", "POST", "/v1/users", self._person("agent"))
        if made:
            self.agents.append(made["id"])
        return True

    def _register(self) -> bool:
        if self.rng.random() < 0.1:
            return self._register_agent()
        made = self._call("register", "POST", "/v1/users", self._person("customer"))
        if made:
            self.customers.append(made["id"])
        return True

    def _open(self) -> bool:
        if not self.customers:
            return False
        requester = self.rng.choice(self.customers)
        body = {"requester_id": requester, "subject": "Soak subject", "body": "Soak body"}
        made = self._call("open", "POST", "/v1/tickets", body)
        if made:
            self.tickets[made["id"]] = Ticket(requester)
            self._forget_old_tickets()
        return True

    def _live(self, *, closed: bool = False) -> str | None:
        pool = [t for t, s in self.tickets.items() if (s.status == "closed") == closed]
        return self.rng.choice(pool) if pool else None

    def _update(self, ticket_id: str, answer: dict[str, Any] | None) -> None:
        if answer is not None:
            state = self.tickets[ticket_id]
            state.status, state.assignee = answer["status"], answer.get("assignee_id")

    def _comment(self) -> bool:
        tid = self._live()
        if tid is None:
            return False
        by_agent = bool(self.agents) and self.rng.random() < 0.5
        author = self.rng.choice(self.agents) if by_agent else self.tickets[tid].requester
        public = not by_agent or self.rng.random() < 0.8
        body = {"author_id": author, "body": "Soak comment", "public": public}
        answer = self._call("comment", "POST", f"/v1/tickets/{tid}/comments", body)
        self._update(tid, answer and answer["ticket"])
        return True

    def _assign(self) -> bool:
        tid = self._live()
        if tid is None or not self.agents:
            return False
        body = {"assignee_id": self.rng.choice(self.agents)}
        self._update(tid, self._call("assign", "POST", f"/v1/tickets/{tid}/assign", body))
        return True

    def _status(self) -> bool:
        tid = self._live()
        if tid is None:
            return False
        state = self.tickets[tid]
        choices = [
            s for s in NEXT_STATUS[state.status] if s != "solved" or state.assignee is not None
        ]
        body = {"status": self.rng.choice(choices)}
        self._update(tid, self._call("status", "POST", f"/v1/tickets/{tid}/status", body))
        return True

    def _read_ticket(self) -> bool:
        if not self.tickets:
            return False
        tid = self.rng.choice(list(self.tickets))
        self._call("read_ticket", "GET", f"/v1/tickets/{tid}")
        return True

    def _read_user(self) -> bool:
        people = self.customers + self.agents
        if not people:
            return False
        self._call("read_user", "GET", f"/v1/users/{self.rng.choice(people)}")
        return True

    def _list(self) -> bool:
        params: dict[str, Any] = {"limit": 50}
        if self.customers and self.rng.random() < 0.5:
            params["requester_id"] = self.rng.choice(self.customers)
        self._call("list", "GET", "/v1/tickets", params=params)
        return True

    def _export(self) -> bool:
        if not self.customers:
            return False
        who = self.rng.choice(self.customers)
        self._call("export", "GET", f"/v1/subjects/{who}/export", role="compliance")
        return True

    def _erase(self) -> bool:
        if len(self.customers) < 3 or not self.erase_gate.acquire(blocking=False):
            return False
        try:
            who = self.rng.choice(self.customers)
            if self._call("erase", "POST", f"/v1/subjects/{who}/erase", role="compliance"):
                self.customers.remove(who)
                for tid in [t for t, s in self.tickets.items() if s.requester == who]:
                    # A closed ticket refuses a comment as closed before the erased key is
                    # reached (ticket_closed): only the others can show subject_erased.
                    if self.tickets.pop(tid).status != "closed":
                        self.erased_tickets.append(tid)
        finally:
            self.erase_gate.release()
        return True

    def _closed_comment(self) -> bool:
        tid = self._live(closed=True)
        if tid is None or not self.agents:
            return False
        body = {"author_id": self.rng.choice(self.agents), "body": "Too late"}
        expect = (409, "ticket_closed")
        self._call("closed_comment", "POST", f"/v1/tickets/{tid}/comments", body, expect=expect)
        return True

    def _erased_comment(self) -> bool:
        if not self.erased_tickets or not self.agents:
            return False
        tid = self.rng.choice(self.erased_tickets)
        body = {"author_id": self.rng.choice(self.agents), "body": "Anyone there?"}
        expect = (409, "subject_erased")
        self._call("erased_comment", "POST", f"/v1/tickets/{tid}/comments", body, expect=expect)
        return True

    def _missing(self) -> bool:
        expect = (404, "not_found")
        self._call("missing", "GET", f"/v1/tickets/{uuid.uuid4()}", expect=expect)
        return True

    def _forget_old_tickets(self) -> None:
        if len(self.tickets) > MAX_TICKETS:
            closed = [t for t, s in self.tickets.items() if s.status == "closed"]
            for tid in closed[: len(self.tickets) - MAX_TICKETS]:
                del self.tickets[tid]


def _error_code(response: httpx.Response) -> str | None:
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return code if isinstance(code, str) else None
