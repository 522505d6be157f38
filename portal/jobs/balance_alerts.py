"""The portal's side of balance alerts (`portal.credits.alerts`): take each alert the
settlements wrote, start the auto top-up, or else send the low-balance email.

Prompt, without a poll per call: on PostgreSQL the job LISTENs on the alerts' channel
(the settlement's statement NOTIFYs at its commit) and looks at the table when woken, or
every `POLL_SECONDS_POSTGRESQL` should a notification be missed (the listening connection
dropped, say); on SQLite, which has no notifications, it looks every
`POLL_SECONDS_SQLITE`. Every pass also asks Stripe again about top-ups whose answer was
lost (`auto_top_up_flows.resume_stale`), at most every `RESUME_EVERY_SECONDS`.

One alert is handled per transaction: taking it (deleting the row), recording the email
and starting the top-up's attempt commit together; the email is sent and Stripe is called
after the commit. A failure rolls the alert back for the next pass. Several portal
processes may run this at once: each takes different rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from portal.billing import auto_top_up, auto_top_up_flows
from portal.billing.models import AutoTopUpAttempt
from portal.billing.runtime import Billing
from portal.credits import alerts, low_balance
from portal.db import Database
from portal.email.messages import Mail
from portal.email.service import Mailer

__all__ = ["AlertJob"]

log = logging.getLogger(__name__)

POLL_SECONDS_POSTGRESQL = 5.0
POLL_SECONDS_SQLITE = 0.5
RESUME_EVERY_SECONDS = 60.0


@dataclass
class AlertJob:
    database: Database
    mailer: Mailer
    billing: Callable[[], Billing]
    """The process's billing context (built on first use)."""
    dashboard_url: str
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        """Until cancelled."""
        listener = _Listener(self.database, self.wake) if self.database.is_postgresql else None
        poll = POLL_SECONDS_POSTGRESQL if listener is not None else POLL_SECONDS_SQLITE
        next_resume = 0.0
        try:
            while True:
                self.wake.clear()
                if listener is not None:
                    await listener.ensure()
                await self.drain()
                if time.monotonic() >= next_resume:
                    next_resume = time.monotonic() + RESUME_EVERY_SECONDS
                    await self._resume()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), poll)
        finally:
            if listener is not None:
                await listener.close()

    async def drain(self) -> int:
        """Handle every alert there is now; how many."""
        handled = 0
        while True:
            try:
                if not await self.handle_next():
                    return handled
            except Exception as exc:  # the database or Stripe failing must not end the job
                log.warning("balance alert not handled: %s", type(exc).__name__)
                return handled
            handled += 1

    async def handle_next(self) -> bool:
        """Handle the oldest alert; False when there is none."""
        billing = self.billing()
        mails: list[Mail] = []
        attempt: AutoTopUpAttempt | None = None
        async with self.database.transaction() as session:
            alert = await alerts.take_next(session)
            if alert is None:
                return False
            if alert.top_up and billing.enabled:
                attempt = await auto_top_up.start(
                    session, alert.user_id, billing.catalog.auto_top_up
                )
            # A top-up starting now refills the balance: no "running low" email (if the
            # card is refused, the person gets that email instead).
            if alert.low_balance and attempt is None:
                mail = await low_balance.notice(
                    session, alert.user_id, balance=alert.balance, dashboard_url=self.dashboard_url
                )
                mails += [mail] if mail is not None else []
        await self.mailer.send(mails)
        if attempt is not None:
            outcome = await auto_top_up_flows.charge(self.database, billing, self.mailer, attempt)
            log.info("auto top-up %d: %s", attempt.id, outcome)
        return True

    async def _resume(self) -> None:
        billing = self.billing()
        if not billing.enabled:
            return
        try:
            await auto_top_up_flows.resume_stale(self.database, billing, self.mailer)
        except Exception as exc:
            log.warning("stale auto top-ups not resumed: %s", type(exc).__name__)


class _Listener:
    """A connection that LISTENs on the alerts' channel and sets `wake` on each
    notification; reopened when it drops."""

    def __init__(self, database: Database, wake: asyncio.Event) -> None:
        self.database = database
        self.wake = wake
        self._connection: AsyncConnection | None = None
        self._raw: Any = None

    def _notified(self, *_: object) -> None:
        self.wake.set()

    async def ensure(self) -> None:
        if self._raw is not None and not self._raw.is_closed():
            return
        await self.close()
        try:
            self._connection = await self.database.engine.connect()
            raw = await self._connection.get_raw_connection()
            self._raw = raw.driver_connection
            await self._raw.add_listener(alerts.CHANNEL, self._notified)
        except Exception as exc:  # polling goes on; the next pass tries again
            log.warning("balance alerts: cannot listen (%s)", type(exc).__name__)
            await self.close()

    async def close(self) -> None:
        connection, self._connection, self._raw = self._connection, None, None
        if connection is not None:
            # Never back to the pool with a LISTEN on it: the connection is dropped.
            with contextlib.suppress(Exception):
                await connection.invalidate()
            with contextlib.suppress(Exception):
                await connection.close()
