"""Auto top-up attempts, in the caller's transaction (the only writer of
`auto_top_up_attempts`; Stripe is called by `auto_top_up_flows`, outside transactions).

An attempt is started (`start`) only when every rule holds, checked again at that moment
whatever asked for it (a settlement's alert, switching it on, a top-up credited while
still below):

- the operator allows auto top-up and the person has it on;
- the balance is below the person's threshold now;
- no attempt of the account is in flight (a unique index on unfinished attempts makes
  this hold across portal processes: a second insert is ignored, not an error);
- fewer than `max_per_day` attempts started in the last 24 hours.

Attempts are numbered per account (`sequence`, unique with the user), and the Stripe
idempotency key is made of both (`idempotency_key`): a retry of an attempt (the portal
died before hearing Stripe's answer) can never charge twice, and a new attempt is never
mistaken for an old one.

Credits come only from Stripe's signed `payment_intent.succeeded` (`credited`, called
by the webhook handler in the transaction that grants them, keyed by the PaymentIntent);
`paid` only notes that Stripe said yes (or is processing). A refusal ends the attempt
(`failed`, or `refused_later` from Stripe's signed `payment_intent.payment_failed` when
a processing payment is declined) and turns auto top-up off until the person turns it
on again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from portal.billing.models import AttemptStatus, AutoTopUpAttempt
from portal.billing.reads import TopUpPaid
from portal.config.billing_settings import AutoTopUpSettings
from portal.credits import alerts, ledger, top_up_settings
from portal.credits.units import UNITS_PER_CREDIT
from portal.db.base import utcnow

__all__ = [
    "Choice",
    "InvalidChoice",
    "credited",
    "failed",
    "idempotency_key",
    "last_attempt",
    "paid",
    "refused_later",
    "save_choice",
    "stale",
    "start",
]

DAY = timedelta(hours=24)
_attempts = AutoTopUpAttempt.__table__.c


def idempotency_key(user_id: str, sequence: int) -> str:
    return f"wfg-auto-top-up-{user_id}-{sequence}"


class InvalidChoice(ValueError):
    """A threshold or amount outside the operator's bounds (the message says which)."""


@dataclass(frozen=True)
class Choice:
    enabled: bool
    threshold_credits: int
    amount_credits: int


async def save_choice(
    session: AsyncSession, user_id: str, choice: Choice, bounds: AutoTopUpSettings
) -> None:
    """Store the person's choice if the operator's bounds allow it, else InvalidChoice.
    Switched on below the threshold already, a top-up is looked at right away."""
    if choice.enabled and not bounds.enabled:
        raise InvalidChoice("Auto top-up is not offered on this server.")
    low, high = bounds.min_threshold_credits, bounds.max_threshold_credits
    if not low <= choice.threshold_credits <= high:
        raise InvalidChoice(f"The threshold must be between {low} and {high} credits.")
    low, high = bounds.min_amount_credits, bounds.max_amount_credits
    if not low <= choice.amount_credits <= high:
        raise InvalidChoice(f"The amount must be between {low} and {high} credits.")
    threshold = choice.threshold_credits * UNITS_PER_CREDIT
    await top_up_settings.save(
        session,
        user_id,
        enabled=choice.enabled,
        threshold_units=threshold,
        amount_units=choice.amount_credits * UNITS_PER_CREDIT,
    )
    balance = await ledger.balance(session, user_id)
    if choice.enabled and balance < threshold:
        await alerts.add_top_up_check(session, user_id, balance)


async def start(
    session: AsyncSession, user_id: str, bounds: AutoTopUpSettings, *, now: datetime | None = None
) -> AutoTopUpAttempt | None:
    """A new attempt (status pending) when every rule in the module docstring holds; None
    otherwise (nothing to do, one in flight, or the day's limit reached)."""
    now = now or utcnow()
    setting = await top_up_settings.get(session, user_id)
    if not bounds.enabled or setting is None or not setting.enabled:
        return None
    if await ledger.balance(session, user_id) >= setting.threshold_units:
        return None
    started_today = await session.scalar(
        select(func.count()).where(_attempts.user_id == user_id, _attempts.created_at > now - DAY)
    )
    if int(started_today or 0) >= bounds.max_per_day:
        return None
    last = await session.scalar(
        select(func.coalesce(func.max(_attempts.sequence), 0)).where(_attempts.user_id == user_id)
    )
    credits = setting.amount_units // UNITS_PER_CREDIT
    values = {
        "user_id": user_id,
        "sequence": int(last or 0) + 1,
        "amount_units": setting.amount_units,
        "price_minor": credits * bounds.minor_units_per_credit,
        "currency": bounds.currency,
        "status": AttemptStatus.PENDING.value,
        "created_at": now,
    }
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    # No conflict target: any unique index ignores the row, the one on unfinished
    # attempts included (another process started one meanwhile).
    inserted = await session.scalar(
        dialect.insert(AutoTopUpAttempt)
        .values(**values)
        .on_conflict_do_nothing()
        .returning(_attempts.id)
    )
    if inserted is None:
        return None
    return await session.get(AutoTopUpAttempt, inserted)


