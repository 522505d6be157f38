"""One usage record and one debit per call, whatever the Router does on the way: a
failed attempt followed by a fallback that answers is one call, debited once, at the
price of the model that answered. (Settling the same call twice is tested in
tests/integration/test_settlement.py; a replayed spool in test_spool.py.)"""

from __future__ import annotations

import pytest

from portal.credits import ledger
from portal.credits.models import EntryKind
from portal.credits.units import credits_to_units
from portal.db import Database
from portal.usage.models import CallStatus
from tests.fakes.upstream import FakeUpstream
from tests.fixtures.gateway import MakeUser, RunningGateway
from tests.gateway.support import expected_units, money, settled_usage

MODEL = "gpt-4.1-nano"
MESSAGES = [{"role": "user", "content": "Count to three"}]
MAX_TOKENS = 20


async def debits(db: Database, user_id: str) -> list[tuple[str, int]]:
    async with db.session() as session:
        entries = await ledger.list_entries(session, user_id, limit=1000)
    return sorted((e.cause_id, e.amount) for e in entries if e.kind == EntryKind.DEBIT)


@pytest.mark.gateway
async def test_fallback_after_a_failed_attempt_is_debited_once(
    gateway: RunningGateway, db: Database, make_user: MakeUser, fresh_upstream: FakeUpstream
) -> None:
    user = await make_user("1")
    # gpt-4o-mini's deployment fails, its retries too (500s: a request's own 400 never
    # falls back, issue 19); config.yaml falls back to claude-haiku-4-5.
    fresh_upstream.fail_next(500, count=3)
    answer = gateway.client(user.token).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=MAX_TOKENS
    )
    assert answer.choices[0].message.content == fresh_upstream.reply_text
    assert [r["provider"] for r in fresh_upstream.requests] == ["openai"] * 3 + ["anthropic"]

    (record,) = await settled_usage(db, user.user_id, 1)
    assert record.status == CallStatus.SUCCESS
    assert record.model == "claude-haiku-4-5"  # charged for the model that answered
    price = expected_units(record.model, record.prompt_tokens, record.completion_tokens)
    assert abs(record.credits - price) <= max(1, price // 100)
    assert await debits(db, user.user_id) == [(record.call_id, -record.credits)]
    state = await money(db, user.user_id)
    assert state.balance == credits_to_units("1") - record.credits == state.ledger_sum
