"""Sending mail: log its metadata in the caller's transaction (`record`), deliver it after
the commit (`Mailer.send`), so a rolled-back action never sends a message."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from portal.email.messages import Mail
from portal.email.models import EmailLogEntry
from portal.email.transport import OutboxTransport, SmtpTransport, Transport, build_message
from portal.settings import Settings

__all__ = ["Mailer", "list_sent", "mailer_from_settings", "record", "sent_since"]

log = logging.getLogger(__name__)


async def record(session: AsyncSession, mail: Mail) -> Mail:
    """Log that `mail` is being sent (kind, recipient user, time) and return it."""
    if mail.user_id is not None:
        session.add(EmailLogEntry(user_id=mail.user_id, kind=mail.kind))
        await session.flush()
    return mail


async def list_sent(session: AsyncSession, user_id: str) -> list[EmailLogEntry]:
    result = await session.scalars(
        select(EmailLogEntry).where(EmailLogEntry.user_id == user_id).order_by(EmailLogEntry.id)
    )
    return list(result)


async def sent_since(session: AsyncSession, user_id: str, kind: str, since: datetime) -> bool:
    """Whether a mail of `kind` was recorded for `user_id` at or after `since`."""
    count = await session.scalar(
        select(func.count()).where(
            EmailLogEntry.user_id == user_id,
            EmailLogEntry.kind == kind,
            EmailLogEntry.sent_at >= since,
        )
    )
    return bool(count)


class Mailer:
    def __init__(self, transport: Transport, *, sender: str) -> None:
        self.transport = transport
        self.sender = sender

    async def send(self, mails: Iterable[Mail]) -> None:
        """Deliver each message; a failure is logged (kind only) and does not stop the rest."""
        for mail in mails:
            try:
                await self.transport.deliver(build_message(mail, sender=self.sender))
            except Exception as exc:
                log.error("email (%s) not delivered: %s", mail.kind, type(exc).__name__)


def mailer_from_settings(settings: Settings) -> Mailer:
    if settings.smtp_url:
        transport: Transport = SmtpTransport(settings.smtp_url)
    else:
        transport = OutboxTransport(settings.outbox_dir)
        # In production nobody reads the outbox: people would never get their links.
        report = log.error if settings.is_production else log.warning
        report("no SMTP_URL set: email is written to %s, not sent", settings.outbox_dir)
    return Mailer(transport, sender=settings.mail_from)
