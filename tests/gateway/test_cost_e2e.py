"""Cost on every answer (issue 20, item 2), end to end: the official `openai` and
`anthropic` SDKs against the real gateway process and the fake upstream.

- Every answer that has a `usage` object carries `cost` (credits, a decimal string as
  `/v1/credits` writes them) and `cost_units`, equal to what the call's usage row says was
  debited (and so to the balance change); plain answers also say it in `x-credits-charged`.
  Streams say it in their final usage event: the usage chunk, Anthropic's `message_delta`,
  `response.completed`. The SDKs parse every one of these answers.
- `GET /v1/calls/{call_id}` shows the row to the token that made the call; any other token
  (the same user's too) and an unknown id get the same 404.
- `/v1/models` lists each model's price per million tokens of each kind (after markup),
  context length and output cap; a call costs what those prices say.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from gateway_plugins.charges import COST_HEADER
from portal.accounts.models import User
from portal.credits.units import UNITS_PER_CREDIT, credits_to_units, format_units
from portal.db import Database
from portal.tokens.service import create_token
from portal.usage.models import UsageRecord
from tests.fakes.upstream import FakeUpstream
from tests.fixtures.gateway import (
    MakeUser,
    RunningGateway,
    start_configured_gateway,
    stop_gateway,
)
from tests.gateway.support import gateway_config, money, settled_usage

pytestmark = pytest.mark.gateway

PROMPT = "What does this call cost, please?"
REPLY = "It costs a few credits and the answer says exactly how many of them."
OPENAI_MODEL = "gpt-4.1-nano"
ANTHROPIC_MODEL = "claude-haiku-4-5"
EMBEDDING_MODEL = "text-embedding-3-small"
MESSAGES = [{"role": "user", "content": PROMPT}]


@dataclass
class Charged:
    """What the answer said the call cost: its usage's `cost` and `cost_units`, and the
    `x-credits-charged` header (plain answers only)."""

    cost: Any
    cost_units: Any
    header: str | None = None


Run = Callable[[RunningGateway, str], Awaitable[Charged]]


def _charged(usage: Any, header: str | None = None) -> Charged:
    """The charge from an SDK usage object (the SDKs keep unknown fields as extras)."""
    assert usage is not None
    return Charged(getattr(usage, "cost", None), getattr(usage, "cost_units", None), header)


async def chat(gateway: RunningGateway, token: str) -> Charged:
    raw = await gateway.async_client(token).chat.completions.with_raw_response.create(
        model=OPENAI_MODEL, messages=MESSAGES, max_tokens=50
    )
    answer = raw.parse()
    assert answer.choices[0].message.content == REPLY
    return _charged(answer.usage, raw.headers.get(COST_HEADER))


async def chat_stream(gateway: RunningGateway, token: str) -> Charged:
    chunks = await gateway.async_client(token).chat.completions.create(
        model=OPENAI_MODEL,
        messages=MESSAGES,
        max_tokens=50,
        stream=True,
        stream_options={"include_usage": True},
    )
    received = [chunk async for chunk in chunks]
    text = "".join(c.delta.content or "" for chunk in received for c in chunk.choices)
    assert text == REPLY
    assert received[-1].usage is not None and received[-1].choices == []  # the final chunk
    return _charged(received[-1].usage)


async def completions(gateway: RunningGateway, token: str) -> Charged:
    raw = await gateway.async_client(token).completions.with_raw_response.create(
        model=OPENAI_MODEL, prompt=PROMPT, max_tokens=50
    )
    answer = raw.parse()
    assert answer.choices[0].text == REPLY
    return _charged(answer.usage, raw.headers.get(COST_HEADER))


async def completions_stream(gateway: RunningGateway, token: str) -> Charged:
    chunks = await gateway.async_client(token).completions.create(
        model=OPENAI_MODEL,
        prompt=PROMPT,
        max_tokens=50,
        stream=True,
        stream_options={"include_usage": True},
    )
    received = [chunk async for chunk in chunks]
    assert "".join(c.text for chunk in received for c in chunk.choices) == REPLY
    assert received[-1].usage is not None
    return _charged(received[-1].usage)


async def embeddings(gateway: RunningGateway, token: str) -> Charged:
    raw = await gateway.async_client(token).embeddings.with_raw_response.create(
        model=EMBEDDING_MODEL, input=PROMPT
    )
    answer = raw.parse()
    assert len(answer.data) == 1 and answer.data[0].embedding
    return _charged(answer.usage, raw.headers.get(COST_HEADER))


async def responses(gateway: RunningGateway, token: str) -> Charged:
    raw = await gateway.async_client(token).responses.with_raw_response.create(
        model=OPENAI_MODEL, input=PROMPT, max_output_tokens=50
    )
    answer = raw.parse()
    assert answer.status == "completed" and answer.output_text == REPLY
    return _charged(answer.usage, raw.headers.get(COST_HEADER))


async def responses_stream(gateway: RunningGateway, token: str) -> Charged:
    events = await gateway.async_client(token).responses.create(
        model=OPENAI_MODEL, input=PROMPT, max_output_tokens=50, stream=True
    )
    received = [event async for event in events]
    assert received[-1].type == "response.completed"
    assert received[-1].response.output_text == REPLY
    return _charged(received[-1].response.usage)


def messages(model: str) -> Run:
    async def run(gateway: RunningGateway, token: str) -> Charged:
        raw = await gateway.anthropic_client(token).messages.with_raw_response.create(
            model=model, max_tokens=50, messages=MESSAGES
        )
        answer = await raw.parse()  # the Anthropic SDK's async parse
        assert answer.stop_reason == "end_turn"
        assert "".join(b.text for b in answer.content if b.type == "text") == REPLY
        return _charged(answer.usage, raw.headers.get(COST_HEADER))

    return run


def messages_stream(model: str) -> Run:
    async def run(gateway: RunningGateway, token: str) -> Charged:
        async with gateway.anthropic_client(token).messages.stream(
            model=model, max_tokens=50, messages=MESSAGES
        ) as stream:
            received = [event async for event in stream]
            final = await stream.get_final_message()
        assert final.stop_reason == "end_turn"
        assert "".join(b.text for b in final.content if b.type == "text") == REPLY
        kinds = [event.type for event in received]
        assert kinds[-2:] == ["message_delta", "message_stop"], kinds
        [delta] = [event for event in received if event.type == "message_delta"]
        assert delta.usage.output_tokens == final.usage.output_tokens > 0
        return _charged(delta.usage)

    return run


CASES: dict[str, Run] = {
    "chat": chat,
    "chat-stream": chat_stream,
    "completions": completions,
    "completions-stream": completions_stream,
    "embeddings": embeddings,
    "responses": responses,
    "responses-stream": responses_stream,
    "messages-anthropic": messages(ANTHROPIC_MODEL),
    "messages-stream-anthropic": messages_stream(ANTHROPIC_MODEL),
    "messages-openai": messages(OPENAI_MODEL),
    "messages-stream-openai": messages_stream(OPENAI_MODEL),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_every_answer_says_what_the_call_was_debited(
    gateway: RunningGateway,
    db: Database,
    make_user: MakeUser,
    fresh_upstream: FakeUpstream,
    case: str,
) -> None:
    fresh_upstream.reply_text = REPLY
    user = await make_user("1")

    charged = await CASES[case](gateway, user.token)

    [record] = await settled_usage(db, user.user_id, 1)
    assert record.credits > 0
    assert charged.cost_units == record.credits, (charged, record.credits)
    assert charged.cost == format_units(record.credits)
    assert credits_to_units(charged.cost) == record.credits  # a decimal string of credits
    if "stream" not in case:
        assert charged.header == charged.cost
    state = await money(db, user.user_id)
    assert credits_to_units("1") - state.balance == charged.cost_units  # what left the balance


async def test_a_stream_without_usage_asked_for_still_ends_as_before(
    gateway: RunningGateway, db: Database, make_user: MakeUser, fresh_upstream: FakeUpstream
) -> None:
    """No `include_usage`: no usage chunk is added (the charge is in `/v1/calls/{id}`)."""
    fresh_upstream.reply_text = REPLY
    user = await make_user("1")
    async with (
        httpx.AsyncClient(base_url=gateway.url, timeout=60) as client,
        client.stream(
            "POST",
            "/v1/chat/completions",
            json={"model": OPENAI_MODEL, "messages": MESSAGES, "max_tokens": 50, "stream": True},
            headers={"Authorization": f"Bearer {user.token}"},
        ) as response,
    ):
        body = (await response.aread()).decode()
        call_id = response.headers["x-litellm-call-id"]
    assert body.endswith("data: [DONE]\n\n") and '"usage"' not in body
    [record] = await settled_usage(db, user.user_id, 1)
    assert record.call_id == call_id


# --------------------------------------------------------------------- GET /v1/calls/{id}


async def _get_call(gateway: RunningGateway, call_id: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        return await client.get(f"/v1/calls/{call_id}", headers=headers)


async def test_a_call_is_shown_to_the_token_that_made_it_and_to_no_other(
    gateway: RunningGateway, db: Database, make_user: MakeUser, fresh_upstream: FakeUpstream
) -> None:
    fresh_upstream.reply_text = REPLY
    fresh_upstream.usage_extra = {"cached_tokens": 4, "reasoning_tokens": 3}
    alice, bob = await make_user("1"), await make_user("1")
    async with db.transaction() as session:  # alice's second token
        alice_row = await session.get(User, alice.user_id)
        assert alice_row is not None
        other_token, _row = await create_token(session, alice_row, name="laptop")

    raw = await gateway.async_client(alice.token).chat.completions.with_raw_response.create(
        model=OPENAI_MODEL, messages=MESSAGES, max_tokens=50
    )
    answer = raw.parse()
    call_id = raw.headers["x-litellm-call-id"]
    [record] = await settled_usage(db, alice.user_id, 1)

    shown = await _get_call(gateway, call_id, alice.token)
    assert shown.status_code == 200, shown.text
    card = shown.json()
    assert card == expected_card(record)
    assert card["usage"]["cost"] == answer.usage.cost  # type: ignore[union-attr]
    assert card["usage"]["cost"] == raw.headers[COST_HEADER]
    assert card["usage"]["cached_tokens"] == 4 and card["usage"]["reasoning_tokens"] == 3
    assert card["usage"]["prompt_tokens"] == answer.usage.prompt_tokens  # type: ignore[union-attr]

    # Another user's token, the same user's other token, an unknown id: one same 404.
    refusals = [
        await _get_call(gateway, call_id, bob.token),
        await _get_call(gateway, call_id, other_token),
        await _get_call(gateway, "00000000-0000-4000-8000-000000000000", alice.token),
        await _get_call(gateway, call_id[:-1] + ("0" if call_id[-1] != "0" else "1"), alice.token),
        await _get_call(gateway, "x" * 300, alice.token),
    ]
    assert {r.status_code for r in refusals} == {404}
    assert len({r.content for r in refusals}) == 1, [r.text for r in refusals]
    assert refusals[0].json()["error"]["code"] == "call_not_found"
    assert call_id not in refusals[0].text and "bob" not in refusals[0].text
    # No token, or a made-up one: 401, as every route.
    for token in (None, "wfg_" + "0" * 43):
        refused = await _get_call(gateway, call_id, token)
        assert refused.status_code == 401
        assert "usage" not in refused.text
    assert fresh_upstream.calls_served == 1  # reading a call calls nothing upstream


async def test_a_refused_call_says_it_cost_nothing_and_its_row_says_why(
    gateway: RunningGateway, db: Database, make_user: MakeUser, fresh_upstream: FakeUpstream
) -> None:
    """An upstream's own 400 answers the caller's error, with the charge (none) in the
    header; the failed call's row is readable by its call id."""
    user = await make_user("1")
    fresh_upstream.fail_next(400, "the upstream refuses this request")
    client = gateway.async_client(user.token)
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES, max_tokens=5)
    headers = caught.value.response.headers
    assert headers[COST_HEADER] == "0"
    shown = (await _get_call(gateway, headers["x-litellm-call-id"], user.token)).json()
    assert (shown["status"], shown["http_status"]) == ("failed", 400)
    assert shown["usage"]["cost"] == "0" and shown["usage"]["cost_units"] == 0
    assert (await money(db, user.user_id)).balance == credits_to_units("1")


