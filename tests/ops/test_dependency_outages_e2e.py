"""A hung or refused PostgreSQL or Redis costs a call a bounded, stated time, never the
whole outage; limits hold without Redis; refusals the gateway causes cost the user no RPM
(issue 21, points 1, 2 and 5).

One real gateway process on real PostgreSQL and Redis, each reached through a TCP proxy
the test switches between pass, refuse and black-hole (`tests/fixtures/tcp_proxy.py`).
Its config sets short, stated numbers: database deadline 1 s, Redis budget 0.25 s,
breakers open after 3 consecutive failures and probe after 3 s, two expected instances
(so the local share of a limit is half of it). Times are bounded loosely (× 3 and more)
since the machine is shared; what is asserted is what happened: status codes, spooled
and replayed settlements, breaker states in /readyz, requests that reached the outage.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy.engine import make_url

from gateway_plugins.litellm_bridge import count_prompt_tokens
from gateway_plugins.reservation import estimate_units
from portal.db import Database, open_database
from portal.db.migrate import upgrade
from portal.tokens.secrets import new_token
from portal.usage.spool import Spool
from tests.fakes.upstream import FakeUpstream
from tests.fixtures.gateway import (
    FundedUser,
    RunningGateway,
    config_copy,
    eventually,
    funded_user,
    start_gateway,
    stop_gateway,
)
from tests.fixtures.tcp_proxy import TcpProxy
from tests.gateway.accounting import debits_by_call, usage_by_call
from tests.gateway.support import expected_units, gateway_config, money

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.gateway]

DATABASE_SECONDS = 1.0
REDIS_BUDGET_SECONDS = 0.25
FAILURES = 3
PROBE_SECONDS = 3.0
EXPECTED_INSTANCES = 2
PLANS = {
    "free": {},  # unlimited: the outage tests need no limit in the way
    "rpm-5": {"rpm": 5},
    "eight-at-once": {"max_parallel_requests": 8},  # local share without Redis: 4
}
MODEL = "gpt-4.1-nano"
MESSAGES = [{"role": "user", "content": "hi"}]


@dataclass
class Rig:
    gateway: RunningGateway
    postgres: TcpProxy
    redis: TcpProxy
    spool: Spool


@pytest.fixture(scope="module")
def rig(
    postgres_database_url: str,
    redis_url: str,
    upstream: FakeUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Rig]:
    upgrade(postgres_database_url)
    work = tmp_path_factory.mktemp("outages")
    pg_url, rd_url = make_url(postgres_database_url), make_url(redis_url)
    postgres = TcpProxy(pg_url.host or "127.0.0.1", pg_url.port or 5432).start()
    redis = TcpProxy(rd_url.host or "127.0.0.1", rd_url.port or 6379).start()
    config = config_copy(
        work,
        {
            "workforce_gateway": {
                "dependencies": {
                    "database_seconds": DATABASE_SECONDS,
                    "redis_budget_seconds": REDIS_BUDGET_SECONDS,
                    "breaker_failures": FAILURES,
                    "breaker_probe_seconds": PROBE_SECONDS,
                },
                "limits": {"plans": PLANS, "expected_instances": EXPECTED_INSTANCES},
                # Background jobs (spool replay) run once per request deadline below 30 s.
                "timeouts": {"request_seconds": 10, "first_byte_seconds": 10},
            }
        },
    )
    gateway = None
    try:
        gateway = start_gateway(
            database_url=postgres.url_for(postgres_database_url),
            upstream=upstream,
            work_dir=work,
            extra_env={"REDIS_URL": redis.url_for(redis_url), "WFG_CONFIG": str(config)},
            busy_machine_deadlines=False,  # this test is about them
        )
        yield Rig(gateway, postgres, redis, Spool(work / "var" / "spool"))
    finally:
        if gateway is not None:
            stop_gateway(gateway)
        postgres.stop()
        redis.stop()


@pytest.fixture
async def database(postgres_database_url: str) -> AsyncIterator[Database]:
    """The test's own connection, straight to PostgreSQL (not through the proxy)."""
    database = open_database(postgres_database_url)
    yield database
    await database.dispose()


