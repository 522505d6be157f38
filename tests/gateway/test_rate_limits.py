"""The limiter's counters, the same behaviours in Redis and in process memory: RPM as a
moving window, TPM as a fixed window counted as reserved and corrected at settlement,
calls in flight with a slot freed by its call or by its deadline, one atomic admission
(a refused call takes no entry), and no thread per call in memory. End to end through
the gateway process: tests/gateway/test_limits_e2e.py."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from gateway_plugins.rate_limits import InFlightSlot, RateLimiter
from portal.config.plugin_settings import LimitSettings, PlanLimits
from portal.errors import RateLimited
from portal.tokens.auth_cache import AuthCache, decode
from portal.tokens.service import TokenIdentity
from tests.fixtures.gateway import eventually

DEADLINE = 300


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[RateLimiter]:
    if request.param == "memory":
        yield RateLimiter(None)
        return
    client = aioredis.Redis.from_url(request.getfixturevalue("redis_url"))
    limiter = RateLimiter(client)
    yield limiter
    await client.aclose()


def someone() -> str:
    return f"user-{uuid.uuid4().hex}"  # a fresh user: no counts left by another test


async def refused(limiter: RateLimiter, user: str, plan: PlanLimits) -> RateLimited:
    with pytest.raises(RateLimited) as caught:
        await limiter.admit(user, plan, DEADLINE)
    return caught.value


async def test_rpm_admits_exactly_n_calls_per_user(limiter: RateLimiter) -> None:
    plan = PlanLimits(rpm=3)
    user = someone()
    for _ in range(3):
        await (await limiter.admit(user, plan, DEADLINE)).release()
    refusal = await refused(limiter, user, plan)
    assert refusal.status_code == 429 and "3 requests per minute" in refusal.message
    assert 1 <= refusal.retry_after <= 60
    await (await limiter.admit(someone(), plan, DEADLINE)).release()  # per user
    assert limiter.unavailable == 0


async def test_tpm_counts_settled_tokens_and_refuses_once_the_minute_is_spent(
    limiter: RateLimiter,
) -> None:
    plan = PlanLimits(tpm=100)
    user = someone()
    slot = await limiter.admit(user, plan, DEADLINE)
    await slot.release(tokens=60)
    await slot.release(tokens=60)  # a second release counts nothing
    await (await limiter.admit(user, plan, DEADLINE)).release(tokens=40)  # 100: spent
    refusal = await refused(limiter, user, plan)
    assert "100 tokens per minute" in refusal.message
    assert 1 <= refusal.retry_after <= 60


async def test_tpm_counts_reserved_tokens_at_admission_and_corrects_them_at_settlement(
    limiter: RateLimiter,
) -> None:
    """Calls in flight count toward TPM as reserved: a burst cannot take more than the
    plan's tokens before any of its calls finish; settlement corrects to what was used."""
    plan = PlanLimits(tpm=1000)
    user = someone()
    first = await limiter.admit(user, plan, DEADLINE)
    await first.reserve_tokens(600)
    second = await limiter.admit(user, plan, DEADLINE)  # 600 used: room is left
    with pytest.raises(RateLimited) as caught:
        await second.reserve_tokens(600)  # 1,200 would not fit
    assert "1000 tokens per minute" in caught.value.message
    assert 1 <= caught.value.retry_after <= 60
    await second.release(refund=True)
    await first.release(tokens=100)  # used 100 of its 600: the window holds 100
    third = await limiter.admit(user, plan, DEADLINE)
    await third.reserve_tokens(800)  # 900
    await third.release()  # no answer: its 800 given back
    fourth = await limiter.admit(user, plan, DEADLINE)
    await fourth.reserve_tokens(900)  # 1,000: exactly the limit
    await fourth.release(tokens=900)
    assert "1000 tokens per minute" in (await refused(limiter, user, plan)).message


async def test_one_call_larger_than_tpm_runs_alone_in_an_empty_window(
    limiter: RateLimiter,
) -> None:
    plan = PlanLimits(tpm=100)
    user = someone()
    big = await limiter.admit(user, plan, DEADLINE)
    await big.reserve_tokens(5000)
    assert "100 tokens per minute" in (await refused(limiter, user, plan)).message
    await big.release(tokens=5000)


async def test_calls_in_flight_are_freed_by_their_call(limiter: RateLimiter) -> None:
    plan = PlanLimits(max_parallel_requests=2)
    user = someone()
    first = await limiter.admit(user, plan, DEADLINE)
    second = await limiter.admit(user, plan, DEADLINE)
    refusal = await refused(limiter, user, plan)
    assert "at most 2 calls in flight" in refusal.message and refusal.retry_after == 1
    await first.release()
    third = await limiter.admit(user, plan, DEADLINE)
    for slot in (second, third):
        await slot.release()
    await (await limiter.admit(user, plan, DEADLINE)).release()