def expected_card(record: UsageRecord) -> dict[str, Any]:
    return {
        "object": "call",
        "id": record.call_id,
        "model": record.model,
        "status": "success",
        "http_status": 200,
        "error_type": None,
        "usage": {
            "prompt_tokens": record.prompt_tokens,
            "completion_tokens": record.completion_tokens,
            "total_tokens": record.prompt_tokens + record.completion_tokens,
            "cached_tokens": record.cached_tokens,
            "reasoning_tokens": record.reasoning_tokens,
            "cost": format_units(record.credits),
            "cost_units": record.credits,
        },
        "started_at": record.started_at.isoformat(),
        "ended_at": record.ended_at.isoformat(),
    }


# ------------------------------------------------------------------------- /v1/models


def per_million(usd_per_token: Decimal, markup: Decimal, usd_per_credit: Decimal) -> Decimal:
    return usd_per_token * 1_000_000 * markup / usd_per_credit


async def test_models_list_prices_context_and_output_cap(
    gateway: RunningGateway, make_user: MakeUser, fresh_upstream: FakeUpstream
) -> None:
    user = await make_user("1")
    listed = {m.id: m async for m in gateway.async_client(user.token).models.list()}
    config = gateway_config()
    assert set(listed) == set(config.model_names)
    for name, model in listed.items():
        pricing = model.pricing  # type: ignore[attr-defined]
        price = config.prices.price_of(name)
        assert price is not None
        assert set(pricing) == {"input", "cached_input", "cache_write", "output"}
        assert Decimal(pricing["input"]) == price.input_per_token * 1_000_000, name
        assert Decimal(pricing["output"]) == price.output_per_token * 1_000_000, name
        assert Decimal(pricing["cached_input"]) <= Decimal(pricing["input"]) or name.startswith(
            "openrouter"
        )
    nano = listed[OPENAI_MODEL]
    assert nano.pricing == {  # type: ignore[attr-defined]  # LiteLLM's map, US$ = credits
        "input": "0.1",
        "cached_input": "0.025",
        "cache_write": "0.1",
        "output": "0.4",
    }
    assert (nano.context_length, nano.max_output_tokens) == (1047576, 32768)  # type: ignore[attr-defined]
    claude = listed[ANTHROPIC_MODEL]
    assert claude.pricing == {  # type: ignore[attr-defined]
        "input": "1",
        "cached_input": "0.1",
        "cache_write": "1.25",
        "output": "5",
    }
    assert (claude.context_length, claude.max_output_tokens) == (200000, 64000)  # type: ignore[attr-defined]
    embedding = listed[EMBEDDING_MODEL]
    assert embedding.max_output_tokens is None and embedding.context_length == 8191  # type: ignore[attr-defined]
    # config.yaml's own price, for a model LiteLLM's map does not know: no cache discount
    routed = listed["openrouter-gpt-4o-mini"]
    assert routed.pricing == {  # type: ignore[attr-defined]
        "input": "0.15",
        "cached_input": "0.15",
        "cache_write": "0.15",
        "output": "0.6",
    }
    one = await gateway.async_client(user.token).models.retrieve(OPENAI_MODEL)
    assert one.model_dump() == nano.model_dump()
    assert fresh_upstream.requests == []