@pytest.fixture
async def healthy(rig: Rig, fresh_upstream: FakeUpstream) -> AsyncIterator[Rig]:
    """Both dependencies passing and both breakers closed, before and after the test."""
    await recovered(rig)
    yield rig
    fresh_upstream.reset()
    await recovered(rig)


async def readyz(rig: Rig) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.get(f"{rig.gateway.url}/readyz")
    body: dict[str, Any] = answer.json()
    body["http_status"] = answer.status_code
    return body


async def breaker(rig: Rig, name: str) -> str:
    state: str = (await readyz(rig))["breakers"][name]["state"]
    return state


async def recovered(rig: Rig) -> None:
    """Proxies passing; then calls (each a probe once a breaker half-opens) until /readyz
    is 200 with both breakers closed."""
    rig.postgres.set_mode("pass")
    rig.redis.set_mode("pass")

    async def closed() -> bool:
        body = await readyz(rig)
        if body["http_status"] == 200 and all(
            b["state"] == "closed" for b in body["breakers"].values()
        ):
            return True
        async with httpx.AsyncClient(timeout=30) as client:  # a call that tries both
            await client.get(  # an unknown token: Redis's cache, then the database (401)
                f"{rig.gateway.url}/v1/credits", headers={"authorization": f"Bearer {new_token()}"}
            )
        return False

    await eventually(closed, seconds=90, what="dependencies back and breakers closed", interval=0.5)


@dataclass
class Outcome:
    status: int
    seconds: float
    call_id: str | None = None


async def call(rig: Rig, who: FundedUser, **params: Any) -> Outcome:
    client = rig.gateway.async_client(who.token, timeout=120)
    started = time.monotonic()
    try:
        raw = await client.chat.completions.with_raw_response.create(
            model=params.pop("model", MODEL), messages=params.pop("messages", MESSAGES), **params
        )
        raw.parse()
        return Outcome(200, time.monotonic() - started, raw.headers.get("x-litellm-call-id"))
    except openai.APIStatusError as refused:
        return Outcome(refused.status_code, time.monotonic() - started)


# ---------------------------------------------------------------- PostgreSQL hangs


async def test_a_hung_database_gets_503_within_the_deadline_and_in_flight_calls_spooled(
    healthy: Rig, database: Database, fresh_upstream: FakeUpstream
) -> None:
    rig = healthy
    who = await funded_user(database, units=10**9)
    assert (await call(rig, who)).status == 200  # the token is cached in Redis now
    fresh_upstream.hold_next(2)
    in_flight = [asyncio.create_task(call(rig, who)) for _ in range(2)]
    await eventually(lambda: fresh_upstream.calls_held == 2, seconds=60, what="2 calls upstream")

    rig.postgres.set_mode("blackhole")
    released_at = time.monotonic()
    fresh_upstream.release_held()
    answered = await asyncio.gather(*in_flight)
    # Answered (the answer goes out once its settlement is spooled), within one deadline.
    assert [o.status for o in answered] == [200, 200]
    assert time.monotonic() - released_at < DATABASE_SECONDS * 3 + 5
    assert rig.spool.pending() >= 2

    during = [await call(rig, who) for _ in range(6)]
    assert [o.status for o in during] == [503] * 6
    assert all(o.seconds < DATABASE_SECONDS * 3 + 2 for o in during), during
    # Breaker open: the last calls were not held for the deadline at all.
    assert (await breaker(rig, "database")) in ("open", "half_open")
    assert min(o.seconds for o in during[-3:]) < DATABASE_SECONDS

    await recovered(rig)  # replays the spool: both settlements, exactly once
    await eventually(lambda: rig.spool.pending() == 0, seconds=60, what="the spool replayed")
    call_ids = {o.call_id for o in answered}
    usage = await usage_by_call(database, who.user_id)
    debits = await debits_by_call(database, who.user_id)
    for call_id in call_ids:
        assert call_id is not None
        assert len(usage[call_id]) == 1 and debits[call_id] == 1
    assert (await money(database, who.user_id)).reserved == 0


# ---------------------------------------------------------------- Redis hangs


