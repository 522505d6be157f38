"""The overspend bound, proven per endpoint (issue 19.4): 50 concurrent calls from a user
holding 0.01 credits, on chat completions, text completions, messages, responses and
embeddings — text, and images by URL that the upstream bills at thousands of tokens —
against the real gateway process and the wire-format fakes (which stop at the output cap
they are sent and bill each image as a provider does).

docs/security.md ("Reservations and the overspend bound") states the bound: with k calls
in flight, the balance ends at most k × max(0, P − f·P̂)·p_in·m/u (+1 unit of rounding per
call) below zero, P the prompt the upstream billed, P̂ the gateway's count (text counted
by the tokenizer, each image at its ceiling, `credits.image_tokens`), f the estimate
factor, p_in the input price at the model's own rate. The test computes exactly that from
the usage rows and checks the final balance against it; every reply stopped at the cap
reserved (no `max_tokens` reserves and sends `default_max_tokens`). Before the image
ceilings an image was reserved as ~90 tokens and billed 2,833 (gpt-4o-mini, low detail):
the balance fell far below the bound. References whose size cannot be bounded are
refused (400) before anything is held: a Gemini Files-API/`gs://` file, a Claude document
by URL.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import anthropic
import openai
import pytest

from gateway_plugins import token_counting
from portal.credits.units import credits_to_units
from portal.db import Database
from tests.fakes.upstream import FakeUpstream
from tests.fixtures.gateway import Closing, RunningGateway, funded_user
from tests.gateway.accounting import debits_by_call
from tests.gateway.support import gateway_config, money, settled_usage, usd_units

pytestmark = pytest.mark.gateway

CALLS = 50
BALANCE = credits_to_units("0.01")
REPLY = " ".join(f"w{i}" for i in range(6000))  # longer than any cap below
TEXT = "Summarise the history of the printing press in three paragraphs, please."
IMAGE_URL = "https://images.example.com/photo.png"  # fetched by the upstream, never by us

Send = Callable[[openai.AsyncOpenAI, anthropic.AsyncAnthropic], Awaitable[Any]]


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # the endpoint, as the gateway names it
    model: str
    body: dict[str, Any]  # what the client sends besides `model`
    cap: int  # the output tokens reserved and sent upstream
    image_tokens: int = 0  # what the fake upstream bills per image
    send: Send = field(default=lambda o, a: asyncio.sleep(0), compare=False)


def _chat(case_body: dict[str, Any], model: str) -> Send:
    return lambda o, a: o.chat.completions.create(model=model, **case_body)


def _completions(case_body: dict[str, Any], model: str) -> Send:
    return lambda o, a: o.completions.create(model=model, **case_body)


def _messages(case_body: dict[str, Any], model: str) -> Send:
    return lambda o, a: a.messages.create(model=model, **case_body)


def _responses(case_body: dict[str, Any], model: str) -> Send:
    return lambda o, a: o.responses.create(model=model, **case_body)


def _embeddings(case_body: dict[str, Any], model: str) -> Send:
    return lambda o, a: o.embeddings.create(model=model, **case_body)


def case(name: str, kind: str, model: str, body: dict[str, Any], cap: int, **kw: Any) -> Case:
    make = {"chat": _chat, "completions": _completions, "messages": _messages,
            "responses": _responses, "embeddings": _embeddings}[kind]  # fmt: skip
    return Case(name, kind, model, body, cap, send=make(body, model), **kw)


DEFAULT_CAP = gateway_config().plugin.credits.default_max_tokens
CHAT_IMAGE = [{"type": "text", "text": TEXT},
              {"type": "image_url", "image_url": {"url": IMAGE_URL, "detail": "low"}}]  # fmt: skip
CLAUDE_IMAGE = [{"type": "text", "text": TEXT},
                {"type": "image", "source": {"type": "url", "url": IMAGE_URL}}]  # fmt: skip
RESPONSES_IMAGE = [{"role": "user", "content": [
    {"type": "input_text", "text": TEXT},
    {"type": "input_image", "image_url": IMAGE_URL}]}]  # fmt: skip

CASES = [
    # No max_tokens: default_max_tokens is reserved and sent, and the reply stops there.
    case("chat", "chat", "gpt-4o-mini",
         {"messages": [{"role": "user", "content": TEXT}]}, DEFAULT_CAP),
    case("chat-image-url", "chat", "gpt-4o-mini",
         {"messages": [{"role": "user", "content": CHAT_IMAGE}], "max_tokens": 100}, 100,
         image_tokens=2833),  # gpt-4o-mini bills a low-detail image as 2,833 tokens
    case("completions", "completions", "gpt-4.1-nano", {"prompt": TEXT}, DEFAULT_CAP),
    case("messages", "messages", "claude-haiku-4-5",
         {"messages": [{"role": "user", "content": TEXT}], "max_tokens": 500}, 500),
    case("messages-image-url", "messages", "claude-haiku-4-5",
         {"messages": [{"role": "user", "content": CLAUDE_IMAGE}], "max_tokens": 100}, 100,
         image_tokens=1590),  # a 1,092 x 1,092 image: 1,590 tokens
    case("responses", "responses", "gpt-4.1-nano", {"input": TEXT}, DEFAULT_CAP),
    case("responses-image-url", "responses", "gpt-4.1-nano",
         {"input": RESPONSES_IMAGE, "max_output_tokens": 100}, 100,
         image_tokens=3000),
    case("embeddings", "embeddings", "text-embedding-3-small", {"input": TEXT}, 0),
]  # fmt: skip


# The per-image ceiling docs/security.md states for each case's model (config.yaml's
# `credits.image_tokens`: the group's own entry, else its provider's; the chat case sends
# its image at `detail: "low"`: `credits.low_detail_image_tokens`).
CEILING_KEY = {"gpt-4o-mini": "openai", "claude-haiku-4-5": "anthropic",
               "gpt-4.1-nano": "gpt-4.1-nano"}  # fmt: skip
LOW_DETAIL_CASES = {"chat-image-url"}


async def reserved_prompt(case: Case) -> int:
    """P̂ as the docs state it: the text as the tokenizer counts it, plus each image (one
    per image case) at the stated ceiling of the model's provider."""
    config = gateway_config()
    params = {"model": case.model, **case.body}
    counted = await token_counting.prompt_tokens(case.kind, params, config.plugin.limits)
    if not case.image_tokens:
        return counted
    credits = config.plugin.credits
    ceilings = (
        credits.low_detail_image_tokens if case.name in LOW_DETAIL_CASES else credits.image_tokens
    )
    return counted + ceilings[CEILING_KEY[case.model]]


