"""Notifications by email, against a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from api.tokens import Role
from tests.conftest import Api, open_api, postgres_hits, raw_hits
from tests.test_cli import run_cli
from ticketlog.config import Settings
from ticketlog.loopback import free_port
from ticketlog.notify.email import SmtpSender, SmtpSettings
from ticketlog.notify.worker import LEASE, EmailWorker
from ticketlog.runtime import Runtime


class Inbox:
    """An SMTP server's handler: keeps what it accepts; can answer 451 to the next N messages."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.refuse_next = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            if self.refuse_next:
                self.refuse_next -= 1
                return "451 4.3.0 try again later"
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            self.messages.append(message)
        return "250 OK"

    def subjects(self) -> list[tuple[str, str]]:
        return [(str(m["To"]), str(m["Subject"])) for m in self.messages]


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, str]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, f"smtp://127.0.0.1:{port}?from=desk@example.com"
    controller.stop()


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def mail_runtime(settings: Settings, smtp: tuple[Inbox, str]) -> Iterator[Runtime]:
    rt = Runtime.open(dataclasses.replace(settings, smtp_url=smtp[1]))
    yield rt
    rt.close()


@pytest.fixture
def mail_api(mail_runtime: Runtime) -> Iterator[Api]:
    yield from open_api(mail_runtime)()


def worker(runtime: Runtime, clock: Clock | None = None) -> EmailWorker:
    assert runtime.settings.smtp_url is not None
    sender = SmtpSender(SmtpSettings.parse(runtime.settings.smtp_url), timeout=10)
    return EmailWorker(runtime, sender, clock=clock or Clock())


def scene(api: Api) -> dict[str, Any]:
    """A ticket's life: assigned, an agent reply, an internal note, a requester reply, solved."""
    requester = api.user(name="Rosa Requester", email="rosa@example.com")
    agent = api.user(kind="agent", name="Alan Agent", email="alan@example.com")
    tid = api.ticket(requester["id"], subject="Printer on fire", body="It is on fire")["id"]
    steps = [
        (f"/v1/tickets/{tid}/assign", {"assignee_id": agent["id"]}),
        (
            f"/v1/tickets/{tid}/comments",
            {"author_id": agent["id"], "body": "Use the extinguisher", "public": True},
        ),
        (
            f"/v1/tickets/{tid}/comments",
            {"author_id": agent["id"], "body": "internal: call facilities", "public": False},
        ),
        (
            f"/v1/tickets/{tid}/comments",
            {"author_id": requester["id"], "body": "It worked, thanks", "public": True},
        ),
        (f"/v1/tickets/{tid}/status", {"status": "solved"}),
    ]
    for path, body in steps:
        r = api.post(path, body)
        assert r.status_code in (200, 201), r.text
    return {"requester": requester, "agent": agent, "ticket_id": tid}


EXPECTED = [
    ("Alan Agent <alan@example.com>", "Ticket assigned to you: Printer on fire"),
    ("Rosa Requester <rosa@example.com>", "New reply to your request: Printer on fire"),
    ("Alan Agent <alan@example.com>", "The requester replied: Printer on fire"),
    ("Rosa Requester <rosa@example.com>", "Your request was solved: Printer on fire"),
]


def test_requester_and_assignee_are_emailed_once_even_across_restarts_and_rebuilds(
    mail_api: Api, smtp: tuple[Inbox, str], settings: Settings
) -> None:
    inbox, url = smtp
    s = scene(mail_api)
    outcome = worker(mail_api.runtime).run_once()
    assert outcome.sent == 4
    assert inbox.subjects() == EXPECTED
    reply = inbox.messages[1]
    assert "Use the extinguisher" in reply.get_content()
    assert "internal" not in "".join(m.get_content() for m in inbox.messages)
    ids = {m["Message-ID"] for m in inbox.messages}
    assert len(ids) == 4
    assert str(reply["X-Ticketlog-Ticket"]) == s["ticket_id"]

    assert worker(mail_api.runtime).run_once().sent == 0
    # A rebuilt notifications view derives the same message ids: nothing goes out again.
    mail_api.runtime.notifications.runner.rebuild()
    assert worker(mail_api.runtime).run_once().sent == 0
    # Nor after a restart of the process.
    again = Runtime.open(dataclasses.replace(settings, smtp_url=url))
    try:
        assert worker(again).run_once().sent == 0
    finally:
        again.close()
    assert len(inbox.messages) == 4
    states = [d["state"] for d in mail_api.runtime.notifications.deliveries()]
    assert states == ["sent"] * 4


