"""Limits shared and exact (issue 8, point 6), against one gateway process whose limiter
counts in a Redis server of this module's own (so the test can kill it):

- 32 concurrent streams under `max_parallel_requests: 32` all succeed, a 33rd concurrent
  call gets 429 with Retry-After and an OpenAI-style body, and once the streams ended
  every slot is free again;
- `rpm: N` admits exactly N calls in a minute, the N+1th gets 429;
- while Redis is down, calls are still answered, reserved and metered (the documented
  fail-open of `gateway_plugins.rate_limits`), and a token revoked meanwhile is refused
  (authentication falls back to the database).

That two instances share one user's limits through Redis is tested in
tests/scale/test_multi_instance_postgres_redis.py.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import openai
import pytest
import redis

from portal.db import Database, open_database
from portal.tokens import service as tokens
from portal.usage.models import CallStatus
from tests.fakes.upstream import FakeUpstream
from tests.fixtures.gateway import (
    Closing,
    FundedUser,
    RunningGateway,
    config_copy,
    free_port,
    funded_user,
    migrated_sqlite_url,
    start_gateway,
    stop_gateway,
)
from tests.fixtures.readiness import wait_until_ready
from tests.fixtures.services import unavailable
from tests.gateway.support import money, settled_usage

pytestmark = [pytest.mark.gateway, pytest.mark.redis]

MODEL = "gpt-4.1-nano"
MESSAGES = [{"role": "user", "content": "Count slowly to sixty"}]
PARALLEL, RPM, TPM = 32, 5, 1000
PLANS = {
    "wide": {"max_parallel_requests": PARALLEL, "rpm": 100_000, "tpm": 1_000_000_000},
    "rpm-5": {"rpm": RPM},
    "tpm-1000": {"tpm": TPM},
}
FUNDING = 10**9


EPHEMERAL = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"]


class OwnRedis:
    """A redis-server of this module's own, which a test may SIGKILL and start again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server", FileNotFoundError("redis-server"))
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), *EPHEMERAL],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        process, client = self.process, redis.Redis.from_url(self.url, socket_connect_timeout=5)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        try:
            wait_until_ready(answers, alive=lambda: process.poll() is None, what="redis-server")
        finally:
            client.close()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@pytest.fixture(scope="module")
def own_redis() -> Iterator[OwnRedis]:
    server = OwnRedis()
    server.start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def limited(
    own_redis: OwnRedis, upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    work: Path = tmp_path_factory.mktemp("limits")
    config = config_copy(
        work, {"workforce_gateway": {"limits": {"plans": PLANS, "default_plan": "wide"}}}
    )
    running = start_gateway(
        database_url=migrated_sqlite_url(work),
        upstream=upstream,
        work_dir=work,
        extra_env={"WFG_CONFIG": str(config), "REDIS_URL": own_redis.url},
    )
    yield running
    stop_gateway(running)


@pytest.fixture
async def limits_db(limited: RunningGateway) -> AsyncIterator[Database]:
    database = open_database(limited.database_url)
    yield database
    await database.dispose()


@pytest.fixture
def redis_up(own_redis: OwnRedis) -> Iterator[OwnRedis]:
    """Redis running for the test (started again after a test that killed it)."""
    if not own_redis.running:
        own_redis.start()
    yield own_redis
    if not own_redis.running:
        own_redis.start()


async def plain(client: openai.AsyncOpenAI) -> int:
    try:
        await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=100)
    except openai.APIStatusError as refused:
        return refused.status_code
    return 200


async def streamed(client: openai.AsyncOpenAI, started: asyncio.Event | None = None) -> str:
    chunks = await client.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=100, stream=True
    )
    text = []
    async for chunk in chunks:
        if started is not None:
            started.set()
        text += [c.delta.content or "" for c in chunk.choices]
    return "".join(text)


async def test_32_concurrent_streams_under_a_limit_of_32_all_succeed_and_a_33rd_waits_redis(
    limited: RunningGateway,
    limits_db: Database,
    redis_up: OwnRedis,
    fresh_upstream: FakeUpstream,
    closing: Closing,
) -> None:
    fresh_upstream.reply_text = " ".join(f"n{i}" for i in range(60))
    fresh_upstream.chunk_delay = 0.1  # each stream lasts ~6 s: they all overlap
    user = await funded_user(limits_db, units=FUNDING, plan="wide")
    client = closing(limited.async_client(user.token, timeout=120))

    started = [asyncio.Event() for _ in range(PARALLEL)]
    streams = [asyncio.ensure_future(streamed(client, event)) for event in started]
    async with asyncio.timeout(60):  # a generous ceiling for a busy machine
        await asyncio.gather(*(event.wait() for event in started))
    assert not any(stream.done() for stream in streams)  # all 32 in flight at once

    with pytest.raises(openai.RateLimitError) as refused:
        await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=100)
    assert int(refused.value.response.headers["retry-after"]) >= 1
    body = refused.value.body
    assert isinstance(body, dict) and body["type"] == "rate_limit_error", body
    assert str(PARALLEL) in body["message"]

    replies = await asyncio.gather(*streams)
    assert replies == [fresh_upstream.reply_text] * PARALLEL
    # Every slot was freed when its stream ended: 32 more at once are all admitted.
    assert await asyncio.gather(*(plain(client) for _ in range(PARALLEL))) == [200] * PARALLEL
    records = await settled_usage(limits_db, user.user_id, 2 * PARALLEL)
    assert len(records) == 2 * PARALLEL  # the refused call holds nothing and has no row