def under_estimate_units(model: str, billed_prompt: int, reserved_prompt: int) -> int:
    """max(0, P − f·P̂)·p_in·m/u, +1 unit of rounding: what one call may cost beyond its
    hold (docs/security.md)."""
    config = gateway_config()
    price = config.prices.price_of(model)
    assert price is not None
    padded = math.ceil(reserved_prompt * config.plugin.credits.input_estimate_factor)
    missing = max(0, billed_prompt - padded)
    return usd_units(price.cost_usd(missing, 0)) + 1


async def one(case: Case, o: openai.AsyncOpenAI, a: anthropic.AsyncAnthropic) -> Exception | None:
    try:
        await case.send(o, a)
    except (openai.APIStatusError, anthropic.APIStatusError) as refused:
        return refused
    return None


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_fifty_concurrent_calls_from_a_cent_stay_within_the_stated_bound(
    gateway: RunningGateway,
    db: Database,
    fresh_upstream: FakeUpstream,
    closing: Closing,
    case: Case,
) -> None:
    fresh_upstream.reply_text = REPLY
    fresh_upstream.usage_extra = {"image_tokens": case.image_tokens}
    user = await funded_user(db, units=BALANCE)
    o = closing(gateway.async_client(user.token, timeout=180))
    a = closing(gateway.anthropic_client(user.token, timeout=180))

    outcomes = await asyncio.gather(*(one(case, o, a) for _ in range(CALLS)))

    refused = [e for e in outcomes if e is not None]
    served = CALLS - len(refused)
    for error in refused:  # no credit left (402), or every slot of the plan taken (429)
        assert getattr(error, "status_code", None) in (402, 429), repr(error)
    assert served >= 1, [str(e)[:200] for e in refused[:3]]
    records = await settled_usage(db, user.user_id, served, wait_seconds=120)
    assert len(records) == served
    assert await debits_by_call(db, user.user_id) == {r.call_id: 1 for r in records}
    for record in records:  # the reply stopped at the cap that was reserved
        assert record.completion_tokens == case.cap, (record.completion_tokens, case.cap)

    plan = gateway_config().plugin.limits.for_plan("free")
    assert plan.max_parallel_requests is not None
    in_flight = min(served, plan.max_parallel_requests)
    estimate = await reserved_prompt(case)
    per_call = max(under_estimate_units(case.model, r.prompt_tokens, estimate) for r in records)
    bound = in_flight * per_call
    state = await money(db, user.user_id)
    assert state.reserved == 0
    assert state.balance == BALANCE - sum(r.credits for r in records) == state.ledger_sum
    assert state.balance >= -bound, (state.balance, bound, served)


REFUSED_REFERENCES = [
    pytest.param(
        "gemini-2.5-flash",
        [{"type": "text", "text": TEXT},
         {"type": "file", "file": {"file_id": "gs://bucket/video.mp4", "format": "video/mp4"}}],
        id="gemini-gs-video",
    ),
    pytest.param(
        "claude-haiku-4-5",
        [{"type": "text", "text": TEXT},
         {"type": "file", "file": {"file_id": "https://docs.example.com/report.pdf"}}],
        id="chat-file-by-url",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("model", "content"), REFUSED_REFERENCES)
async def test_references_whose_size_cannot_be_bounded_are_refused_before_any_hold(
    gateway: RunningGateway,
    db: Database,
    fresh_upstream: FakeUpstream,
    closing: Closing,
    model: str,
    content: list[dict[str, Any]],
) -> None:
    user = await funded_user(db, units=BALANCE)
    client = closing(gateway.async_client(user.token))
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": content}],  # type: ignore[misc,list-item]
        )
    assert "messages[0].content[1]" in str(refused.value.body)
    claude = closing(gateway.anthropic_client(user.token))
    document = {
        "type": "document",
        "source": {"type": "url", "url": "https://docs.example.com/a.pdf"},
    }
    with pytest.raises(anthropic.BadRequestError):
        await claude.messages.create(
            model="claude-haiku-4-5", max_tokens=100,
            messages=[{"role": "user", "content": [document]}],  # type: ignore[list-item]
        )  # fmt: skip
    assert fresh_upstream.calls_served == 0
    state = await money(db, user.user_id)
    assert (state.balance, state.reserved) == (BALANCE, 0)
    assert Decimal(state.balance) == Decimal(BALANCE)
