"""Commands load recently used aggregates from a cache of sealed copies, never a stale one."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.application import project_aggregate

from domain.errors import RuleViolation
from domain.retention import RetentionKind, RetentionRule
from domain.ticket import Author, Priority, Status, Ticket
from domain.user import User, UserKind
from ticketlog.config import Settings
from ticketlog.runtime import Runtime
from ticketlog.sealed_cache import SealedCache, copy_aggregate, immutable


def test_a_replica_sees_what_another_stored_since_it_last_loaded(settings: Settings) -> None:
    first, second = Runtime.open(settings), Runtime.open(settings)
    try:
        customer = first.desk.register_user(UserKind.CUSTOMER, "Cara Cache", "cara@cache.example")
        agent = first.desk.register_user(UserKind.AGENT, "Abe Agent", "abe@cache.example")
        ticket = first.desk.open_ticket(customer, "Printer", "It jams")
        assert second.desk.add_comment(ticket, agent, "Looking", True) == 2  # now cached there

        first.desk.add_comment(ticket, customer, "Still jams", True)
        first.desk.change_status(ticket, Status.PENDING)
        assert second.desk.add_comment(ticket, agent, "Fixed?", True) == 5
        seen = second.desk.get(Ticket, ticket)
        assert [c.version for c in seen.comments] == [2, 3, 5]
        assert seen.status is Status.PENDING

        first.desk.erase_subject(agent)  # the second replica's cached agent is out of date
        with pytest.raises(RuleViolation) as refused:
            second.desk.add_comment(ticket, agent, "One more", True)
        assert refused.value.code == "subject_erased"
    finally:
        second.close()
        first.close()


def test_what_a_command_does_to_its_aggregate_reaches_the_cache_only_once_saved(
    runtime: Runtime,
) -> None:
    desk = runtime.desk
    customer = desk.register_user(UserKind.CUSTOMER, "Una Saved", "una@cache.example")
    ticket_id = desk.open_ticket(customer, "Login", "Cannot log in", tags=["web"])
    desk.add_comment(ticket_id, customer, "Tried twice", True)

    unsaved = desk.get(Ticket, ticket_id)
    unsaved.add_comment(Author(customer, is_agent=False), "never saved", True, datetime.now(UTC))
    unsaved.tags.append("changed-in-place")
    unsaved.sla_breaches.add(("first_reply", 1))

    again = desk.get(Ticket, ticket_id)
    assert again is not unsaved
    assert again.version == 2
    assert [c.version for c in again.comments] == [2]
    assert again.tags == ["web"]
    assert again.sla_breaches == set()
    assert desk.add_comment(ticket_id, customer, "Third try", True) == 3


def test_a_long_ticket_replays_only_its_new_events(runtime: Runtime) -> None:
    desk = runtime.desk
    customer = desk.register_user(UserKind.CUSTOMER, "Lena Long", "lena@cache.example")
    ticket_id = desk.open_ticket(customer, "Long thread", "Many replies")
    for n in range(60):
        desk.add_comment(ticket_id, customer, f"Reply {n}", True)

    cache = SealedCache(desk.sealed.event_store, project_aggregate)
    assert cache.get(ticket_id).version == 61
    assert cache.events_applied == 61  # the first load replays everything
    assert cache.get(ticket_id).version == 61
    assert cache.events_applied == 61  # the second, nothing
    desk.add_comment(ticket_id, customer, "One more", True)
    assert len(cache.get(ticket_id).comments) == 61
    assert cache.events_applied == 62  # then only what is new


def test_the_cache_keeps_the_most_recently_used_within_its_bytes(runtime: Runtime) -> None:
    desk = runtime.desk
    customer = desk.register_user(UserKind.CUSTOMER, "Mo Many", "mo@cache.example")
    tickets = [desk.open_ticket(customer, f"Ticket {n}", "Body") for n in range(3)]
    probe = SealedCache(desk.sealed.event_store, project_aggregate)
    probe.get(tickets[0])
    one = probe.bytes_held  # the three tickets are alike: each weighs this much

    cache = SealedCache(desk.sealed.event_store, project_aggregate, max_bytes=2 * one + one // 2)
    cache.get(tickets[0])
    cache.get(tickets[1])
    cache.get(tickets[0])  # used again: now the second is the least recently used
    cache.get(tickets[2])  # over the bound: the second goes
    assert cache.bytes_held == 2 * one
    applied = cache.events_applied
    cache.get(tickets[0])
    cache.get(tickets[2])
    assert cache.events_applied == applied  # both still cached
    cache.get(tickets[1])
    assert cache.events_applied == applied + 1  # the second was dropped: replayed again


def test_an_aggregate_heavier_than_the_whole_cache_is_not_kept(runtime: Runtime) -> None:
    desk = runtime.desk
    customer = desk.register_user(UserKind.CUSTOMER, "Lou Long", "lou@cache.example")
    ticket = desk.open_ticket(customer, "Long", "Body")
    long_reply = "x" * 60_000  # a long comment is a long envelope, whatever its event count
    desk.add_comment(ticket, customer, long_reply, True)
    cache = SealedCache(desk.sealed.event_store, project_aggregate, max_bytes=50_000)
    assert cache.get(ticket).version == 2
    assert len(cache) == 0
    assert cache.bytes_held == 0


def test_cached_aggregates_hold_no_plaintext(runtime: Runtime) -> None:
    desk = runtime.desk
    customer = desk.register_user(
        UserKind.CUSTOMER, "Petra Plain", "petra@plain.example", "+44 20 7946 0000", "Plain Ltd"
    )
    ticket = desk.open_ticket(customer, "Secret subject", "Secret body text")
    desk.add_comment(ticket, customer, "Secret reply", True)
    desk.get(User, customer)
    desk.get(Ticket, ticket)
    plaintexts = {
        "Petra Plain",
        "petra@plain.example",
        "+44 20 7946 0000",
        "Plain Ltd",
        "Secret subject",
        "Secret body text",
        "Secret reply",
    }
    held = [text for aggregate in _cached(runtime) for text in _strings(vars(aggregate))]
    assert held  # the walk sees the cached state
    assert plaintexts.isdisjoint(held)


def test_every_kind_of_aggregate_copies_without_sharing_what_it_changes(
    runtime: Runtime,
) -> None:
    """The cache shares the values inside an aggregate's lists, dicts and sets, so each such
    value must be immutable: a frozen dataclass holding no list, dict or set."""
    _busy_desk(runtime)
    kinds = set()
    for aggregate in _cached(runtime):
        kinds.add(type(aggregate).__name__)
        duplicate = copy_aggregate(aggregate)
        assert vars(duplicate) == vars(aggregate)
        for name, value in vars(aggregate).items():
            if isinstance(value, (list, dict, set)):
                assert vars(duplicate)[name] is not value, name
            _assert_values_immutable(value, f"{type(aggregate).__name__}.{name}")
    assert kinds >= {
        "Ticket",
        "User",
        "Organization",
        "SlaSchedule",
        "SlaPolicy",
        "SlaCatalog",
        "RetentionSchedule",
    }


def _busy_desk(runtime: Runtime) -> None:
    desk = runtime.desk
    org = desk.register_organization("Cache Co")
    schedule = desk.define_schedule(
        "Office", {"timezone": "UTC", "hours": {"mon": [["09:00", "17:00"]]}}
    )
    desk.define_policy(
        "Org policy",
        {"organizations": [str(org)]},
        {"normal": {"first_reply": {"minutes": 30}}},
        schedule,
    )
    customer = desk.register_user(
        UserKind.CUSTOMER, "Rich State", "rich@cache.example", organization_id=org
    )
    agent = desk.register_user(UserKind.AGENT, "Ada Agent", "ada@cache.example")
    desk.record_consent(customer, "marketing", "2026-01", granted=True)
    desk.set_notification_preferences(customer, {"agent_reply": {"email": False}})
    desk.set_retention_rules([RetentionRule(RetentionKind.SHRED_CLOSED_TICKET_CONTENT, 30)])
    ticket = desk.open_ticket(customer, "Everything", "Body", tags=["a", "b"])
    desk.add_comment(ticket, agent, "Reply", True)
    desk.assign(ticket, agent)
    desk.change_priority(ticket, Priority.HIGH)
    desk.change_tags(ticket, ["c"])
    policy = desk.get(Ticket, ticket).sla_policy
    assert policy is not None
    due = datetime.now(UTC) - timedelta(minutes=1)
    desk.record_breach(ticket, "first_reply", 1, due, policy.policy_id, policy.policy_version)
    for aggregate_id in _all_ids(runtime):
        desk.loaded.get(aggregate_id)


def _all_ids(runtime: Runtime) -> set[UUID]:
    recorder = runtime.desk.recorder
    return {n.originator_id for n in recorder.select_notifications(start=None, limit=10_000)}


def _cached(runtime: Runtime) -> list[Any]:
    return runtime.desk.loaded.held()


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(k) + _strings(v)]
    if isinstance(value, (list, tuple, set, frozenset)):
        return [s for item in value for s in _strings(item)]
    if dataclasses.is_dataclass(value):
        return _strings(vars(value))
    return []


def _assert_values_immutable(value: object, where: str) -> None:
    """Whatever the cache shares instead of copying (an attribute, or an item of a list, dict
    or set) must be immutable all the way down."""
    items: Any = [value]
    if isinstance(value, dict):
        items = [*value.keys(), *value.values()]
    elif isinstance(value, (list, set)):
        items = value
    for item in items:
        if immutable(item):  # what the cache shares instead of copying
            _assert_deeply_immutable(item, where)


def _assert_deeply_immutable(value: object, where: str) -> None:
    if isinstance(value, (tuple, frozenset)):
        for item in value:
            _assert_deeply_immutable(item, where)
    elif dataclasses.is_dataclass(value):
        assert type(value).__dataclass_params__.frozen, f"{where}: {type(value).__name__}"
        for field in dataclasses.fields(value):
            _assert_deeply_immutable(getattr(value, field.name), f"{where}.{field.name}")
    else:
        assert isinstance(value, (str, bytes, int, float, type(None), UUID, datetime, Enum)), (
            f"{where} shares a {type(value).__name__}"
        )