async def test_a_hung_redis_costs_a_call_at_most_its_budget_then_nothing_once_open(
    healthy: Rig, database: Database
) -> None:
    rig = healthy
    who = await funded_user(database, units=10**9)
    assert (await call(rig, who)).status == 200

    rig.redis.set_mode("blackhole")
    first = [await call(rig, who) for _ in range(FAILURES)]
    assert [o.status for o in first] == [200] * FAILURES  # served on the fallback
    assert all(o.seconds < REDIS_BUDGET_SECONDS * 3 + 2 for o in first), first  # not 3 × 5 s
    assert await breaker(rig, "redis") == "open"

    sent_into_the_outage = rig.redis.swallowed
    then = [await call(rig, who) for _ in range(5)]
    assert [o.status for o in then] == [200] * 5
    # Open: the calls did not try Redis (one probe may have gone out meanwhile).
    assert rig.redis.swallowed - sent_into_the_outage <= 2
    assert (await readyz(rig))["http_status"] == 200  # Redis down does not gate readiness


async def test_limits_hold_with_redis_black_holed(
    healthy: Rig, database: Database, fresh_upstream: FakeUpstream
) -> None:
    """100 concurrent calls, funded for all of them, from a user whose plan allows 8 in
    flight; Redis black-holed, two expected instances: at most 4 are in flight at once on
    this instance, and the balance ends within the bound for 4 (docs/operations.md)."""
    rig = healthy
    model = "claude-haiku-4-5"
    blocks, max_tokens = 60, 50
    messages = [{"role": "user", "content": [{"type": "text", "text": "go"}] * blocks}]
    config = gateway_config()
    price = config.prices.price_of(model)
    assert price is not None
    held = estimate_units(
        config.plugin, price, count_prompt_tokens("chat", {"model": model, "messages": messages}),
        max_tokens,
    )  # fmt: skip
    cost = expected_units(model, blocks * 4, max_tokens)  # the fake counts 4 per block
    under_estimate = cost - held
    assert under_estimate > 0
    share = PLANS["eight-at-once"]["max_parallel_requests"] // EXPECTED_INSTANCES
    funded = held * 100
    who = await funded_user(database, units=funded, plan="eight-at-once")
    fresh_upstream.reply_text = " ".join(["wave"] * max_tokens)
    fresh_upstream.hold_next(100)
    rig.redis.set_mode("blackhole")

    calls = [
        asyncio.create_task(call(rig, who, model=model, messages=messages, max_tokens=max_tokens))
        for _ in range(100)
    ]
    await eventually(
        lambda: fresh_upstream.calls_held + sum(t.done() for t in calls) == 100,
        seconds=120,
        what="every call held upstream or refused",
    )
    assert 1 <= fresh_upstream.calls_held <= share
    fresh_upstream.release_held()
    outcomes = await asyncio.gather(*calls)
    served = [o for o in outcomes if o.status == 200]
    assert {o.status for o in outcomes} <= {200, 429}
    assert len(served) <= share

    state = await money(database, who.user_id)
    assert state.reserved == 0
    assert state.balance >= -share * under_estimate
    assert state.balance == funded - len(served) * cost


# ---------------------------------------------------------------- refusals we cause


async def test_503s_from_a_database_outage_do_not_use_up_the_rpm(
    healthy: Rig, database: Database
) -> None:
    rig = healthy
    who = await funded_user(database, units=10**9, plan="rpm-5")
    assert (await call(rig, who)).status == 200  # 1 of 5; the token is cached in Redis

    rig.postgres.set_mode("refuse")
    refused = [await call(rig, who) for _ in range(8)]
    assert [o.status for o in refused] == [503] * 8

    rig.postgres.set_mode("pass")
    await eventually(
        lambda: _database_usable(rig), seconds=60, what="the database breaker letting a probe"
    )
    after = [await call(rig, who) for _ in range(4)]  # 2..5 of 5
    assert [o.status for o in after] == [200] * 4
    assert (await call(rig, who)).status == 429  # the sixth in the minute


async def _database_usable(rig: Rig) -> bool:
    body = await readyz(rig)
    return body["http_status"] == 200 and body["breakers"]["database"]["state"] != "open"
