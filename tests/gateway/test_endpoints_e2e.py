"""Every POST route end to end (issue 8, point 1): the official SDK → gateway → fake
upstream, plain and streamed wherever the API streams.

Each call must be answered correctly and leave exactly one usage record whose tokens are
the fake upstream's deterministic counts, whose credits are the model's configured price
for those tokens (within 1%), and which equal the balance change (the ledger sums to the
balance, nothing stays reserved). `/v1/messages` is driven by the Anthropic SDK with
`base_url=<gateway>` (the token goes as `x-api-key`), for an Anthropic model and for an
OpenAI model that LiteLLM translates to.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anthropic
import pytest

from portal.credits.units import credits_to_units
from portal.db import Database
from portal.usage.models import CallStatus
from tests.fakes.upstream import EMBEDDING_DIMENSIONS, FakeUpstream, embedding_vector
from tests.fixtures.gateway import MakeUser, RunningGateway
from tests.gateway.support import (
    expected_units,
    fake_completion_tokens,
    fake_prompt_tokens,
    money,
    settled_usage,
)

pytestmark = pytest.mark.gateway

PROMPT = "Say hello to the gateway please"
REPLY = "Four short words here and then some more words to count."
OPENAI_MODEL = "gpt-4.1-nano"
EMBEDDING_MODEL = "text-embedding-3-small"
ANTHROPIC_MODEL = "claude-haiku-4-5"
FUNDS = "1"

Run = Callable[[RunningGateway, str], Awaitable[str]]


@dataclass(frozen=True)
class Case:
    name: str
    model: str
    run: Run
    completion_tokens: int
    prompt_tokens: int = fake_prompt_tokens(PROMPT)
    expected_answer: str = REPLY


async def chat(gateway: RunningGateway, token: str) -> str:
    answer = await gateway.async_client(token).chat.completions.create(
        model=OPENAI_MODEL, messages=[{"role": "user", "content": PROMPT}], max_tokens=50
    )
    assert answer.usage is not None and answer.usage.completion_tokens > 0
    return answer.choices[0].message.content or ""


async def chat_stream(gateway: RunningGateway, token: str) -> str:
    chunks = await gateway.async_client(token).chat.completions.create(
        model=OPENAI_MODEL,
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=50,
        stream=True,
    )
    parts, finishes = [], []
    async for chunk in chunks:
        for choice in chunk.choices:
            parts.append(choice.delta.content or "")
            finishes.append(choice.finish_reason)
    assert finishes[-1] == "stop"
    return "".join(parts)


async def completions(gateway: RunningGateway, token: str) -> str:
    answer = await gateway.async_client(token).completions.create(
        model=OPENAI_MODEL, prompt=PROMPT, max_tokens=50
    )
    return answer.choices[0].text


async def completions_stream(gateway: RunningGateway, token: str) -> str:
    chunks = await gateway.async_client(token).completions.create(
        model=OPENAI_MODEL, prompt=PROMPT, max_tokens=50, stream=True
    )
    return "".join([choice.text async for chunk in chunks for choice in chunk.choices])


async def embeddings(gateway: RunningGateway, token: str) -> str:
    client = gateway.async_client(token)
    answer = await client.embeddings.create(model=EMBEDDING_MODEL, input=PROMPT)
    [item] = answer.data
    assert len(item.embedding) == EMBEDDING_DIMENSIONS
    assert item.embedding == pytest.approx(embedding_vector(PROMPT), abs=1e-6)
    return "embedded"


async def responses(gateway: RunningGateway, token: str) -> str:
    answer = await gateway.async_client(token).responses.create(
        model=OPENAI_MODEL, input=PROMPT, max_output_tokens=50
    )
    assert answer.status == "completed"
    return answer.output_text


async def responses_stream(gateway: RunningGateway, token: str) -> str:
    events = await gateway.async_client(token).responses.create(
        model=OPENAI_MODEL, input=PROMPT, max_output_tokens=50, stream=True
    )
    kinds, text = [], []
    async for event in events:
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            text.append(event.delta)
    assert kinds[-1] == "response.completed"
    return "".join(text)


def anthropic_client(gateway: RunningGateway, token: str) -> anthropic.AsyncAnthropic:
    return gateway.anthropic_client(token)


def messages(model: str) -> Run:
    async def run(gateway: RunningGateway, token: str) -> str:
        answer = await anthropic_client(gateway, token).messages.create(
            model=model, max_tokens=50, messages=[{"role": "user", "content": PROMPT}]
        )
        assert answer.type == "message" and answer.stop_reason == "end_turn"
        assert answer.usage.output_tokens > 0
        return "".join(block.text for block in answer.content if block.type == "text")

    return run


def messages_stream(model: str) -> Run:
    async def run(gateway: RunningGateway, token: str) -> str:
        async with anthropic_client(gateway, token).messages.stream(
            model=model, max_tokens=50, messages=[{"role": "user", "content": PROMPT}]
        ) as stream:
            text = "".join([piece async for piece in stream.text_stream])
            final = await stream.get_final_message()
        assert final.stop_reason == "end_turn"
        assert text == "".join(b.text for b in final.content if b.type == "text")
        return text

    return run


REPLY_TOKENS = fake_completion_tokens(REPLY)
CASES = [
    Case("chat", OPENAI_MODEL, chat, REPLY_TOKENS),
    Case("chat-stream", OPENAI_MODEL, chat_stream, REPLY_TOKENS),
    Case("completions", OPENAI_MODEL, completions, REPLY_TOKENS),
    Case("completions-stream", OPENAI_MODEL, completions_stream, REPLY_TOKENS),
    Case(
        "embeddings",
        EMBEDDING_MODEL,
        embeddings,
        0,
        prompt_tokens=len(PROMPT.split()),  # words only, no per-item overhead
        expected_answer="embedded",
    ),
    Case("responses", OPENAI_MODEL, responses, REPLY_TOKENS),
    Case("responses-stream", OPENAI_MODEL, responses_stream, REPLY_TOKENS),
    Case("messages-anthropic", ANTHROPIC_MODEL, messages(ANTHROPIC_MODEL), REPLY_TOKENS),
    Case(
        "messages-stream-anthropic",
        ANTHROPIC_MODEL,
        messages_stream(ANTHROPIC_MODEL),
        REPLY_TOKENS,
    ),
    Case("messages-openai", OPENAI_MODEL, messages(OPENAI_MODEL), REPLY_TOKENS),
    Case("messages-stream-openai", OPENAI_MODEL, messages_stream(OPENAI_MODEL), REPLY_TOKENS),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_every_post_route_answers_and_settles_exactly_once(
    gateway: RunningGateway,
    db: Database,
    make_user: MakeUser,
    fresh_upstream: FakeUpstream,
    case: Case,
) -> None:
    fresh_upstream.reply_text = REPLY
    user = await make_user(FUNDS)

    assert await case.run(gateway, user.token) == case.expected_answer
    [upstream_call] = [r for r in fresh_upstream.requests if r["body"]]
    assert upstream_call["model"].endswith(case.model)  # routed to the model asked for

    [record] = await settled_usage(db, user.user_id, 1)
    assert record.status == CallStatus.SUCCESS and record.model == case.model
    assert (record.prompt_tokens, record.completion_tokens) == (
        case.prompt_tokens,
        case.completion_tokens,
    )
    expected = expected_units(case.model, case.prompt_tokens, case.completion_tokens)
    assert expected > 0
    assert abs(record.credits - expected) <= expected / 100, (record.credits, expected)

    state = await money(db, user.user_id)
    assert credits_to_units(FUNDS) - state.balance == record.credits
    assert state.ledger_sum == state.balance and state.reserved == 0
