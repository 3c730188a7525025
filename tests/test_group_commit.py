"""Concurrent commands share event-store transactions (group commit), and none is lost."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID

import httpx

from api.tokens import Role
from domain.ticket import Ticket
from domain.user import UserKind
from tests.conftest import Api
from ticketlog.runtime import Runtime

THREADS = 24


def _all_at_once(work: list[Callable[[], Any]]) -> list[Any]:
    start = threading.Barrier(len(work))

    def run(job: Callable[[], Any]) -> Any:
        start.wait()
        return job()

    with ThreadPoolExecutor(len(work)) as pool:
        return list(pool.map(run, work))


def test_concurrent_commands_all_land_in_shared_transactions(runtime: Runtime) -> None:
    desk = runtime.desk
    customer = desk.register_user(UserKind.CUSTOMER, "Grace Hopper", "grace@example.com")
    shared = desk.open_ticket(customer, "Shared", "Everyone comments here")
    before = desk.committer.stats()

    def open_and_comment(i: int) -> UUID:
        ticket_id = desk.open_ticket(customer, f"Ticket {i}", "Body")
        desk.add_comment(ticket_id, customer, f"own {i}", True)
        desk.add_comment(shared, customer, f"shared {i}", True)  # racing for one ticket
        return ticket_id

    opened = _all_at_once([lambda i=i: open_and_comment(i) for i in range(THREADS)])

    for ticket_id in opened:
        assert len(desk.get(Ticket, ticket_id).comments) == 1
    shared_ticket = desk.get(Ticket, shared)
    assert len(shared_ticket.comments) == THREADS  # conflicts re-ran; nothing lost
    after = desk.committer.stats()
    commands = after.commands - before.commands
    assert commands >= 3 * THREADS
    # Several commands per transaction: fewer commits than commands.
    assert after.transactions - before.transactions < commands
    assert after.largest > 1


def test_a_failing_command_in_a_batch_fails_alone(runtime: Runtime) -> None:
    desk = runtime.desk
    customer = desk.register_user(UserKind.CUSTOMER, "Ada Lovelace", "ada@example.com")
    stale = desk.get(Ticket, desk.open_ticket(customer, "Stale", "Body"))
    desk.add_comment(stale.id, customer, "moves the ticket on", True)
    stale.change_tags(["late"], stale.updated_at)  # based on an old version: must conflict

    def save_stale() -> str:
        try:
            desk.save(stale)
        except Exception as e:  # the outcome is what is asserted
            return type(e).__name__
        return "saved"

    work: list[Callable[[], Any]] = [save_stale]
    work += [lambda i=i: desk.open_ticket(customer, f"Fine {i}", "Body") for i in range(8)]
    outcomes = _all_at_once(work)

    assert outcomes[0] == "IntegrityError"
    for i, ticket_id in enumerate(outcomes[1:]):  # each of the others landed, as sent
        opened = desk.ticket_history(ticket_id)[0]
        assert isinstance(opened, Ticket.Opened)
        assert opened.subject == f"Fine {i}"


def test_concurrent_http_commands_all_land(api: Api) -> None:
    customer = str(api.user()["id"])
    agent = str(api.user(kind="agent")["id"])
    tickets = [str(api.ticket(customer)["id"]) for _ in range(4)]
    headers = api.headers(Role.SERVICE)
    base_url = str(api.client.base_url)

    def client(i: int) -> list[int]:
        with httpx.Client(base_url=base_url, headers=headers, timeout=60) as http:
            opened = http.post(
                "/v1/tickets", json={"requester_id": customer, "subject": f"S{i}", "body": "B"}
            )
            comment = http.post(
                f"/v1/tickets/{tickets[i % 4]}/comments",
                json={"author_id": agent, "body": f"reply {i}", "public": True},
            )
            assert opened.json()["requester_id"] == customer  # read-your-writes
            assert comment.json()["comment"]["body"] == f"reply {i}"  # read back from the view
            return [opened.status_code, comment.status_code]

    statuses = _all_at_once([lambda i=i: client(i) for i in range(THREADS)])

    assert all(s == [201, 201] for s in statuses), statuses
    replies = {c["body"] for t in tickets for c in api.get(f"/v1/tickets/{t}").json()["comments"]}
    assert replies == {f"reply {i}" for i in range(THREADS)}
    listed = api.get("/v1/tickets", requester_id=customer, limit=200).json()["items"]
    assert len(listed) == 4 + THREADS