async def paid(session: AsyncSession, attempt_id: int, payment_intent_id: str) -> None:
    """Stripe took the payment (or is processing it); credits wait for its webhook. An
    attempt the webhook already credited stays credited."""
    await session.execute(
        update(AutoTopUpAttempt)
        .where(_attempts.id == attempt_id, _attempts.status == AttemptStatus.PENDING.value)
        .values(status=AttemptStatus.PAID.value, payment_intent_id=payment_intent_id),
        execution_options={"synchronize_session": False},
    )


async def failed(
    session: AsyncSession, attempt_id: int, *, code: str, payment_intent_id: str | None
) -> bool:
    """The payment could not be made: the attempt ends and auto top-up goes off. False
    when the attempt had already ended (nothing changed, nobody to tell again)."""
    row = (
        await session.execute(
            update(AutoTopUpAttempt)
            .where(_attempts.id == attempt_id, _attempts.finished_at.is_(None))
            .values(
                status=AttemptStatus.FAILED.value,
                error_code=code[:64],
                payment_intent_id=payment_intent_id,
                finished_at=utcnow(),
            )
            .returning(_attempts.user_id),
            execution_options={"synchronize_session": False},
        )
    ).first()
    if row is None:
        return False
    await top_up_settings.turn_off(session, row.user_id, code)
    return True


async def refused_later(session: AsyncSession, user_id: str, paid: TopUpPaid) -> bool:
    """`payment_intent.payment_failed` for an attempt Stripe first said was processing
    (or whose answer we lost): it ends as `failed` would end it. False when it had
    already ended (the refusal was heard from the API's answer)."""
    attempt_id = await session.scalar(
        select(_attempts.id).where(
            _attempts.user_id == user_id,
            _attempts.sequence == paid.sequence,
            _attempts.finished_at.is_(None),
        )
    )
    if attempt_id is None:
        return False
    code = paid.failure or "failed"
    return await failed(session, attempt_id, code=code, payment_intent_id=paid.payment_intent_id)


async def credited(session: AsyncSession, user_id: str, paid: TopUpPaid) -> None:
    """`payment_intent.succeeded` granted the top-up (same transaction): the attempt ends.
    Still below the threshold (a big spend meanwhile), the account is looked at again."""
    await session.execute(
        update(AutoTopUpAttempt)
        .where(
            _attempts.user_id == user_id,
            _attempts.sequence == paid.sequence,
            _attempts.finished_at.is_(None),
        )
        .values(
            status=AttemptStatus.SUCCEEDED.value,
            payment_intent_id=paid.payment_intent_id,
            finished_at=utcnow(),
        ),
        execution_options={"synchronize_session": False},
    )
    setting = await top_up_settings.get(session, user_id)
    balance = await ledger.balance(session, user_id)
    if setting is not None and setting.enabled and balance < setting.threshold_units:
        await alerts.add_top_up_check(session, user_id, balance)


async def last_attempt(session: AsyncSession, user_id: str) -> AutoTopUpAttempt | None:
    return await session.scalar(
        select(AutoTopUpAttempt)
        .where(AutoTopUpAttempt.user_id == user_id)
        .order_by(AutoTopUpAttempt.sequence.desc())
        .limit(1)
    )


async def stale(session: AsyncSession, *, older_than: datetime) -> list[AutoTopUpAttempt]:
    """Attempts started before `older_than` whose Stripe answer we never recorded (the
    portal stopped between starting one and hearing back)."""
    return list(
        await session.scalars(
            select(AutoTopUpAttempt).where(
                AutoTopUpAttempt.status == AttemptStatus.PENDING,
                AutoTopUpAttempt.created_at < older_than,
            )
        )
    )