async def test_a_slot_whose_call_never_ended_frees_itself_at_the_deadline(
    limiter: RateLimiter,
) -> None:
    """A process that died mid-call never releases: the slot lives as long as the
    request deadline, then frees itself."""
    plan = PlanLimits(max_parallel_requests=1)
    user = someone()
    await limiter.admit(user, plan, deadline_seconds=0.2)  # never released

    async def admitted() -> bool:
        try:
            await (await limiter.admit(user, plan, DEADLINE)).release()
        except RateLimited:
            return False
        return True

    await eventually(admitted, seconds=30, what="the dead call's slot to expire")


async def test_a_refused_call_takes_no_entry(limiter: RateLimiter) -> None:
    """Admission is one atomic step: a call refused for its calls in flight does not use
    up an RPM entry."""
    plan = PlanLimits(rpm=2, max_parallel_requests=1)
    user = someone()
    held = await limiter.admit(user, plan, DEADLINE)
    for _ in range(5):
        assert "calls in flight" in (await refused(limiter, user, plan)).message
    await held.release()
    await (await limiter.admit(user, plan, DEADLINE)).release()  # the second of 2 RPM
    assert "requests per minute" in (await refused(limiter, user, plan)).message


async def test_concurrent_admissions_never_exceed_the_limit(limiter: RateLimiter) -> None:
    plan = PlanLimits(max_parallel_requests=10, rpm=1000)
    user = someone()
    results = await asyncio.gather(
        *(limiter.admit(user, plan, DEADLINE) for _ in range(50)), return_exceptions=True
    )
    slots = [r for r in results if isinstance(r, InFlightSlot)]
    assert len(slots) == 10
    assert all(isinstance(r, RateLimited) for r in results if r not in slots)
    await asyncio.gather(*(slot.release() for slot in slots))


async def test_no_limits_no_counting(limiter: RateLimiter) -> None:
    slot = await limiter.admit(someone(), PlanLimits(), DEADLINE)
    await slot.release(tokens=10**9)


async def test_in_memory_no_thread_is_started_per_call() -> None:
    limiter = RateLimiter(None)
    plan = PlanLimits(rpm=10**6, tpm=10**9, max_parallel_requests=8)
    before = threading.active_count()
    for _ in range(200):
        await (await limiter.admit("u", plan, DEADLINE)).release(tokens=5)
    assert threading.active_count() == before


async def test_a_call_refused_after_admission_gets_its_rpm_entry_back(
    limiter: RateLimiter,
) -> None:
    """The pipeline admits before it validates the body; a call refused by validation
    releases with `refund=True` and costs the user no RPM."""
    plan = PlanLimits(rpm=2, max_parallel_requests=1)
    user = someone()
    for _ in range(5):
        await (await limiter.admit(user, plan, DEADLINE)).release(refund=True)
    await (await limiter.admit(user, plan, DEADLINE)).release()
    await (await limiter.admit(user, plan, DEADLINE)).release()
    assert "requests per minute" in (await refused(limiter, user, plan)).message


@pytest.mark.redis
async def test_a_cached_token_is_checked_and_admitted_in_one_round_trip(redis_url: str) -> None:
    """With Redis, one script reads the token's auth-cache entry and admits the call under
    the limits of the plan the entry names (the default plan's for an unknown one); a
    token not cached gets None (the caller checks the database)."""
    client = aioredis.Redis.from_url(redis_url)
    cache = AuthCache(client, ttl_seconds=60)
    limiter = RateLimiter(client)
    plans = LimitSettings(
        plans={"free": PlanLimits(rpm=1), "pro": PlanLimits(rpm=3, max_parallel_requests=2)}
    )
    try:
        pro = TokenIdentity("t1", someone(), uuid.uuid4().hex, None, "pro")
        legacy = TokenIdentity("t2", someone(), uuid.uuid4().hex, None, "no-such-plan")
        for identity in (pro, legacy):
            assert await cache.put(identity, read_at=time.monotonic())
        assert await limiter.admit_cached_token(cache.key("f" * 64), plans, DEADLINE) is None

        async def admit(identity: TokenIdentity) -> InFlightSlot:
            admission = await limiter.admit_cached_token(
                cache.key(identity.token_hash), plans, DEADLINE
            )
            assert admission is not None
            assert decode(admission.entry) == identity
            limits = plans.for_plan(identity.plan)
            return limiter.admitted(identity.user_id, limits, admission.member, admission.refused)

        first, second = await admit(pro), await admit(pro)
        with pytest.raises(RateLimited, match="2 calls in flight"):
            await admit(pro)
        await first.release()
        await (await admit(pro)).release()  # the third of 3 RPM
        with pytest.raises(RateLimited, match="3 requests per minute"):
            await admit(pro)
        await second.release()

        await (await admit(legacy)).release()  # the default plan: 1 RPM
        with pytest.raises(RateLimited, match="1 requests per minute"):
            await admit(legacy)
        # Counted where `admit` counts: the two paths share the user's counters.
        shared = await refused(limiter, pro.user_id, plans.plans["pro"])
        assert "requests per minute" in shared.message
    finally:
        await client.aclose()