def test_preferences_turn_a_kind_off(mail_api: Api, smtp: tuple[Inbox, str]) -> None:
    inbox, _ = smtp
    requester = mail_api.user(name="Quiet Quentin", email="q@example.com")
    path = f"/v1/users/{requester['id']}/notification-preferences"
    r = mail_api.get(path)
    assert r.status_code == 200
    assert r.json()["preferences"]["agent_reply"] == {"email": True}
    r = mail_api.client.put(
        path, json={"agent_reply": {"email": False}}, headers=mail_api.headers(Role.SERVICE)
    )
    assert r.status_code == 200, r.text
    assert r.json()["preferences"]["agent_reply"] == {"email": False}
    assert r.json()["preferences"]["ticket_solved"] == {"email": True}

    agent = mail_api.user(kind="agent")
    tid = mail_api.ticket(requester["id"])["id"]
    mail_api.post(f"/v1/tickets/{tid}/assign", {"assignee_id": agent["id"]})
    mail_api.post(
        f"/v1/tickets/{tid}/comments", {"author_id": agent["id"], "body": "hi", "public": True}
    )
    mail_api.post(f"/v1/tickets/{tid}/status", {"status": "solved"})
    worker(mail_api.runtime).run_once()
    to_quentin = [s for to, s in inbox.subjects() if "q@example.com" in to]
    assert to_quentin == ["Your request was solved: Subject"]
    skipped = mail_api.runtime.notifications.deliveries(requester["id"])
    assert [(d["kind"], d["state"]) for d in skipped] == [
        ("agent_reply", "skipped"),
        ("ticket_solved", "sent"),
    ]


def test_bad_preferences_are_json_4xx(mail_api: Api) -> None:
    user = mail_api.user()
    path = f"/v1/users/{user['id']}/notification-preferences"
    headers = mail_api.headers(Role.SERVICE)
    for body in ({"nope": {"email": False}}, {"agent_reply": {"sms": True}}, {"agent_reply": 1}):
        r = mail_api.client.put(path, json=body, headers=headers)
        assert r.status_code == 422, body
        assert r.json()["error"]["code"] == "invalid_input"
    r = mail_api.client.put(
        f"/v1/users/{uuid.uuid4()}/notification-preferences", json={}, headers=headers
    )
    assert r.status_code == 404
    mail_api.post(f"/v1/subjects/{user['id']}/erase", role=Role.COMPLIANCE)
    r = mail_api.client.put(path, json={}, headers=headers)
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "subject_erased"


def test_erased_people_get_nothing(mail_api: Api, smtp: tuple[Inbox, str]) -> None:
    inbox, _ = smtp
    s = scene(mail_api)
    r = mail_api.post(f"/v1/subjects/{s['requester']['id']}/erase", role=Role.COMPLIANCE)
    assert r.status_code == 200
    outcome = worker(mail_api.runtime).run_once()
    # The requester is erased; the agent's messages need the erased ticket's text: none go out.
    assert outcome.sent == 0
    assert outcome.skipped == 4
    assert inbox.messages == []


def test_a_refused_message_is_retried_later_with_the_same_id(
    mail_api: Api, smtp: tuple[Inbox, str]
) -> None:
    inbox, _ = smtp
    requester = mail_api.user()
    agent = mail_api.user(kind="agent")
    tid = mail_api.ticket(requester["id"])["id"]
    mail_api.post(f"/v1/tickets/{tid}/assign", {"assignee_id": agent["id"]})
    clock = Clock()
    w = worker(mail_api.runtime, clock)
    inbox.refuse_next = 1
    assert w.run_once().retrying == 1
    assert w.run_once().sent == 0  # not due yet: backoff
    clock.now += timedelta(seconds=31)
    assert w.run_once().sent == 1
    [delivery] = mail_api.runtime.notifications.deliveries()
    assert delivery["attempts"] == 2
    assert delivery["state"] == "sent"
    assert inbox.messages[0]["Message-ID"] == f"<{delivery['id']}@ticketlog>"


def test_a_message_in_doubt_after_a_crash_is_resent_once_its_lease_ends(
    mail_api: Api, smtp: tuple[Inbox, str]
) -> None:
    inbox, _ = smtp
    requester = mail_api.user()
    agent = mail_api.user(kind="agent")
    tid = mail_api.ticket(requester["id"])["id"]
    mail_api.post(f"/v1/tickets/{tid}/assign", {"assignee_id": agent["id"]})
    outbox = mail_api.runtime.notifications
    mail_api.runtime.notifications.runner.catch_up()
    clock = Clock()
    # A worker claimed the message and died before recording the outcome.
    [due] = outbox.due(clock.now)
    assert outbox.claim(due, clock.now + LEASE, clock.now)
    assert worker(mail_api.runtime, clock).run_once().sent == 0
    clock.now += LEASE + timedelta(seconds=1)
    assert worker(mail_api.runtime, clock).run_once().sent == 1
    assert len(inbox.messages) == 1


