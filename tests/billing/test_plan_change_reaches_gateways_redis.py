"""A plan bought through Stripe reaches every gateway at once: the Redis-cached token
checks of that user are dropped after the change commits (not left to expire)."""

from __future__ import annotations

import time

import pytest

from portal.accounts.gateway_cache import use_redis
from portal.accounts.models import User
from portal.billing.runtime import Billing
from portal.billing.webhooks import handle_event
from portal.db import Database
from portal.tokens.auth_cache import AuthCache
from portal.tokens.service import authenticate, create_token
from tests.billing.conftest import MakeBuyer, start_checkout
from tests.fakes.stripe_api import FakeStripe

pytestmark = pytest.mark.redis


async def test_a_new_plan_drops_the_users_cached_token_checks_redis(
    stripe_fake: FakeStripe, billing: Billing, db: Database, make_buyer: MakeBuyer, redis_url: str
) -> None:
    buyer = await make_buyer()
    async with db.transaction() as session:
        token, _ = await create_token(session, await session.get(User, buyer.user_id), name="app")
        before = await authenticate(session, token)
    assert before.plan == "free"
    cache = AuthCache.from_url(redis_url, ttl_seconds=30)
    try:
        assert await cache.put(before, read_at=time.monotonic())
        session_id = await start_checkout(billing, db, buyer, "plan", "basic")
        stripe_fake.auto_deliver = False
        events = stripe_fake.complete_checkout(session_id)

        use_redis(db, redis_url)  # as the portal app does; nothing else asks for it
        for event in events:
            await handle_event(db, billing, event)

        assert await cache.get(before.token_hash) is None  # every gateway re-reads
        async with db.session() as session:
            assert (await authenticate(session, token)).plan == "basic"
    finally:
        await cache.close()