MARKUP = Decimal("1.5")
USD_PER_CREDIT = Decimal("0.5")


@pytest.fixture(scope="module")
def marked_up_gateway(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A gateway of its own whose credits cost 3x the upstream's dollars."""
    work_dir: Path = tmp_path_factory.mktemp("marked-up-gateway")
    running = start_configured_gateway(
        upstream,
        work_dir,
        {"workforce_gateway": {"credits": {"markup": 1.5, "usd_per_credit": 0.5}}},
    )
    yield running
    stop_gateway(running)


async def test_a_call_costs_what_models_says_after_markup(
    marked_up_gateway: RunningGateway, fresh_upstream: FakeUpstream
) -> None:
    """Prices in `/v1/models` are after markup, and a call (cached input included) is
    debited exactly what they say for its tokens."""
    from portal.db import open_database
    from tests.fixtures.gateway import funded_user

    gateway = marked_up_gateway
    database = open_database(gateway.database_url)
    try:
        user = await funded_user(database, units=credits_to_units("5"))
        client = gateway.async_client(user.token)
        pricing = (await client.models.retrieve(OPENAI_MODEL)).pricing  # type: ignore[attr-defined]
        price = gateway_config().prices.price_of(OPENAI_MODEL)
        assert price is not None
        assert Decimal(pricing["input"]) == per_million(
            price.input_per_token, MARKUP, USD_PER_CREDIT
        )
        assert Decimal(pricing["cached_input"]) == per_million(
            price.cached_input_rate, MARKUP, USD_PER_CREDIT
        )

        fresh_upstream.reply_text = REPLY
        fresh_upstream.usage_extra = {"cached_tokens": 5}
        raw = await client.chat.completions.with_raw_response.create(
            model=OPENAI_MODEL, messages=MESSAGES, max_tokens=50
        )
        usage = raw.parse().usage
        assert usage is not None and usage.prompt_tokens_details is not None
        cached = usage.prompt_tokens_details.cached_tokens or 0
        assert cached == 5
        credits = (
            (usage.prompt_tokens - cached) * Decimal(pricing["input"])
            + cached * Decimal(pricing["cached_input"])
            + usage.completion_tokens * Decimal(pricing["output"])
        ) / 1_000_000
        expected_units = int(credits * UNITS_PER_CREDIT)
        assert abs(usage.cost_units - expected_units) <= 1, (usage.cost_units, expected_units)  # type: ignore[attr-defined]
        assert raw.headers[COST_HEADER] == usage.cost  # type: ignore[attr-defined]
        [record] = await settled_usage(database, user.user_id, 1)
        assert record.credits == usage.cost_units  # type: ignore[attr-defined]
    finally:
        await database.dispose()