async def test_rpm_admits_exactly_n_calls_a_minute_redis(
    limited: RunningGateway,
    limits_db: Database,
    redis_up: OwnRedis,
    fresh_upstream: FakeUpstream,
    closing: Closing,
) -> None:
    user = await funded_user(limits_db, units=FUNDING, plan="rpm-5")
    client = closing(limited.async_client(user.token))

    # Refused by validation (the pipeline admits first, then validates): no RPM used.
    for bad in ({"max_tokens": "many"}, {"model": "no-such-model"}, {"api_base": "http://x"}):
        with pytest.raises((openai.BadRequestError, openai.NotFoundError)):
            await client.chat.completions.create(
                model=MODEL, messages=MESSAGES, max_tokens=10, extra_body=bad
            )
    assert [await plain(client) for _ in range(RPM)] == [200] * RPM
    with pytest.raises(openai.RateLimitError) as refused:
        await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=100)
    retry_after = int(refused.value.response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert f"{RPM} requests per minute" in refused.value.message
    assert len(await settled_usage(limits_db, user.user_id, RPM)) == RPM


async def test_a_burst_takes_no_more_than_the_tpm_limit_before_its_calls_finish_redis(
    limited: RunningGateway,
    limits_db: Database,
    redis_up: OwnRedis,
    fresh_upstream: FakeUpstream,
    closing: Closing,
) -> None:
    """TPM counts each call's reserved tokens (prompt + max_tokens) when it is admitted:
    20 concurrent streams reserving ~110 tokens each under a limit of 1,000 — at most 9
    start, the rest get 429 at once (TPM counted only at settlement admitted all 20)."""
    fresh_upstream.reply_text = " ".join(f"n{i}" for i in range(20))
    fresh_upstream.chunk_delay = 0.05  # the streams overlap
    user = await funded_user(limits_db, units=FUNDING, plan="tpm-1000")
    client = closing(limited.async_client(user.token, timeout=120))

    async def one() -> str | openai.APIStatusError:
        try:
            return await streamed(client)
        except openai.APIStatusError as refused:
            return refused

    outcomes = await asyncio.gather(*(one() for _ in range(20)))
    served = [o for o in outcomes if isinstance(o, str)]
    refused = [o for o in outcomes if not isinstance(o, str)]
    assert served == [fresh_upstream.reply_text] * len(served)
    assert 1 <= len(served) <= TPM // 100, len(served)  # each holds 100 + its prompt
    for error in refused:
        assert error.status_code == 429 and f"{TPM} tokens per minute" in error.message
    records = await settled_usage(limits_db, user.user_id, len(served))
    assert len(records) == len(served)


async def test_while_redis_is_down_calls_are_answered_reserved_and_metered_redis(
    limited: RunningGateway,
    limits_db: Database,
    redis_up: OwnRedis,
    fresh_upstream: FakeUpstream,
    closing: Closing,
) -> None:
    user = await funded_user(limits_db, units=FUNDING, plan="wide")
    revoked = await funded_user(limits_db, units=FUNDING, plan="wide")
    client = closing(limited.async_client(user.token))
    revoked_client = closing(limited.async_client(revoked.token))
    assert await plain(client) == 200
    assert await plain(revoked_client) == 200  # its identity is now cached in Redis

    redis_up.kill()
    await revoke(limits_db, revoked)

    # Limits fail open: answered, and reserved against / debited from the database.
    assert [await plain(client) for _ in range(3)] == [200] * 3
    assert await streamed(client) == fresh_upstream.reply_text
    assert await asyncio.gather(*(plain(client) for _ in range(4))) == [200] * 4
    async with httpx.AsyncClient() as http:
        ready = await http.get(f"{limited.url}/readyz")
    assert ready.status_code == 200, ready.text  # Redis is reported, it does not gate

    records = await settled_usage(limits_db, user.user_id, 9)
    assert len(records) == 9
    assert {r.status for r in records} == {CallStatus.SUCCESS}
    state = await money(limits_db, user.user_id)
    assert state.reserved == 0
    assert state.balance == FUNDING - sum(r.credits for r in records) == state.ledger_sum

    # The revoked token: its Redis cache entry is unreachable, the database says revoked.
    assert await plain(revoked_client) == 401


async def revoke(db: Database, who: FundedUser) -> None:
    """Revoke in the database only (the portal's cache invalidation cannot reach Redis)."""
    async with db.transaction() as session:
        await tokens.revoke_token(session, user_id=who.user_id, token_id=who.token_id)
