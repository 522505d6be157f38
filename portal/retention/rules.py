"""The retention rules. Each one names a set of rows by a condition on the clock and
says what happens to them; `count` and `apply` see exactly the same rows.

- usage-records: calls started more than `usage_days` ago; anonymised (or deleted).
- ledger-entries: entries older than `ledger_years` (the legal window); unlinked from
  the person, their sum carried forward.
- stripe-events: records of handled Stripe events older than `ledger_years`; deleted.
- reservations: credit holds past their expiry (a worker died mid-call); released.
- gateway-tokens: revoked or expired more than `token_grace_days` ago; deleted.
- web-sessions, account-links: portal sessions, verification and reset links past
  their expiry; deleted.
- connect-codes: app approvals past their code's expiry that name no token (never
  exchanged, or their token was deleted); deleted. An exchanged code stays while its
  token does: it names the app on the Tokens page.
- throttle-counters: abuse-limit counts (sign-in, mail) whose window began more than
  `sign_in_failure_days` ago and that hold no wait; email-log: older than
  `email_log_days`; deleted.

Anonymising a usage record removes who made it (user, token), its call id (the ledger
debit carries the same id) and the time of day (dates are kept); model, token counts and
cost stay for the operator's totals. The ledger keeps its own debit rows for the legal
window, so until then an amount and a date could still be matched to a person: choose
`usage_action: delete` where that matters. After the legal window, ledger rows lose
their user, note, cause id and usage link; a `carry_forward` entry per user keeps the
user's entries summing to their balance.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from portal.accounts.models import AccountLink, ThrottleCounter
from portal.billing.models import StripeEvent
from portal.config.plugin_settings import RetentionSettings
from portal.connect.models import ConnectCode
from portal.credits import ledger, reservations
from portal.credits.models import LedgerEntry, Reservation
from portal.email.models import EmailLogEntry
from portal.sessions.models import WebSession
from portal.tokens.models import GatewayToken
from portal.usage import settlement
from portal.usage.models import UsageRecord
from portal.usage.settlement import AnonymisedRecord

__all__ = ["ANONYMISED", "Rule", "build_rules"]

ANONYMISED = "anonymised:"  # prefix of the id that replaces an anonymised row's key

Count = Callable[[AsyncSession], Awaitable[int]]
Apply = Callable[[AsyncSession, int], Awaitable[int]]


@dataclass(frozen=True)
class Rule:
    name: str
    description: str  # for people: which rows, what happens
    verb: str  # "deleted", "anonymised", "released"
    count: Count
    apply: Apply  # (session, at most this many rows) -> rows changed
    one_pass: bool = False  # `apply` handles every row at once (ignores the limit)


def build_rules(settings: RetentionSettings, now: datetime) -> list[Rule]:
    usage_cutoff = now - timedelta(days=settings.usage_days)
    legal_cutoff = _years_before(now, settings.ledger_years)
    token_cutoff = now - timedelta(days=settings.token_grace_days)
    day = "%Y-%m-%d"
    usage_delete = settings.usage_action == "delete"
    usage_old = (UsageRecord.started_at < usage_cutoff) & ~UsageRecord.call_id.startswith(
        ANONYMISED
    )
    return [
        (_deleting if usage_delete else _anonymising_usage)(
            "usage-records",
            f"usage records of calls started before {usage_cutoff:{day}}",
            UsageRecord,
            usage_old,
        ),
        _ledger_rule(legal_cutoff, now),
        _deleting(
            "stripe-events",
            f"records of Stripe events handled before {legal_cutoff:{day}}",
            StripeEvent,
            StripeEvent.received_at < legal_cutoff,
        ),
        _reservations_rule(now),
        _deleting(
            "gateway-tokens",
            f"gateway tokens revoked or expired before {token_cutoff:{day}}",
            GatewayToken,
            or_(GatewayToken.revoked_at < token_cutoff, GatewayToken.expires_at < token_cutoff),
        ),
        _deleting(
            "web-sessions",
            "portal sessions past their expiry",
            WebSession,
            WebSession.expires_at < now,
        ),
        _deleting(
            "account-links",
            "email verification and password-reset links past their expiry",
            AccountLink,
            AccountLink.expires_at < now,
        ),
        _deleting(
            "connect-codes",
            "app approvals past their code's expiry that name no token",
            ConnectCode,
            (ConnectCode.expires_at < now) & ConnectCode.token_id.is_(None),
        ),
        _deleting(
            "throttle-counters",
            f"sign-in and mail limit counts older than {settings.sign_in_failure_days} days",
            ThrottleCounter,
            (ThrottleCounter.window_start < now - timedelta(days=settings.sign_in_failure_days))
            & (ThrottleCounter.blocked_until < now),
        ),
        _deleting(
            "email-log",
            f"records of emails sent before {now - timedelta(days=settings.email_log_days):{day}}",
            EmailLogEntry,
            EmailLogEntry.sent_at < now - timedelta(days=settings.email_log_days),
        ),
    ]


def _years_before(moment: datetime, years: int) -> datetime:
    try:
        return moment.replace(year=moment.year - years)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year - years, day=28)


def _counter(model: Any, condition: ColumnElement[bool]) -> Count:
    async def count(session: AsyncSession) -> int:
        counted = await session.execute(select(func.count()).select_from(model).where(condition))
        return counted.scalar_one()

    return count


def _batch_ids(model: Any, condition: ColumnElement[bool], limit: int) -> Any:
    key = model.__mapper__.primary_key[0]
    return select(key).where(condition).order_by(key).limit(limit)


def _deleting(name: str, description: str, model: Any, condition: ColumnElement[bool]) -> Rule:
    key = model.__mapper__.primary_key[0]

    async def apply(session: AsyncSession, limit: int) -> int:
        ids = list(await session.scalars(_batch_ids(model, condition, limit)))
        if ids:
            await session.execute(delete(model).where(key.in_(ids)))
        return len(ids)

    return Rule(name, f"{description}: deleted", "deleted", _counter(model, condition), apply)


def _anonymising_usage(
    name: str, description: str, model: Any, condition: ColumnElement[bool]
) -> Rule:
    async def apply(session: AsyncSession, limit: int) -> int:
        rows = (
            await session.execute(
                select(UsageRecord.id, UsageRecord.started_at, UsageRecord.ended_at)
                .where(condition)
                .order_by(UsageRecord.id)
                .limit(limit)
            )
        ).all()
        if not rows:
            return 0
        await ledger.unlink_usage(session, [row.id for row in rows])
        await settlement.anonymise_records(
            session,
            [
                AnonymisedRecord(
                    id=row.id,
                    call_id=f"{ANONYMISED}{row.id}",
                    started_at=_day(row.started_at),
                    ended_at=_day(row.ended_at),
                )
                for row in rows
            ],
        )
        return len(rows)

    return Rule(
        name,
        f"{description}: anonymised (no user, token or call id; date without time)",
        "anonymised",
        _counter(model, condition),
        apply,
    )


def _day(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _ledger_rule(cutoff: datetime, now: datetime) -> Rule:
    condition = (LedgerEntry.created_at < cutoff) & ~LedgerEntry.cause_id.startswith(ANONYMISED)

    async def apply(session: AsyncSession, limit: int) -> int:
        rows = (
            await session.execute(
                select(LedgerEntry.id, LedgerEntry.user_id, LedgerEntry.amount)
                .where(condition)
                .order_by(LedgerEntry.id)
                .limit(limit)
            )
        ).all()
        if not rows:
            return 0
        totals: dict[str, int] = defaultdict(int)
        for row in rows:
            if row.user_id is not None:
                totals[row.user_id] += int(row.amount)
        for user_id, amount in totals.items():
            await ledger.carry_forward(
                session,
                user_id=user_id,
                amount=amount,
                cause_id=f"carry-forward:{uuid.uuid4()}",
                note=f"sum of entries before {cutoff:%Y-%m-%d} (retention, {now:%Y-%m-%d})",
            )
        await ledger.unlink_from_people(session, [row.id for row in rows], cause_prefix=ANONYMISED)
        return len(rows)

    return Rule(
        "ledger-entries",
        f"ledger entries before {cutoff:%Y-%m-%d} (legal window): unlinked from the person,"
        " their sum carried forward",
        "anonymised",
        _counter(LedgerEntry, condition),
        apply,
    )


def _reservations_rule(now: datetime) -> Rule:
    count = _counter(Reservation, Reservation.expires_at < now)

    async def apply(session: AsyncSession, limit: int) -> int:
        expired = await count(session)
        if expired:
            await reservations.release_expired(session)  # all of them, balances fixed
        return expired

    return Rule(
        "reservations",
        "credit holds past their expiry (calls whose worker stopped): released",
        "released",
        count,
        apply,
        one_pass=True,
    )
