"""Bounded overspend: concurrent calls reserve before they start, so a balance that covers
about five calls serves about five of twenty concurrent ones and refuses the rest (402)."""

from __future__ import annotations

import asyncio

import openai
import pytest

from gateway_plugins.litellm_bridge import count_prompt_tokens
from gateway_plugins.reservation import estimate_units
from portal.credits.units import format_units
from portal.db import Database
from portal.usage.models import CallStatus
from tests.fakes.upstream import FakeUpstream
from tests.fixtures.gateway import MakeUser, RunningGateway
from tests.gateway.support import gateway_config, money, settled_usage

pytestmark = pytest.mark.gateway

MODEL = "gpt-4.1-nano"
MAX_TOKENS = 50
MESSAGES = [{"role": "user", "content": "Write fifty words about the sea"}]
CALLS = 20
COVERED = 5


def reservation() -> int:
    """Units the gateway holds for one of these calls: the model's price times the
    prompt estimate plus max_tokens."""
    config = gateway_config()
    price = config.prices.price_of(MODEL)
    assert price is not None
    estimate = count_prompt_tokens("chat", {"model": MODEL, "messages": MESSAGES})
    return estimate_units(config.plugin, price, estimate, MAX_TOKENS)


async def streamed(client: openai.AsyncOpenAI) -> str:
    chunks = await client.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=MAX_TOKENS, stream=True
    )
    return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])


async def test_twenty_concurrent_calls_on_a_balance_for_five(
    gateway: RunningGateway, db: Database, make_user: MakeUser, fresh_upstream: FakeUpstream
) -> None:
    # Each reply uses the whole max_tokens allowance, so a call really costs about what it
    # reserves: however the calls interleave, the balance pays for five and no more.
    fresh_upstream.reply_text = " ".join(["wave"] * MAX_TOKENS)
    fresh_upstream.chunk_delay = 0.01  # streams overlap: holds are taken while others run
    held = reservation()
    funded = held * COVERED + held // 2
    user = await make_user(format_units(funded))
    client = gateway.async_client(user.token)

    calls = (streamed(client) for _ in range(CALLS))
    outcomes = await asyncio.gather(*calls, return_exceptions=True)

    served = [o for o in outcomes if isinstance(o, str)]
    refused = [o for o in outcomes if not isinstance(o, str)]
    assert all(reply == fresh_upstream.reply_text for reply in served)
    for error in refused:
        assert isinstance(error, openai.APIStatusError), repr(error)
        assert (error.status_code, error.type) == (402, "insufficient_quota"), error.body
    assert len(served) == COVERED, f"{len(served)} of {CALLS} served"

    records = await settled_usage(db, user.user_id, len(served))
    assert len(records) == len(served) == fresh_upstream.calls_served
    assert all(r.status == CallStatus.SUCCESS and r.credits > 0 for r in records)
    under_estimate = max(0, max(r.credits for r in records) - held)
    state = await money(db, user.user_id)
    assert state.balance == funded - sum(r.credits for r in records) == state.ledger_sum
    assert state.balance >= -under_estimate
    assert state.reserved == 0
