"""A refund after the credits were partly spent: the balance goes below zero and the real
gateway (LiteLLM proxy, official openai SDK) refuses the next call with 402."""

from __future__ import annotations

import openai
import pytest

from portal.billing.runtime import Billing
from portal.db import Database
from tests.billing.conftest import UNITS, Buyer, event_of, start_checkout
from tests.fakes.stripe_api import FakeStripe
from tests.fixtures.gateway import MakeUser, RunningGateway
from tests.gateway.support import money, settled_usage

pytestmark = pytest.mark.gateway

MODEL = "gpt-4.1-nano"
MESSAGES = [{"role": "user", "content": "What is two plus two"}]


async def test_refund_after_spending_leaves_a_negative_balance_and_402(
    gateway: RunningGateway,
    stripe_fake: FakeStripe,
    billing: Billing,
    db: Database,
    make_user: MakeUser,
    fresh_upstream,
) -> None:
    user = await make_user("0")
    session_id = await start_checkout(billing, db, Buyer(user.user_id, user.email), "pack", "small")
    events = stripe_fake.complete_checkout(session_id)
    charge_id = event_of(events, "charge.succeeded")["data"]["object"]["id"]
    assert (await money(db, user.user_id)).balance == 10 * UNITS

    client = gateway.async_client(user.token)
    await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=20)
    [record] = await settled_usage(db, user.user_id, 1)
    assert record.credits > 0
    spent = await money(db, user.user_id)
    assert spent.balance == 10 * UNITS - record.credits

    stripe_fake.refund_charge(charge_id)  # all $10 back: all 10 credits go
    after = await money(db, user.user_id)
    assert after.balance == after.ledger_sum == -record.credits < 0

    with pytest.raises(openai.APIStatusError) as refused:
        await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=20)
    assert refused.value.status_code == 402
    assert refused.value.body["type"] == "insufficient_quota"
    assert "Insufficient credits" in refused.value.body["message"]
    assert (await money(db, user.user_id)).balance == after.balance  # nothing more spent
