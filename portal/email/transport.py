"""Where mail goes: an SMTP server (`SMTP_URL`) or, with none configured, `.eml` files in
an outbox folder (development only: production refuses to start without SMTP). Both speak
the same small contract: `Transport.deliver`, and `Transport.forget` for what a transport
keeps on disk about an address once its account is deleted.

Delivery errors are logged by kind only: never an address, subject or body.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
import uuid
from collections.abc import Iterable
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Protocol

from portal.config.smtp import parse_smtp_url
from portal.email.messages import Mail

__all__ = ["OutboxTransport", "SmtpTransport", "Transport", "build_message", "parse_smtp_url"]

log = logging.getLogger(__name__)


class Transport(Protocol):
    async def deliver(self, message: EmailMessage) -> None: ...

    async def forget(self, addresses: Iterable[str]) -> int:
        """Remove every kept message to or about these addresses; returns how many."""
        ...


def build_message(mail: Mail, *, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="workforce-gateway")
    message["X-WFG-Kind"] = mail.kind
    message.set_content(mail.text)
    return message


class OutboxTransport:
    """Writes each message to `<directory>/<uuid>.eml` (development and tests)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def deliver(self, message: EmailMessage) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{uuid.uuid4().hex}.eml"
        await asyncio.to_thread(path.write_bytes, bytes(message))
        log.info("email (%s) written to %s", message["X-WFG-Kind"], path)

    async def forget(self, addresses: Iterable[str]) -> int:
        """Delete each `.eml` sent to, or mentioning, one of `addresses` (any case)."""
        needles = {address.strip().lower() for address in addresses if address.strip()}
        if not needles:
            return 0
        removed = await asyncio.to_thread(self._forget, needles)
        if removed:
            log.info("outbox: removed %d message(s) of a deleted account", removed)
        return removed

    def _forget(self, needles: set[str]) -> int:
        if not self.directory.is_dir():
            return 0
        removed = 0
        for path in self.directory.glob("*.eml"):
            try:
                if _mentions(path.read_bytes(), needles):
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue  # removed meanwhile by another process
        return removed


def _mentions(raw: bytes, needles: set[str]) -> bool:
    """True if the message's headers or decoded text contain one of `needles`."""
    message = message_from_bytes(raw, policy=policy.default)
    texts = [raw.decode("utf-8", "replace")]
    texts += [str(value) for value in message.values()]
    texts += [
        part.get_content()
        for part in message.walk()
        if isinstance(part, EmailMessage) and part.get_content_maintype() == "text"
    ]
    haystack = "\n".join(texts).lower()
    return any(needle in haystack for needle in needles)


class SmtpTransport:
    """Sends through an SMTP server; the blocking smtplib client runs in a thread."""

    def __init__(self, url: str, *, timeout: float = 20) -> None:
        self.settings = parse_smtp_url(url)
        self.timeout = timeout

    async def deliver(self, message: EmailMessage) -> None:
        await asyncio.to_thread(self._send, message)

    async def forget(self, addresses: Iterable[str]) -> int:
        return 0  # nothing is kept here once the server accepted a message

    def _send(self, message: EmailMessage) -> None:
        s = self.settings
        context = ssl.create_default_context()
        client: smtplib.SMTP
        if s.implicit_tls:
            client = smtplib.SMTP_SSL(s.host, s.port, timeout=self.timeout, context=context)
        else:
            client = smtplib.SMTP(s.host, s.port, timeout=self.timeout)
        with client:
            if s.starttls:
                client.starttls(context=context)
            if s.username:
                client.login(s.username, s.password or "")
            client.send_message(message)
