"""Answered means recorded (issue 8, point 3): SIGKILL a gateway at a random moment under
load, restart it on the same database and var dir, and count.

A gateway on PostgreSQL + Redis, with a request deadline of 5 s (config copy), serves
300 calls at concurrency 16, plain and streamed interleaved, until it is killed with
SIGKILL once a random number of calls were answered. Then:

- every call whose client received a complete answer (plain: a 200 JSON body; stream:
  `data: [DONE]`, read off the wire) has exactly one usage record and one debit;
- no call id is debited twice, and the balance is the ledger's sum;
- the holds the dead process left expire on their own, without any further request by
  that user: the restarted gateway's background job releases them (it runs once per
  deadline when the deadline is under 30 s, `gateway_plugins.background`);
- the dead process's in-flight slots in Redis expire too.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
import redis.asyncio as aioredis

from portal.db import Database, open_database
from portal.db.migrate import upgrade
from portal.usage.models import CallStatus
from tests.fakes.upstream import FakeUpstream
from tests.fixtures.gateway import (
    RunningGateway,
    config_copy,
    eventually,
    funded_user,
    start_gateway,
    stop_gateway,
)
from tests.fixtures.services import scratch_postgres_database
from tests.gateway.accounting import debits_by_call, usage_by_call
from tests.gateway.support import money

pytestmark = [pytest.mark.gateway, pytest.mark.postgres, pytest.mark.redis]

MODEL = "gpt-4.1-nano"
MESSAGES = [{"role": "user", "content": "Say something short"}]
CALLS, CONCURRENCY = 300, 16
DEADLINE_SECONDS = 5
FUNDING = 10**10


@dataclass
class Outcome:
    call_id: str | None = None
    complete: bool = False


async def plain(client: openai.AsyncOpenAI) -> Outcome:
    outcome = Outcome()
    raw = await client.chat.completions.with_raw_response.create(
        model=MODEL, messages=MESSAGES, max_tokens=50
    )
    outcome.call_id = raw.headers.get("x-litellm-call-id")
    raw.parse()  # the whole JSON body arrived
    outcome.complete = True
    return outcome


async def streamed(http: httpx.AsyncClient, token: str) -> Outcome:
    """Read off the wire: the stream is complete only if `data: [DONE]` arrived."""
    outcome = Outcome()
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 50, "stream": True}
    headers = {"Authorization": f"Bearer {token}"}
    async with http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as reply:
        assert reply.status_code == 200
        outcome.call_id = reply.headers.get("x-litellm-call-id")
        async for line in reply.aiter_lines():
            if line.strip() == "data: [DONE]":
                outcome.complete = True
    return outcome


@pytest.fixture
def sigkill_db_url() -> Iterator[str]:
    with scratch_postgres_database("wfg_sigkill") as url:
        upgrade(url)
        yield url


async def test_sigkill_under_load_loses_no_answered_call_and_frees_its_holds_postgres_redis(
    sigkill_db_url: str,
    redis_url: str,
    fresh_upstream: FakeUpstream,
    tmp_path: Path,
) -> None:
    fresh_upstream.reply_text = " ".join(f"w{i}" for i in range(20))
    fresh_upstream.chunk_delay = 0.005
    config = config_copy(
        tmp_path, {"workforce_gateway": {"timeouts": {"request_seconds": DEADLINE_SECONDS}}}
    )
    env = {"WFG_CONFIG": str(config), "REDIS_URL": redis_url}
    first = start_gateway(
        database_url=sigkill_db_url, upstream=fresh_upstream, work_dir=tmp_path, extra_env=env
    )
    db = open_database(sigkill_db_url)
    restarted: RunningGateway | None = None
    try:
        user = await funded_user(db, units=FUNDING)
        kill_after = random.randint(30, 150)  # answered calls before the kill
        outcomes = await load_until_killed(first, user.token, kill_after)
        killed_at = time.monotonic()
        held_at_kill = (await money(db, user.user_id)).reserved

        restarted = start_gateway(
            database_url=sigkill_db_url, upstream=fresh_upstream, work_dir=tmp_path, extra_env=env
        )
        # No request by this user from here on: the holds go by themselves.
        await eventually(
            lambda: reserved_is_zero(db, user.user_id), seconds=120, what="holds released"
        )
        holds_gone_after = time.monotonic() - killed_at
        slots_gone_after = await wait_for_slots_to_expire(redis_url, user.user_id, killed_at)

        answered = [o for o in outcomes if o.complete]
        records = await usage_by_call(db, user.user_id)
        debits = await debits_by_call(db, user.user_id)
        state = await money(db, user.user_id)
        print(
            f"\nkilled after {len(answered)} answered of {len(outcomes)} started "
            f"(target {kill_after}); {held_at_kill} units held at the kill, released "
            f"{holds_gone_after:.1f} s after it; Redis slots gone after {slots_gone_after:.1f} s;"
            f" {len(records)} usage records, {sum(debits.values())} debits"
        )

        assert len(answered) >= kill_after and len(answered) < CALLS  # killed mid-load
        assert held_at_kill > 0  # the kill left holds behind
        assert all(o.call_id for o in answered)
        for outcome in answered:
            rows = records.get(str(outcome.call_id), [])
            assert len(rows) == 1, outcome
            assert rows[0].status == CallStatus.SUCCESS and rows[0].credits > 0
            assert debits[str(outcome.call_id)] == 1, outcome
        assert max(debits.values()) == 1  # no call id debited twice
        assert all(len(rows) == 1 for rows in records.values())
        assert state.balance == state.ledger_sum
        assert FUNDING - state.balance == sum(r[0].credits for r in records.values())
        assert state.reserved == 0
        # Holds expire with the deadline; the background job runs once per deadline.
        assert holds_gone_after < 2 * DEADLINE_SECONDS + 60  # generous for a busy machine
    finally:
        first.process.kill()
        first.process.wait()
        if restarted is not None:
            stop_gateway(restarted)
        await db.dispose()


async def load_until_killed(gateway: RunningGateway, token: str, kill_after: int) -> list[Outcome]:
    """CALLS calls, CONCURRENCY at a time, half streamed; SIGKILL the gateway once
    `kill_after` were answered. Calls the kill broke are kept as incomplete."""
    outcomes: list[Outcome] = []
    answered = 0
    killed = asyncio.Event()
    queue = iter(range(CALLS))
    client = gateway.async_client(token, timeout=30)
    http = httpx.AsyncClient(base_url=gateway.url, timeout=30)

    async def worker() -> None:
        nonlocal answered
        for index in queue:
            if killed.is_set():
                return
            try:
                outcome = await (streamed(http, token) if index % 2 else plain(client))
            except (openai.APIError, httpx.HTTPError, AssertionError):
                outcome = Outcome()  # broken by the kill (or refused): not complete
            outcomes.append(outcome)
            if outcome.complete:
                answered += 1
            if answered >= kill_after and not killed.is_set():
                gateway.process.send_signal(signal.SIGKILL)
                killed.set()

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    gateway.process.wait()
    await client.close()
    await http.aclose()
    return outcomes


async def reserved_is_zero(db: Database, user_id: str) -> bool:
    return (await money(db, user_id)).reserved == 0


async def wait_for_slots_to_expire(redis_url: str, user_id: str, killed_at: float) -> float:
    """Seconds from the kill until the user's in-flight set in Redis is gone (its members
    expire with the deadline, the key a few seconds later)."""
    client = aioredis.Redis.from_url(redis_url)
    key = f"wfg:limits:inflight:{user_id}"
    try:

        async def live_slots_gone() -> bool:
            return await client.zcount(key, time.time(), "+inf") == 0

        await eventually(live_slots_gone, seconds=60, what="in-flight slots expired")
        await eventually(
            lambda: _gone(client, key), seconds=60, what="in-flight key expired", interval=0.2
        )
        return time.monotonic() - killed_at
    finally:
        await client.aclose()


async def _gone(client: aioredis.Redis, key: str) -> bool:
    return not await client.exists(key)
