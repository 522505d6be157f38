"""Every model the gateway lists answers, plain and streamed, through its provider's wire
format; each answer becomes exactly one usage record and one debit at the model's price."""

from __future__ import annotations

import openai
import pytest

from portal.credits import ledger
from portal.credits.models import CauseType, EntryKind
from portal.credits.units import credits_to_units
from portal.db import Database
from portal.usage.models import CallStatus
from tests.fakes.upstream import FakeUpstream
from tests.fixtures.gateway import MakeUser, RunningGateway
from tests.gateway.support import (
    chat_model_names,
    expected_units,
    fake_completion_tokens,
    fake_prompt_tokens,
    gateway_config,
    money,
    settled_usage,
)

pytestmark = pytest.mark.gateway

SYSTEM = "You are a terse assistant."
PROMPT = "Say hello to the gateway please"
MESSAGES = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}]


async def call(client: openai.AsyncOpenAI, model: str, *, stream: bool) -> tuple[str, str]:
    """(reply text, LiteLLM call id from the response headers)."""
    raw = await client.chat.completions.with_raw_response.create(
        model=model, messages=MESSAGES, stream=stream
    )
    call_id = raw.headers["x-litellm-call-id"]
    if not stream:
        return raw.parse().choices[0].message.content or "", call_id
    pieces = [chunk.choices[0].delta.content or "" async for chunk in raw.parse() if chunk.choices]
    return "".join(pieces), call_id


async def test_every_listed_model_answers_plain_and_streamed_and_is_metered_once(
    gateway: RunningGateway, db: Database, make_user: MakeUser, fresh_upstream: FakeUpstream
) -> None:
    user = await make_user("10")
    client = gateway.async_client(user.token)
    listed = [model.id async for model in client.models.list()]
    assert sorted(listed) == gateway_config().model_names
    models = [model for model in listed if model in chat_model_names()]

    calls: dict[str, tuple[str, bool]] = {}
    providers: set[str] = set()
    for model in models:
        for stream in (False, True):
            reply, call_id = await call(client, model, stream=stream)
            assert reply == fresh_upstream.reply_text, (model, stream)
            request = fresh_upstream.requests[-1]
            assert request["stream"] is stream, (model, stream)
            providers.add(request["provider"])
            calls[call_id] = (model, stream)
    assert providers == {"openai", "anthropic", "gemini", "openrouter"}

    records = await settled_usage(db, user.user_id, len(calls))
    assert sorted(r.call_id for r in records) == sorted(calls)
    prompt_tokens = fake_prompt_tokens(SYSTEM, PROMPT)
    completion_tokens = fake_completion_tokens(fresh_upstream.reply_text)
    for record in records:
        model, stream = calls[record.call_id]
        where = f"{model} stream={stream}"
        assert record.status == CallStatus.SUCCESS, where
        assert record.model == model, where
        assert (record.prompt_tokens, record.completion_tokens) == (
            prompt_tokens,
            completion_tokens,
        ), where
        # Never free (a model missing from LiteLLM's cost map included), and at its price.
        assert record.credits > 0, where
        price = expected_units(model, prompt_tokens, completion_tokens)
        assert abs(record.credits - price) <= max(1, price // 100), (where, record.credits, price)

    state = await money(db, user.user_id)
    assert credits_to_units("10") - state.balance == sum(r.credits for r in records)
    assert state.ledger_sum == state.balance
    assert state.reserved == 0
    async with db.session() as session:
        entries = await ledger.list_entries(session, user.user_id, limit=1000)
    debits = [e for e in entries if e.kind == EntryKind.DEBIT]
    assert sorted((e.cause_type, e.cause_id, -e.amount) for e in debits) == sorted(
        (CauseType.USAGE, r.call_id, r.credits) for r in records
    )
