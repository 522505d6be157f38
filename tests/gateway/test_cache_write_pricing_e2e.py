"""Anthropic prompt-cache writes are billed at the rate of their lifetime (issue 19.4):
a 5-minute write at `cache_creation_input_token_cost` (1.25x input), a 1-hour write at
`cache_creation_input_token_cost_above_1hr` (2x input), as Anthropic bills them — on
chat completions and /v1/messages, plain and streamed, the fake Anthropic upstream
reporting `cache_creation: {ephemeral_5m_input_tokens, ephemeral_1h_input_tokens}`.
1-hour writes used to be priced at the 5-minute rate (237,515,000 units against
380,015,000 owed in the issue's measurement)."""

from __future__ import annotations

from decimal import Decimal

import litellm
import pytest

from portal.db import Database
from portal.usage.models import UsageRecord
from tests.fakes.upstream import FakeUpstream
from tests.fixtures.gateway import Closing, MakeUser, RunningGateway
from tests.gateway.support import (
    fake_completion_tokens,
    fake_prompt_tokens,
    money,
    settled_usage,
    usd_units,
)

pytestmark = pytest.mark.gateway

MODEL = "claude-haiku-4-5"
COST_MAP_MODEL = "claude-haiku-4-5"
PROMPT = " ".join(["cache"] * 2000)  # 2,003 prompt tokens at the fake
WRITES = {"5m": 600, "1h": 1200}  # prompt tokens written to each cache


def rate(key: str) -> Decimal:
    return Decimal(str(litellm.model_cost[COST_MAP_MODEL][key]))


def owed_units(prompt: int, completion: int, write_5m: int, write_1h: int) -> int:
    """Anthropic's bill for these counts, from LiteLLM's cost map."""
    usd = (
        rate("input_cost_per_token") * (prompt - write_5m - write_1h)
        + rate("cache_creation_input_token_cost") * write_5m
        + rate("cache_creation_input_token_cost_above_1hr") * write_1h
        + rate("output_cost_per_token") * completion
    )
    return usd_units(usd)


async def one_call(
    gateway: RunningGateway, token: str, closing: Closing, api: str, stream: bool
) -> None:
    messages = [{"role": "user", "content": PROMPT}]
    if api == "chat":
        client = closing(gateway.async_client(token))
        if stream:
            chunks = await client.chat.completions.create(
                model=MODEL,
                messages=messages,
                max_tokens=100,
                stream=True,
            )
            async for _ in chunks:
                pass
        else:
            await client.chat.completions.create(model=MODEL, messages=messages, max_tokens=100)
        return
    anthropic_client = closing(gateway.anthropic_client(token))
    if stream:
        async with anthropic_client.messages.stream(
            model=MODEL,
            messages=messages,
            max_tokens=100,
        ) as events:
            async for _ in events:
                pass
    else:
        await anthropic_client.messages.create(model=MODEL, messages=messages, max_tokens=100)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("api", ["chat", "messages"])
async def test_one_hour_cache_writes_are_billed_at_the_one_hour_rate(
    gateway: RunningGateway,
    db: Database,
    make_user: MakeUser,
    fresh_upstream: FakeUpstream,
    closing: Closing,
    api: str,
    stream: bool,
) -> None:
    assert rate("cache_creation_input_token_cost_above_1hr") > rate(
        "cache_creation_input_token_cost"
    )
    user = await make_user("10")
    prompt = fake_prompt_tokens(PROMPT)
    completion = fake_completion_tokens(fresh_upstream.reply_text)
    records: list[UsageRecord] = []
    for write_5m, write_1h in ((0, WRITES["1h"]), (WRITES["5m"], WRITES["1h"]), (WRITES["5m"], 0)):
        fresh_upstream.usage_extra = {
            "cache_write_5m_tokens": write_5m,
            "cache_write_1h_tokens": write_1h,
        }
        await one_call(gateway, user.token, closing, api, stream)
        records = await settled_usage(db, user.user_id, len(records) + 1)
        record = max(records, key=lambda r: r.id)
        assert (record.prompt_tokens, record.completion_tokens) == (prompt, completion)
        owed = owed_units(prompt, completion, write_5m, write_1h)
        assert abs(record.credits - owed) <= owed / 1000, (write_5m, write_1h, record.credits, owed)
    state = await money(db, user.user_id)
    assert state.balance == 10 * 10**9 - sum(r.credits for r in records) == state.ledger_sum
