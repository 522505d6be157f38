"""Auto top-up's rules, on both backends: one attempt in flight per account even when
two portal processes race, at most `max_per_day` in 24 hours, and an attempt whose
Stripe answer was lost is asked again with its idempotency key (never a second charge)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest
from sqlalchemy import update

from portal.accounts.service import create_user
from portal.billing import auto_top_up, auto_top_up_flows, service
from portal.billing.models import AttemptStatus, AutoTopUpAttempt
from portal.billing.runtime import Billing
from portal.billing.stripe_gateway import StripeGateway
from portal.config.billing_settings import AutoTopUpSettings, BillingSettings
from portal.credits import ledger, top_up_settings
from portal.credits.models import CauseType, EntryKind
from portal.db import Database
from portal.db.base import utcnow
from tests.fakes.stripe_api import FakeStripe

UNITS = 10**9
BOUNDS = AutoTopUpSettings(enabled=True, max_per_day=2)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeStripe]:
    with FakeStripe() as f:
        yield f


@pytest.fixture
async def billing(fake: FakeStripe) -> AsyncIterator[Billing]:
    gateway = StripeGateway(fake.secret_key, api_base=fake.url, max_network_retries=0)
    yield Billing(BillingSettings(auto_top_up=BOUNDS), "http://portal.test", gateway)
    await gateway.aclose()


class Sent:
    def __init__(self) -> None:
        self.mails: list = []

    async def send(self, mails: list) -> None:
        self.mails += list(mails)


async def below_threshold(db: Database, fake: FakeStripe | None = None) -> str:
    """A person with auto top-up on (threshold 5, amount 5) and 1 credit: below it."""
    email = f"r-{uuid.uuid4().hex[:8]}@example.com"
    async with db.transaction() as session:
        user = await create_user(session, email=email, name="Rae", verified=True)
        await ledger.post_entry(
            session,
            user_id=user.id,
            amount=UNITS,
            kind=EntryKind.GRANT,
            cause_type=CauseType.ADMIN,
            cause_id=f"t-{uuid.uuid4()}",
        )
        await top_up_settings.save(
            session, user.id, enabled=True, threshold_units=5 * UNITS, amount_units=5 * UNITS
        )
        if fake is not None:  # a customer with a card saved for later
            customer = fake.create_customer(email=email)
            with fake.lock:
                from tests.fakes.stripe_api.payments import new_payment_method

                pm = new_payment_method(fake, customer=customer, email=email, bank=False)
                fake.customers[customer]["invoice_settings"]["default_payment_method"] = pm["id"]
            account = await service.lock_account(session, user.id)
            await service.link_customer(session, account, customer)
    return user.id


async def start(db: Database, user_id: str) -> AutoTopUpAttempt | None:
    async with db.transaction() as session:
        return await auto_top_up.start(session, user_id, BOUNDS)


async def finish(db: Database, attempt: AutoTopUpAttempt) -> None:
    async with db.transaction() as session:
        await session.execute(
            update(AutoTopUpAttempt)
            .where(AutoTopUpAttempt.id == attempt.id)
            .values(status=AttemptStatus.SUCCEEDED, finished_at=utcnow())
        )


async def test_one_attempt_in_flight_even_when_two_processes_race(db: Database) -> None:
    user_id = await below_threshold(db)
    started = await asyncio.gather(*(start(db, user_id) for _ in range(4)))
    assert len([a for a in started if a is not None]) == 1
    [first] = [a for a in started if a is not None]
    assert (first.sequence, first.status, first.price_minor) == (1, AttemptStatus.PENDING, 500)
    assert await start(db, user_id) is None  # still in flight
    await finish(db, first)
    second = await start(db, user_id)
    assert second is not None and second.sequence == 2
    assert auto_top_up.idempotency_key(user_id, 2) != auto_top_up.idempotency_key(user_id, 1)


async def test_at_most_max_per_day_in_24_hours(db: Database) -> None:
    user_id = await below_threshold(db)
    for _ in range(BOUNDS.max_per_day):
        attempt = await start(db, user_id)
        assert attempt is not None
        await finish(db, attempt)
    assert await start(db, user_id) is None  # the day's limit
    async with db.transaction() as session:  # a day later
        await session.execute(
            update(AutoTopUpAttempt)
            .where(AutoTopUpAttempt.user_id == user_id)
            .values(created_at=utcnow() - timedelta(hours=25))
        )
    assert await start(db, user_id) is not None


async def test_nothing_starts_above_the_threshold_or_when_off(db: Database) -> None:
    user_id = await below_threshold(db)
    async with db.transaction() as session:
        await top_up_settings.turn_off(session, user_id, "card_declined")
    assert await start(db, user_id) is None
    async with db.transaction() as session:
        await top_up_settings.save(
            session, user_id, enabled=True, threshold_units=UNITS // 2, amount_units=5 * UNITS
        )
    assert await start(db, user_id) is None  # 1 credit is not below 0.5


async def test_a_lost_answer_is_asked_again_with_the_same_key(
    db: Database, fake: FakeStripe, billing: Billing
) -> None:
    user_id = await below_threshold(db, fake)
    attempt = await start(db, user_id)
    assert attempt is not None
    sent = Sent()
    assert await auto_top_up_flows.charge(db, billing, sent, attempt) == "paid"  # type: ignore[arg-type]
    async with db.transaction() as session:  # as if the portal died before recording it
        await session.execute(
            update(AutoTopUpAttempt)
            .where(AutoTopUpAttempt.id == attempt.id)
            .values(
                status=AttemptStatus.PENDING,
                payment_intent_id=None,
                created_at=utcnow() - timedelta(minutes=5),
            )
        )
    assert await auto_top_up_flows.resume_stale(db, billing, sent) == 1  # type: ignore[arg-type]
    with fake.lock:
        intents = [
            p for p in fake.payment_intents.values() if p["metadata"].get("user_id") == user_id
        ]
    assert len(intents) == 1  # Stripe replayed the first answer
    async with db.session() as session:
        again = await session.get(AutoTopUpAttempt, attempt.id, populate_existing=True)
    assert again is not None and again.status == AttemptStatus.PAID
    assert again.payment_intent_id == intents[0]["id"] and sent.mails == []


def test_the_operators_bounds_are_checked_at_start() -> None:
    with pytest.raises(ValueError, match="min_amount_credits is above"):
        AutoTopUpSettings(min_amount_credits=10, max_amount_credits=5)
    with pytest.raises(ValueError, match="more than Stripe takes"):
        AutoTopUpSettings(max_amount_credits=10**7, minor_units_per_credit=100)
    assert not AutoTopUpSettings().enabled  # off until the operator prices a credit
