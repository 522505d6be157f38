"""Spending limits per token (issue 20, item 3), end to end: the token made and changed
by `gateway-admin` (a real process), called with the official SDKs through the real
gateway (`clocked_gateway`: its clock for periods is set by the test, so a daily limit
rolls over without waiting for midnight), on SQLite and PostgreSQL.

- a call that would take the token past its limit gets 402 `token_limit_reached`, with
  the limit, what is used and when it resets, in OpenAI's and Anthropic's formats;
- `/v1/credits` shows the calling token's `limit`, `used`, `remaining`, `resets_at`;
- the next day the limit starts again; a limit changed later applies to the next call;
- 50 concurrent calls on a limited token never take it past its limit by more than the
  overspend bound of the balance (k calls in flight × the per-call under-estimate).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from sqlalchemy import select

from gateway_plugins.litellm_bridge import count_prompt_tokens
from gateway_plugins.reservation import estimate_units
from portal.credits.units import format_units
from portal.db import Database
from portal.tokens.models import GatewayToken
from tests.cli.conftest import Admin
from tests.fakes.upstream import FakeUpstream
from tests.fixtures.clocked_gateway import ClockedGateway
from tests.fixtures.gateway import Closing, FundedUser, funded_user
from tests.gateway.support import chat_reply, expected_units, gateway_config, money, settled_usage

pytestmark = pytest.mark.gateway

MODEL = "claude-haiku-4-5"
MAX_TOKENS = 40
MESSAGES = [{"role": "user", "content": "How is the weather?"}]
WEDNESDAY = datetime(2031, 3, 5, 15, 30, tzinfo=UTC)  # the test's "now"
THURSDAY_MIDNIGHT = datetime(2031, 3, 6, tzinfo=UTC)


def held_per_call(messages: list[dict[str, Any]] = MESSAGES) -> int:
    """What the gateway holds for one call (LiteLLM's prompt count × the safety factor,
    plus max_tokens, at the model's price)."""
    config = gateway_config()
    price = config.prices.price_of(MODEL)
    assert price is not None
    estimate = count_prompt_tokens("chat", {"model": MODEL, "messages": messages})
    return estimate_units(config.plugin, price, estimate, MAX_TOKENS)


@pytest.fixture
def admin(database_url: str, tmp_path: Path) -> Admin:
    return Admin(database_url, tmp_path)


@pytest.fixture
def clocked(
    clocked_gateway: ClockedGateway, fresh_upstream: FakeUpstream
) -> Iterator[ClockedGateway]:
    fresh_upstream.reply_text = " ".join(["sun"] * MAX_TOKENS)  # the whole allowance
    clocked_gateway.clock.set(WEDNESDAY)
    yield clocked_gateway
    clocked_gateway.clock.real()


def limited_token(admin: Admin, user: FundedUser, *limit: str) -> str:
    """A new token of `user`, made as an operator would: `tokens create … --limit …`."""
    created = admin("tokens", "create", "--email", user.email, "--name", "limited", *limit)
    return created.ok().strip()


async def token_id(db: Database, user: FundedUser, name: str) -> str:
    async with db.session() as session:
        found = await session.scalar(
            select(GatewayToken.id).where(
                GatewayToken.user_id == user.user_id, GatewayToken.name == name
            )
        )
    assert found is not None
    return found


async def credits(clocked: ClockedGateway, token: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.get(
            f"{clocked.gateway.url}/v1/credits", headers={"authorization": f"Bearer {token}"}
        )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def chat(client: openai.AsyncOpenAI, *, stream: bool = False) -> str:
    return await chat_reply(
        client, model=MODEL, messages=MESSAGES, max_tokens=MAX_TOKENS, stream=stream
    )


async def test_past_its_daily_limit_a_token_gets_402_and_the_next_day_it_starts_again(
    clocked: ClockedGateway, db: Database, admin: Admin, closing: Closing
) -> None:
    held = held_per_call()
    user = await funded_user(db, units=held * 50)  # the balance is never what refuses
    limit = held * 5 // 2  # two holds fit, a third does not once anything was spent
    token = limited_token(admin, user, "--limit", format_units(limit), "--reset", "daily")
    before = await credits(clocked, token)
    assert (before["limit"], before["limit_units"], before["limit_reset"]) == (
        format_units(limit), limit, "daily",
    )  # fmt: skip
    assert (before["used"], before["used_units"]) == ("0", 0)
    assert (before["remaining"], before["remaining_units"]) == (format_units(limit), limit)
    assert before["resets_at"] == THURSDAY_MIDNIGHT.isoformat()

    client = closing(clocked.gateway.async_client(token, timeout=60))
    served = 0
    refused: openai.APIStatusError | None = None
    for _ in range(6):  # sequential: each call's hold is taken after the last settled
        try:
            await chat(client, stream=served % 2 == 1)
            served += 1
        except openai.APIStatusError as error:
            refused = error
            break
    assert refused is not None, "the limit never refused a call"
    assert served >= 2
    records = await settled_usage(db, user.user_id, served)
    spent = sum(record.credits for record in records)
    cost = records[0].credits
    assert spent + held > limit >= spent  # refused exactly when the next hold would not fit

    assert refused.status_code == 402
    body = refused.response.json()
    assert body == {
        "error": {
            "message": body["error"]["message"],
            "type": "insufficient_quota",
            "param": None,
            "code": "token_limit_reached",
            "limit": format_units(limit),
            "limit_units": limit,
            "used": format_units(spent),
            "used_units": spent,
            "resets_at": THURSDAY_MIDNIGHT.isoformat(),
        }
    }
    message = body["error"]["message"]
    assert format_units(limit) in message and "2031-03-06 00:00 UTC" in message

    # Anthropic's SDK on /v1/messages: the same figures in its error format (a larger
    # max_tokens, so its hold is larger than what is left whatever its prompt counts).
    claude = closing(clocked.gateway.anthropic_client(token, timeout=60))
    with pytest.raises(anthropic.APIStatusError) as raised:
        await claude.messages.create(
            model=MODEL, max_tokens=MAX_TOKENS * 4, messages=[{"role": "user", "content": "Hi"}]
        )
    assert raised.value.status_code == 402
    error = raised.value.response.json()["error"]
    assert (error["type"], error["limit"], error["used"], error["resets_at"]) == (
        "billing_error", format_units(limit), format_units(spent), THURSDAY_MIDNIGHT.isoformat()
    )  # fmt: skip

    # The balance was not what refused: the same user's token without a limit is served.
    other = closing(clocked.gateway.async_client(user.token, timeout=60))
    assert await chat(other)
    unlimited = await credits(clocked, user.token)
    assert (unlimited["limit"], unlimited["remaining"], unlimited["resets_at"]) == (None,) * 3
    assert unlimited["used_units"] == cost  # what that token spent, ever

    reached = await credits(clocked, token)
    assert (reached["used_units"], reached["remaining_units"]) == (spent, limit - spent)

    # Midnight UTC: a new day, the limit starts again (no wait: the test sets the clock).
    clocked.clock.set(THURSDAY_MIDNIGHT.replace(second=1))
    fresh = await credits(clocked, token)
    assert (fresh["used_units"], fresh["remaining_units"]) == (0, limit)
    assert fresh["resets_at"] == datetime(2031, 3, 7, tzinfo=UTC).isoformat()
    assert await chat(client)
    after = await credits(clocked, token)
    assert after["used_units"] == cost and after["remaining_units"] == limit - cost


async def test_a_limit_changed_later_applies_to_the_next_call(
    clocked: ClockedGateway, db: Database, admin: Admin, closing: Closing
) -> None:
    held = held_per_call()
    user = await funded_user(db, units=held * 50)
    token = limited_token(admin, user, "--limit", format_units(held // 2))
    client = closing(clocked.gateway.async_client(token, timeout=60))
    with pytest.raises(openai.APIStatusError) as first:
        await chat(client)
    assert first.value.status_code == 402
    assert first.value.response.json()["error"]["resets_at"] is None  # never resets

    limited = await token_id(db, user, "limited")
    changed = admin(
        "tokens", "limit", limited, "--limit", format_units(held * 3), "--reset", "weekly"
    ).ok()
    assert f"limit {format_units(held * 3)} credits, weekly" in changed
    assert await chat(client)  # at once: nothing caches the limit
    shown = await credits(clocked, token)
    assert shown["limit_units"] == held * 3 and shown["limit_reset"] == "weekly"
    assert shown["resets_at"] == datetime(2031, 3, 10, tzinfo=UTC).isoformat()  # Monday

    admin("tokens", "limit", limited, "--limit", "none").ok()
    removed = await credits(clocked, token)
    assert (removed["limit"], removed["remaining"], removed["resets_at"]) == (None,) * 3
    assert removed["used_units"] > 0  # still counted: a limit set later sees it


# The overspend scenario of test_overspend_e2e: a prompt whose true token count (the
# provider's) exceeds LiteLLM's count even after the safety factor, so each call costs
# more than it held, and every reply uses its whole max_tokens.
BLOCKS = 60
COSTLY = [{"role": "user", "content": [{"type": "text", "text": "go"}] * BLOCKS}]
TRUE_PROMPT_TOKENS = BLOCKS * (1 + 3)
CALLS = 50


async def test_fifty_concurrent_calls_stay_within_the_limit_and_the_overspend_bound(
    clocked: ClockedGateway, db: Database, admin: Admin, closing: Closing
) -> None:
    clocked.gateway.upstream.chunk_delay = 0.01  # streams overlap: holds taken meanwhile
    held = held_per_call(COSTLY)
    cost = expected_units(MODEL, TRUE_PROMPT_TOKENS, MAX_TOKENS)
    under_estimate = cost - held
    assert under_estimate > 0, "the scenario needs an estimate that falls short"
    user = await funded_user(db, units=held * 200)  # the balance never refuses
    limit = held * 4 + held // 2
    token = limited_token(admin, user, "--limit", format_units(limit), "--reset", "monthly")
    client = closing(clocked.gateway.async_client(token, timeout=120))

    async def one(stream: bool) -> str:
        request = {"model": MODEL, "messages": COSTLY, "max_tokens": MAX_TOKENS}
        if not stream:
            reply = await client.chat.completions.create(**request)
            return reply.choices[0].message.content or ""
        chunks = await client.chat.completions.create(**request, stream=True)
        return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])

    outcomes = await asyncio.gather(
        *(one(i % 2 == 0) for i in range(CALLS)), return_exceptions=True
    )
    served = [o for o in outcomes if isinstance(o, str)]
    refused = [o for o in outcomes if not isinstance(o, str)]
    for error in refused:  # the token's limit (402), or every slot of the plan taken (429)
        assert isinstance(error, openai.APIStatusError), repr(error)
        code = error.response.json()["error"]["code"]
        assert (error.status_code, code) in (
            (402, "token_limit_reached"), (429, "rate_limit_exceeded"),
        ), error.response.text  # fmt: skip
    assert any(e.status_code == 402 for e in refused if isinstance(e, openai.APIStatusError))
    assert 1 <= len(served) <= limit // held

    records = await settled_usage(db, user.user_id, len(served))
    assert len(records) == len(served)
    used = sum(record.credits for record in records)
    plan = gateway_config().plugin.limits.for_plan("free")
    assert plan.max_parallel_requests is not None
    in_flight = min(len(served), plan.max_parallel_requests)
    assert used <= limit + in_flight * under_estimate, (used, limit, in_flight, under_estimate)

    shown = await credits(clocked, token)  # nothing held any more; used is what settled
    assert shown["used_units"] == used and shown["remaining_units"] == max(limit - used, 0)
    async with db.session() as session:
        row = await session.get(GatewayToken, await token_id(db, user, "limited"))
        assert row is not None and row.held_units == 0
    state = await money(db, user.user_id)
    assert state.reserved == 0 and state.balance == state.ledger_sum == held * 200 - used