def test_no_personal_data_in_delivery_state(
    mail_api: Api, smtp: tuple[Inbox, str], settings: Settings
) -> None:
    scene(mail_api)
    assert worker(mail_api.runtime).run_once().sent == 4
    needles = ["Rosa Requester", "rosa@example.com", "Printer on fire", "Use the extinguisher"]
    assert raw_hits(settings.data_dir, needles) == []
    assert postgres_hits(settings, needles) == []


def test_notify_run_once_command_sends_due_email(tmp_path: Path, smtp: tuple[Inbox, str]) -> None:
    inbox, url = smtp
    data_dir = tmp_path / "data"
    runtime = Runtime.open(Settings(data_dir=data_dir))
    try:
        desk = runtime.desk
        requester = desk.register_user("customer", "Cli Carla", "carla@example.com")
        agent = desk.register_user("agent", "Cli Colin", "colin@example.com")
        tid = desk.open_ticket(requester, "Cli subject", "body")
        desk.assign(tid, agent)
    finally:
        runtime.close()
    result = run_cli(data_dir, "notify", "run", "--once", "--json", env={"TICKETLOG_SMTP_URL": url})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["email"] == {
        "sent": 1,
        "skipped": 0,
        "retrying": 0,
        "failed": 0,
    }
    assert inbox.subjects() == [
        ("Cli Colin <colin@example.com>", "Ticket assigned to you: Cli subject")
    ]
    missing = run_cli(data_dir, "notify", "run", "--once")
    assert missing.returncode == 0
    assert "email: off" in missing.stdout
    assert "TICKETLOG_SMTP_URL" in missing.stderr


def test_serve_delivers_email_in_the_background(tmp_path: Path, smtp: tuple[Inbox, str]) -> None:
    import time

    import httpx

    from tests.test_cli import new_token, serving

    inbox, url = smtp
    data = tmp_path / "data"
    auth = {"Authorization": f"Bearer {new_token(data, 'service')}"}
    with serving(data, env={"TICKETLOG_SMTP_URL": url}) as (base, _):
        people = [
            httpx.post(f"{base}/v1/users", headers=auth, json=body).json()["id"]
            for body in (
                {"kind": "customer", "name": "Bg Bella", "email": "bella@example.com"},
                {"kind": "agent", "name": "Bg Bert", "email": "bert@example.com"},
            )
        ]
        tid = httpx.post(
            f"{base}/v1/tickets",
            headers=auth,
            json={"requester_id": people[0], "subject": "Background", "body": "b"},
        ).json()["id"]
        r = httpx.post(
            f"{base}/v1/tickets/{tid}/assign", headers=auth, json={"assignee_id": people[1]}
        )
        assert r.status_code == 200
        deadline = time.monotonic() + 30
        while not inbox.messages:
            assert time.monotonic() < deadline, "serve sent no email"
            time.sleep(0.05)
    assert inbox.subjects() == [
        ("Bg Bert <bert@example.com>", "Ticket assigned to you: Background")
    ]


def test_the_api_refuses_line_breaks_in_names_and_subjects(mail_api: Api) -> None:
    r = mail_api.post(
        "/v1/users", {"kind": "agent", "name": "Mallory\nBcc: x", "email": "m@example.com"}
    )
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_input"
    requester = mail_api.user()
    r = mail_api.post(
        "/v1/tickets",
        {"requester_id": requester["id"], "subject": "Hi\r\nBcc: x", "body": "b"},
    )
    assert r.status_code == 422


def test_line_breaks_in_recorded_text_never_become_headers(
    mail_api: Api, smtp: tuple[Inbox, str]
) -> None:
    # The log is never rewritten: names and subjects recorded before the API refused line
    # breaks still reach the mailer, so it must neutralise them itself.
    inbox, _ = smtp
    desk = mail_api.runtime.desk
    requester = desk.register_user("customer", "Doe, Jane", "jane@example.com")
    agent = desk.register_user("agent", "Mallory\nBcc: evil@example.com", "mal@example.com")
    tid = desk.open_ticket(requester, "Hello\r\nBcc: evil@example.com", "body")
    desk.assign(tid, agent)
    desk.add_comment(tid, agent, "ok", public=True)
    assert worker(mail_api.runtime).run_once().sent == 2
    for message in inbox.messages:
        assert message["Bcc"] is None
        assert "\n" not in str(message["Subject"])
    assert inbox.messages[1]["To"].addresses[0].display_name == "Doe, Jane"
    assert inbox.messages[1]["To"].addresses[0].addr_spec == "jane@example.com"
