"""Smoke: the openai SDK gets an answer through the real proxy, and it is metered."""

from __future__ import annotations

import pytest

from portal.credits import ledger
from portal.db import Database
from portal.usage.service import list_usage
from tests.fixtures.gateway import MakeUser, RunningGateway

pytestmark = pytest.mark.gateway


async def test_plain_call_is_answered_and_debited(
    gateway: RunningGateway, db: Database, make_user: MakeUser, fresh_upstream
) -> None:
    user = await make_user("1")
    client = gateway.async_client(user.token)
    answer = await client.chat.completions.create(
        model="gpt-4.1-nano", messages=[{"role": "user", "content": "hello there"}]
    )
    assert answer.choices[0].message.content == fresh_upstream.reply_text
    import asyncio

    for _ in range(50):
        async with db.session() as session:
            rows = await list_usage(session, user.user_id)
        if rows:
            break
        await asyncio.sleep(0.1)
    assert len(rows) == 1
    async with db.session() as session:
        assert await ledger.balance(session, user.user_id) == 10**9 - rows[0].credits
