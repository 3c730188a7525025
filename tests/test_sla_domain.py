"""Ticket priority/tags/SLA commands, the policy aggregates, and concurrent policy creation."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from domain import RuleViolation, Status, Ticket
from domain.sla.policy import AppliedPolicy, PolicyFilter, SlaCatalog, SlaPolicy
from domain.ticket import Author, Priority
from ticketlog.runtime import Runtime

AT = datetime(2026, 11, 17, 8, 0, tzinfo=UTC)


def closed_ticket() -> Ticket:
    ticket = Ticket.open(uuid4(), "s", "b", AT)
    ticket.assign(Author(uuid4(), is_agent=True), AT)
    ticket.change_status(Status.SOLVED, AT)
    ticket.change_status(Status.CLOSED, AT)
    return ticket


def test_priority_and_tags_change_only_when_they_differ_and_never_once_closed() -> None:
    ticket = Ticket.open(uuid4(), "s", "b", AT, tags=["a"])
    ticket.change_priority(Priority.NORMAL, AT)
    ticket.change_tags([" A "], AT)
    assert ticket.version == 1  # nothing changed, nothing recorded
    ticket.change_priority(Priority.HIGH, AT)
    ticket.change_tags(["b", "B", "c"], AT)
    assert (ticket.priority, ticket.tags, ticket.version) == (Priority.HIGH, ["b", "c"], 3)
    closed = closed_ticket()
    for change in (
        lambda: closed.change_priority(Priority.LOW, AT),
        lambda: closed.change_tags(["x"], AT),
    ):
        with pytest.raises(RuleViolation) as refused:
            change()
        assert refused.value.code == "ticket_closed"


def test_policy_application_and_breaches_are_recorded_once() -> None:
    ticket = Ticket.open(uuid4(), "s", "b", AT)
    applied = AppliedPolicy(uuid4(), 2, None, None)
    ticket.apply_sla_policy(None, AT)
    ticket.apply_sla_policy(applied, AT)
    ticket.apply_sla_policy(applied, AT)
    assert (ticket.sla_policy, ticket.version) == (applied, 2)
    closed = closed_ticket()
    assert closed.record_breach("resolution", 1, AT, applied.policy_id, 2, AT) is True
    assert closed.record_breach("resolution", 1, AT, applied.policy_id, 2, AT) is False


@pytest.mark.parametrize(
    ("filter_", "priority", "tags", "matches"),
    [
        (PolicyFilter(), "low", [], True),
        (PolicyFilter("all", ("urgent",), ("vip",)), "urgent", ["vip"], True),
        (PolicyFilter("all", ("urgent",), ("vip",)), "urgent", [], False),
        (PolicyFilter("any", ("urgent",), ("vip",)), "low", ["vip"], True),
        (PolicyFilter("any", ("urgent",), ("vip",)), "low", ["other"], False),
        (PolicyFilter("all", (), ("a", "b")), "low", ["b", "a"], True),
    ],
)
def test_policy_filters(
    filter_: PolicyFilter, priority: str, tags: list[str], matches: bool
) -> None:
    assert filter_.matches(priority, tags) is matches


def test_policies_refuse_unusable_terms_and_catalogs_refuse_partial_orders() -> None:
    with pytest.raises(RuleViolation):
        SlaPolicy.define(
            "x", {}, {"normal": {"first_reply": {"minutes": 5, "business": True}}}, None, AT
        )
    catalog = SlaCatalog(occurred_at=AT)
    first, second = uuid4(), uuid4()
    catalog.list_policy(first, AT)
    catalog.list_policy(second, AT)
    with pytest.raises(RuleViolation):
        catalog.reorder([second], AT)
    with pytest.raises(RuleViolation):
        catalog.reorder([second, second], AT)
    catalog.reorder([second, first], AT)
    assert catalog.policy_ids == [second, first]


def test_policies_created_at_once_are_all_kept(runtime: Runtime) -> None:
    """Both creators race for the catalog; the loser retries with a fresh policy."""
    barrier = threading.Barrier(4)
    created: list[object] = []

    def create(n: int) -> None:
        barrier.wait()
        created.append(
            runtime.desk.define_policy(
                f"P{n}", {}, {"normal": {"first_reply": {"minutes": 9}}}, None
            )
        )

    threads = [threading.Thread(target=create, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(p.id for p in runtime.desk.policies()) == sorted(created)  # type: ignore[type-var]
    assert len(created) == 4
