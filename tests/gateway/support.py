"""Helpers shared by the end-to-end gateway tests.

- `settled_usage` polls the database until a user's calls are settled (settlement runs
  in LiteLLM's success callback, just after the client got its answer), never sleeps blind;
- `money` reads a user's balance, reservations and ledger sum in one go;
- `fake_prompt_tokens` / `fake_completion_tokens` are the fake upstream's deterministic
  token counts (tests/fakes/upstream.py docstring);
- `expected_units` prices token counts with the gateway's own price book and credit rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any

import httpx
import openai
from sqlalchemy import select

from portal.credits import ledger
from portal.credits.models import CreditAccount
from portal.credits.pricing import PricedConfig, load_priced_config
from portal.credits.units import usd_to_units
from portal.db import Database
from portal.settings import PROJECT_ROOT
from portal.usage.models import UsageRecord
from portal.usage.service import list_usage
from tests.fixtures.gateway import RunningGateway

__all__ = [
    "Money",
    "expected_units",
    "fake_completion_tokens",
    "fake_prompt_tokens",
    "gateway_config",
    "money",
    "settled_usage",
    "usd_units",
]

PER_MESSAGE_TOKENS = 3


@dataclass(frozen=True)
class Money:
    balance: int
    reserved: int
    ledger_sum: int


async def money(db: Database, user_id: str) -> Money:
    async with db.transaction() as session:
        row = (
            await session.execute(
                select(CreditAccount.balance, CreditAccount.reserved).where(
                    CreditAccount.user_id == user_id
                )
            )
        ).one()
        total = await ledger.ledger_sum(session, user_id)
    return Money(balance=int(row.balance), reserved=int(row.reserved), ledger_sum=total)


async def settled_usage(
    db: Database, user_id: str, count: int, *, wait_seconds: float = 30.0
) -> list[UsageRecord]:
    """All of the user's usage records, once there are at least `count` and no credits
    are reserved any more (every call in flight has settled). Fails after `wait_seconds`."""
    deadline = time.monotonic() + wait_seconds
    delay = 0.02
    while True:
        async with db.session() as session:
            records = await list_usage(session, user_id)
        state = await money(db, user_id)
        if len(records) >= count and state.reserved == 0:
            return records
        if time.monotonic() > deadline:
            raise AssertionError(
                f"after {wait_seconds}s: {len(records)} usage records (expected {count}), "
                f"{state.reserved} units still reserved"
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.25)


def fake_prompt_tokens(*texts: str) -> int:
    """Prompt tokens the fake upstream reports for plain-string messages."""
    return sum(len(text.split()) + PER_MESSAGE_TOKENS for text in texts)


def fake_completion_tokens(reply_text: str, reasoning_tokens: int = 0) -> int:
    return len(reply_text.split()) + reasoning_tokens


@cache
def gateway_config() -> PricedConfig:
    """The config.yaml the session gateway runs with (prices from it / LiteLLM's map)."""
    return load_priced_config(PROJECT_ROOT / "config.yaml", require_prices=False)


def chat_model_names() -> list[str]:
    """The session gateway's models that generate text (embedding models answer only
    /v1/embeddings)."""
    from gateway_plugins.targets import targets_of

    config = gateway_config()
    targets = targets_of(config.raw)
    return [name for name in config.model_names if not targets[name].embedding]


def usd_units(cost_usd: Decimal) -> int:
    """Ledger units charged for an upstream cost, with the configured markup."""
    credits = gateway_config().plugin.credits
    return usd_to_units(cost_usd, usd_per_credit=credits.usd_per_credit, markup=credits.markup)


def expected_units(model: str, prompt_tokens: int, completion_tokens: int) -> int:
    """What a call with these token counts costs at the model's configured price."""
    price = gateway_config().prices.price_of(model)
    assert price is not None, f"{model} has no price in config.yaml / LiteLLM's cost map"
    return usd_units(price.cost_usd(prompt_tokens, completion_tokens))


STREAM_PATHS = {
    "chat": "/v1/chat/completions",
    "messages": "/v1/messages",
    "responses": "/v1/responses",
}


def stream_request(api: str, model: str, prompt: str, max_tokens: int = 400) -> dict[str, Any]:
    """The JSON body of a streamed call on `api` (chat, messages or responses), capped at
    `max_tokens` output tokens, for tests that read the raw SSE bytes."""
    if api == "responses":
        return {"model": model, "input": prompt, "max_output_tokens": max_tokens, "stream": True}
    messages = [{"role": "user", "content": prompt}]
    return {"model": model, "messages": messages, "max_tokens": max_tokens, "stream": True}


@contextlib.asynccontextmanager
async def streamed_response(
    gateway: RunningGateway, token: str, api: str, body: dict[str, Any]
) -> AsyncIterator[httpx.Response]:
    """The raw HTTP response of a streamed call on `api` (no SDK in between), open until
    the block ends: leaving the block early closes the connection, as a client leaving."""
    async with (
        httpx.AsyncClient(base_url=gateway.url, timeout=60) as client,
        client.stream(
            "POST", STREAM_PATHS[api], json=body, headers={"Authorization": f"Bearer {token}"}
        ) as response,
    ):
        yield response


async def chat_reply(
    client: openai.AsyncOpenAI,
    *,
    model: str,
    messages: list[dict[str, Any]],
    max_tokens: int,
    stream: bool = False,
) -> str:
    """One chat call through the official SDK, plain or streamed: the reply's text (the
    SDK's error is raised when the gateway refuses)."""
    if not stream:
        reply = await client.chat.completions.create(
            model=model,
            messages=messages,  # type: ignore[arg-type]
            max_tokens=max_tokens,
        )
        return reply.choices[0].message.content or ""
    chunks = await client.chat.completions.create(
        model=model,
        messages=messages,  # type: ignore[arg-type]
        max_tokens=max_tokens,
        stream=True,
    )
    return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
