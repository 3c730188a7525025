"""Domain rules for attachments and notification preferences."""

from __future__ import annotations

import uuid

import pytest

from domain.notifications import effective_preferences
from domain.personal import personal_fields_of
from domain.ticket import Status, Ticket
from domain.user import User
from tests.test_domain import AGENT, at, drain, refused, register, subjects_of, ticket_in


def attach(ticket: Ticket) -> None:
    ticket.add_attachment(uuid.uuid4(), AGENT, "scan.png", 1234, "image/png", "ab" * 32, at(7))


def test_an_attachment_records_its_metadata_and_seals_only_its_name() -> None:
    ticket = ticket_in(Status.OPEN)
    attach(ticket)
    [added] = drain(ticket)
    assert isinstance(added, Ticket.AttachmentAdded)
    assert (added.size, added.content_type, added.uploader_id) == (1234, "image/png", AGENT.id)
    assert subjects_of(added) == {"name": [(f"ticket:{ticket.id}", None)]}


def test_a_closed_ticket_takes_no_attachments() -> None:
    ticket = ticket_in(Status.CLOSED)
    with refused("ticket_closed", ticket):
        attach(ticket)


def test_preferences_are_stored_whole_with_unnamed_kinds_on() -> None:
    user = register()
    user.set_notification_preferences({"agent_reply": {"email": False}}, at(3))
    [_, event] = drain(user)
    assert isinstance(event, User.NotificationPreferencesSet)
    assert event.preferences == {
        "agent_reply": {"email": False},
        "ticket_solved": {"email": True},
        "ticket_assigned": {"email": True},
        "requester_reply": {"email": True},
    }
    assert personal_fields_of(User.NotificationPreferencesSet) == {}
    assert effective_preferences(None)["agent_reply"] == {"email": True}


@pytest.mark.parametrize(
    "preferences",
    [{"nope": {"email": True}}, {"agent_reply": {"sms": True}}, {"agent_reply": {"email": 1}}],
)
def test_unknown_kinds_channels_and_non_booleans_are_refused(
    preferences: dict[str, dict[str, bool]],
) -> None:
    user = register()
    with pytest.raises(ValueError):  # noqa: PT011 (each case has its own message)
        user.set_notification_preferences(preferences, at(3))


def test_an_erased_person_cannot_change_preferences() -> None:
    user = register()
    user.erase(1, at(2))
    drain(user)
    with refused("subject_erased", user):
        user.set_notification_preferences({}, at(3))
