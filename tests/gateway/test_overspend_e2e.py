"""Bounded overspend, stated and tested (issue 8, point 7).

50 concurrent calls (streamed and plain, interleaved) at a balance that covers about five
of them. Each reply uses its whole `max_tokens`, so the output side of every hold is
exact, and the prompt is one whose true token count (the fake upstream's, as a provider
would report it) exceeds LiteLLM's tokenizer count even after `input_estimate_factor`:
sixty one-word text blocks, which Anthropic counts as sixty segments (fake: 4 tokens
each) and LiteLLM's tokenizer as one message. So every call costs more than it reserved.

The bound, as `gateway_plugins/reservation.py` states it: the balance falls below zero
by at most k × (the per-call under-estimate), k = the calls in flight at once (≤ the
plan's `max_parallel_requests`). The test computes it exactly that way and checks the
final balance against it, that nothing stays reserved, and that usage rows = answers.
"""

from __future__ import annotations

import asyncio

import openai
import pytest

from gateway_plugins.litellm_bridge import count_prompt_tokens
from gateway_plugins.reservation import estimate_units
from portal.db import Database
from portal.usage.models import CallStatus
from tests.fakes.upstream import FakeUpstream
from tests.fixtures.gateway import Closing, FundedUser, RunningGateway, funded_user
from tests.gateway.accounting import debits_by_call
from tests.gateway.support import chat_reply, expected_units, gateway_config, money, settled_usage

pytestmark = pytest.mark.gateway

MODEL = "claude-haiku-4-5"
MAX_TOKENS = 50
BLOCKS = 60
MESSAGES = [{"role": "user", "content": [{"type": "text", "text": "go"}] * BLOCKS}]
TRUE_PROMPT_TOKENS = BLOCKS * (1 + 3)  # the fake: words + 3 per block (Anthropic segments)
CALLS = 50
COVERED = 5


def held_per_call() -> int:
    """What the gateway reserves for one call: LiteLLM's prompt count × the safety
    factor, plus max_tokens, at the model's price."""
    config = gateway_config()
    price = config.prices.price_of(MODEL)
    assert price is not None
    estimate = count_prompt_tokens("chat", {"model": MODEL, "messages": MESSAGES})
    return estimate_units(config.plugin, price, estimate, MAX_TOKENS)


async def one_call(client: openai.AsyncOpenAI, stream: bool) -> str:
    """The reply text; raises the SDK's error when refused."""
    return await chat_reply(
        client, model=MODEL, messages=MESSAGES, max_tokens=MAX_TOKENS, stream=stream
    )


async def test_fifty_concurrent_calls_overspend_at_most_the_stated_bound(
    gateway: RunningGateway, db: Database, fresh_upstream: FakeUpstream, closing: Closing
) -> None:
    fresh_upstream.reply_text = " ".join(["wave"] * MAX_TOKENS)  # the whole allowance
    fresh_upstream.chunk_delay = 0.01  # streams overlap: holds are taken while others run
    held = held_per_call()
    cost = expected_units(MODEL, TRUE_PROMPT_TOKENS, MAX_TOKENS)
    under_estimate = cost - held
    assert under_estimate > 0, "the scenario needs an estimate that falls short"
    funded = held * COVERED + held // 2
    user: FundedUser = await funded_user(db, units=funded)
    client = closing(gateway.async_client(user.token, timeout=120))

    calls = (one_call(client, stream=i % 2 == 0) for i in range(CALLS))
    outcomes = await asyncio.gather(*calls, return_exceptions=True)

    served = [o for o in outcomes if isinstance(o, str)]
    refused = [o for o in outcomes if not isinstance(o, str)]
    assert all(reply == fresh_upstream.reply_text for reply in served)
    for error in refused:  # no credit (402), or every slot of the plan taken (429)
        assert isinstance(error, openai.APIStatusError), repr(error)
        assert (error.status_code, error.type) in (
            (402, "insufficient_quota"),
            (429, "rate_limit_error"),
        ), error.body
    assert 1 <= len(served) <= COVERED, f"{len(served)} of {CALLS} served"

    records = await settled_usage(db, user.user_id, len(served))
    assert len(records) == len(served) == fresh_upstream.calls_served
    for record in records:
        assert record.status == CallStatus.SUCCESS
        assert (record.prompt_tokens, record.completion_tokens) == (
            TRUE_PROMPT_TOKENS,
            MAX_TOKENS,
        )
        assert record.credits == cost
    assert await debits_by_call(db, user.user_id) == {r.call_id: 1 for r in records}

    plan = gateway_config().plugin.limits.for_plan("free")
    assert plan.max_parallel_requests is not None
    in_flight = min(len(served), plan.max_parallel_requests)
    bound = in_flight * under_estimate
    state = await money(db, user.user_id)
    assert state.reserved == 0
    assert state.balance == funded - sum(r.credits for r in records) == state.ledger_sum
    assert state.balance >= -bound, (state.balance, bound)
