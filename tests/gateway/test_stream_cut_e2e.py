"""A stream the client abandons is still metered — read on after the client left, and
settled from the usage the upstream reports — and its reservation is released, on every
model."""

from __future__ import annotations

import pytest

from portal.db import Database
from portal.usage.models import CallStatus
from tests.fakes.upstream import FakeUpstream
from tests.fixtures.gateway import MakeUser, RunningGateway
from tests.gateway.support import chat_model_names, money, settled_usage

pytestmark = pytest.mark.gateway

MESSAGES = [{"role": "user", "content": "Tell me a long story"}]
REPLY_WORDS = 40


async def test_streams_cut_by_the_client_are_metered_and_released(
    gateway: RunningGateway, db: Database, make_user: MakeUser, fresh_upstream: FakeUpstream
) -> None:
    fresh_upstream.reply_text = " ".join(f"chapter{i}" for i in range(REPLY_WORDS))
    fresh_upstream.chunk_delay = 0.02  # most of the reply comes after the client left
    user = await make_user("1")
    client = gateway.async_client(user.token)
    models = chat_model_names()

    for model in models:
        stream = await client.chat.completions.create(
            model=model, messages=MESSAGES, max_tokens=200, stream=True
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                break
        await stream.close()

    records = await settled_usage(db, user.user_id, len(models))
    assert fresh_upstream.calls_served == len(models)  # every stream was read to its end
    assert sorted(r.model for r in records) == sorted(models)
    for record in records:
        assert record.status == CallStatus.INCOMPLETE, record.model
        assert record.completion_tokens == REPLY_WORDS, record.model  # the upstream's usage
        assert record.credits > 0, record.model
    state = await money(db, user.user_id)
    assert state.reserved == 0
    assert state.balance == 10**9 - sum(r.credits for r in records) == state.ledger_sum
