"""Email through SMTP: the server named by TICKETLOG_SMTP_URL, and the messages we write.

`smtp://[user:password@]host[:port][?from=address]` (plain, or STARTTLS with `?starttls=true`),
`smtps://…` for TLS from the first byte. Messages are composed at send time from sealed view
rows, opened just then; nothing personal is stored in the outbox.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from crypto.fields import open_sealed
from crypto.vault import KeyVault
from domain.notifications import NotificationKind
from domain.personal import Erased
from projections.queries import Queries
from ticketlog.config import ConfigError


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool
    starttls: bool
    sender: str

    @classmethod
    def parse(cls, url: str) -> SmtpSettings:
        parts = urlparse(url)
        if parts.scheme not in ("smtp", "smtps"):
            raise ConfigError("TICKETLOG_SMTP_URL must start with smtp:// or smtps://")
        if not parts.hostname:
            raise ConfigError("TICKETLOG_SMTP_URL names no host")
        query = parse_qs(parts.query)
        tls = parts.scheme == "smtps"
        try:
            port = parts.port or (465 if tls else 25)
        except ValueError:
            raise ConfigError("TICKETLOG_SMTP_URL has an invalid port") from None
        return cls(
            host=parts.hostname,
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
            starttls=query.get("starttls", ["false"])[0].lower() in ("1", "true", "yes"),
            sender=query.get("from", ["ticketlog@localhost"])[0],
        )


class PermanentFailure(Exception):
    """The server refused the message for good (5xx): retrying cannot help."""


class SmtpSender:
    def __init__(self, settings: SmtpSettings, timeout: float = 30.0) -> None:
        self.settings = settings
        self.timeout = timeout

    def send(self, message: EmailMessage) -> None:
        """Deliver one message; PermanentFailure on 5xx, other exceptions are worth a retry."""
        s = self.settings
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if s.tls:
            smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=self.timeout, context=context)
        else:
            smtp = smtplib.SMTP(s.host, s.port, timeout=self.timeout)
        try:
            if s.starttls:
                smtp.starttls(context=context)
            if s.username:
                smtp.login(s.username, s.password or "")
            smtp.send_message(message)
        except smtplib.SMTPResponseException as e:
            if 500 <= e.smtp_code < 600:
                raise PermanentFailure(f"smtp {e.smtp_code}") from None
            raise
        except smtplib.SMTPRecipientsRefused as e:
            codes = [code for code, _ in e.recipients.values()]
            if codes and all(500 <= code < 600 for code in codes):
                raise PermanentFailure(f"smtp {codes[0]}") from None
            raise
        finally:
            try:
                smtp.quit()
            except smtplib.SMTPException:
                smtp.close()


class ErasedData(Exception):
    """A value the message needs can no longer be opened."""


def _open(value: Any, vault: KeyVault) -> Any:
    opened = open_sealed(value, vault)
    if isinstance(opened, Erased):
        raise ErasedData()
    return opened


_SUBJECTS = {
    NotificationKind.AGENT_REPLY: "New reply to your request: {subject}",
    NotificationKind.TICKET_SOLVED: "Your request was solved: {subject}",
    NotificationKind.TICKET_ASSIGNED: "Ticket assigned to you: {subject}",
    NotificationKind.REQUESTER_REPLY: "The requester replied: {subject}",
}


def compose(
    *,
    message_id: str,
    kind: str,
    recipient_id: str,
    ticket_id: str,
    event_version: int,
    queries: Queries,
    vault: KeyVault,
    sender: str,
) -> EmailMessage | None:
    """The email for one notification, or None when something it needs was erased."""
    user = queries.user(recipient_id)
    ticket = queries.ticket(ticket_id, with_comments=False)
    if user is None or ticket is None:
        return None
    try:
        to = _open(user["email"], vault)
        name = _open(user["name"], vault)
        subject = _open(ticket["subject"], vault)
        text = _body(kind, ticket, event_version, queries, vault)
    except ErasedData:
        return None
    message = EmailMessage()
    message["From"] = sender
    message["To"] = formataddr((_one_line(name), str(to)))
    message["Subject"] = _SUBJECTS[NotificationKind(kind)].format(subject=_one_line(subject))
    # The same id on every attempt: a copy sent again after a crash is recognisably the same.
    message["Message-ID"] = f"<{message_id}@ticketlog>"
    message["Date"] = format_datetime(datetime.now(UTC))
    message["X-Ticketlog-Ticket"] = ticket_id
    message["X-Ticketlog-Notification"] = kind
    message.set_content(f"Hello {name},\n\n{text}\n\nTicket {ticket_id}\n")
    return message


def _one_line(value: Any) -> str:
    # Header values come from users: a line break must never start a new header.
    return " ".join(str(value).split())


def _body(
    kind: str, ticket: dict[str, Any], version: int, queries: Queries, vault: KeyVault
) -> str:
    if kind in (NotificationKind.AGENT_REPLY, NotificationKind.REQUESTER_REPLY):
        # Only the reply itself: a long conversation costs no more to notify about.
        reply = queries.comment(ticket["id"], version)
        if reply is None:
            raise ErasedData()
        return str(_open(reply["body"], vault))
    if kind == NotificationKind.TICKET_SOLVED:
        return "Your request has been solved. Reply to this ticket if anything is still wrong."
    return "A ticket was assigned to you:\n\n" + str(_open(ticket["body"], vault))
