"""Two gateway processes, one PostgreSQL, one Redis: scaling out changes nothing about
money, limits or revocation.

Both gateways are started once for the module (LiteLLM takes ~15 s to start) with a
config whose plans the tests pick per user: `unlimited`, `rpm-6`, `two-at-once`.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import openai
import pytest
import redis.asyncio as aioredis
import yaml
from sqlalchemy import select

from gateway_plugins.litellm_bridge import count_prompt_tokens
from gateway_plugins.reservation import estimate_units
from portal.accounts import service as accounts
from portal.accounts.gateway_cache import use_redis
from portal.credits.models import EntryKind, LedgerEntry
from portal.db import Database, open_database
from portal.db.migrate import upgrade
from portal.settings import PROJECT_ROOT
from portal.tokens import service as tokens
from portal.tokens.secrets import hash_token
from portal.usage.models import CallStatus
from tests.fakes.upstream import FakeUpstream
from tests.fixtures.gateway import (
    FundedUser,
    RunningGateway,
    funded_user,
    start_gateway,
    stop_gateway,
)
from tests.gateway.support import (
    expected_units,
    fake_prompt_tokens,
    gateway_config,
    money,
    settled_usage,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.gateway]

MODEL = "gpt-4.1-nano"
PROMPT = "hi"
MESSAGES = [{"role": "user", "content": PROMPT}]
PLANS = {
    "unlimited": {},
    "rpm-6": {"rpm": 6},
    "two-at-once": {"max_parallel_requests": 2},
}


Person = FundedUser


@pytest.fixture(scope="module")
def scale_db_url(postgres_database_url: str) -> str:
    upgrade(postgres_database_url)
    return postgres_database_url


@pytest.fixture(scope="module")
def gateways(
    scale_db_url: str,
    redis_url: str,
    upstream: FakeUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunningGateway, RunningGateway]]:
    work = tmp_path_factory.mktemp("scale")
    config = yaml.safe_load((PROJECT_ROOT / "config.yaml").read_text(encoding="utf-8"))
    config["workforce_gateway"]["limits"]["plans"] = PLANS
    config["workforce_gateway"]["limits"]["default_plan"] = "unlimited"
    config_path = work / "config.yaml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {"REDIS_URL": redis_url, "WFG_CONFIG": str(config_path)}

    def start(name: str) -> RunningGateway:
        (work / name).mkdir()
        return start_gateway(
            database_url=scale_db_url, upstream=upstream, work_dir=work / name, extra_env=env
        )

    with ThreadPoolExecutor(2) as pool:  # the two start-ups overlap
        futures = [pool.submit(start, name) for name in ("a", "b")]
    started = [f.result() for f in futures if f.exception() is None]
    try:
        for future in futures:
            future.result()  # re-raise a failed start (after the other is stopped below)
        yield started[0], started[1]
    finally:
        for gateway in started:
            stop_gateway(gateway)


@pytest.fixture
async def database(scale_db_url: str) -> AsyncIterator[Database]:
    database = open_database(scale_db_url)
    yield database
    await database.dispose()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def person(database: Database, *, plan: str, units: int) -> Person:
    return await funded_user(database, units=units, plan=plan)


@dataclass
class Outcome:
    status: int
    call_id: str | None = None
    retry_after: str | None = None


async def call(gateway: RunningGateway, who: Person, **params: object) -> Outcome:
    client = gateway.async_client(who.token, timeout=60)
    try:
        raw = await client.chat.completions.with_raw_response.create(
            model=MODEL, messages=MESSAGES, **params
        )
        raw.parse()
        return Outcome(200, raw.headers.get("x-litellm-call-id"))
    except openai.APIStatusError as refused:
        return Outcome(refused.status_code, None, refused.response.headers.get("retry-after"))
    finally:
        await client.close()


async def stream(gateway: RunningGateway, who: Person) -> Outcome:
    client = gateway.async_client(who.token, timeout=60)
    try:
        chunks = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        async for _ in chunks:
            pass
        return Outcome(200)
    except openai.APIStatusError as refused:
        return Outcome(refused.status_code)
    finally:
        await client.close()


def alternate(gateways: tuple[RunningGateway, RunningGateway], n: int) -> list[RunningGateway]:
    return list(itertools.islice(itertools.cycle(gateways), n))


async def test_fifty_concurrent_calls_on_two_instances_spend_only_the_balance_postgres_redis(
    gateways: tuple[RunningGateway, RunningGateway],
    database: Database,
    fresh_upstream: FakeUpstream,
) -> None:
    # Replies of exactly max_tokens words: a call costs what it reserved, give or take
    # the input estimate (LiteLLM's tokenizer counts "hi" as 8 tokens, the fake as 4).
    max_tokens = 200
    fresh_upstream.reply_text = " ".join(["word"] * max_tokens)
    config = gateway_config()
    price = config.prices.price_of(MODEL)
    assert price is not None
    reserved = estimate_units(
        config.plugin, price, count_prompt_tokens("chat", {"messages": MESSAGES}), max_tokens
    )
    cost = expected_units(MODEL, fake_prompt_tokens(PROMPT), max_tokens)
    assert cost <= reserved < cost * 1.01
    balance = 5 * reserved + reserved // 2  # covers 5 calls, not 6
    who = await person(database, plan="unlimited", units=balance)

    outcomes = await asyncio.gather(
        *(call(g, who, max_tokens=max_tokens) for g in alternate(gateways, 50))
    )

    served = [o for o in outcomes if o.status == 200]
    assert {o.status for o in outcomes} == {200, 402}
    # The 6th call can never reserve: after k settled calls the balance is 5.5r - kc,
    # and a 6th needs r more than every hold and debit so far.
    assert len(served) == 5
    records = await settled_usage(database, who.user_id, len(served))
    assert sorted(r.call_id for r in records) == sorted(o.call_id for o in served)
    assert {r.status for r in records} == {CallStatus.SUCCESS}
    async with database.session() as session:
        debits = list(
            await session.scalars(
                select(LedgerEntry.cause_id).where(
                    LedgerEntry.user_id == who.user_id, LedgerEntry.kind == EntryKind.DEBIT
                )
            )
        )
    assert sorted(debits) == sorted(o.call_id for o in served)
    final = await money(database, who.user_id)
    assert final.reserved == 0
    assert final.balance == final.ledger_sum == balance - sum(r.credits for r in records)
    under_estimate = max(cost - reserved, 0)
    assert -under_estimate <= final.balance < reserved


async def test_a_users_rpm_limit_holds_across_both_instances_postgres_redis(
    gateways: tuple[RunningGateway, RunningGateway],
    database: Database,
    fresh_upstream: FakeUpstream,
) -> None:
    who = await person(database, plan="rpm-6", units=10**9)

    outcomes = await asyncio.gather(*(call(g, who) for g in alternate(gateways, 14)))

    assert sorted(o.status for o in outcomes) == [200] * 6 + [429] * 8
    limited = [o for o in outcomes if o.status == 429]
    assert all(o.retry_after and int(o.retry_after) > 0 for o in limited)
    # Refused before any credit was held: no usage rows for them, 6 debits.
    records = await settled_usage(database, who.user_id, 6)
    assert len(records) == 6
    assert (await money(database, who.user_id)).reserved == 0


async def test_calls_in_flight_are_limited_across_both_instances_postgres_redis(
    gateways: tuple[RunningGateway, RunningGateway],
    database: Database,
    fresh_upstream: FakeUpstream,
) -> None:
    fresh_upstream.chunk_delay = 0.5  # each stream stays open for ~3 s
    who = await person(database, plan="two-at-once", units=10**9)

    outcomes = await asyncio.gather(*(stream(g, who) for g in alternate(gateways, 6)))

    assert sorted(o.status for o in outcomes) == [200, 200, 429, 429, 429, 429]
    await settled_usage(database, who.user_id, 2)


async def test_a_token_revoked_through_one_instance_is_refused_by_the_other_within_a_second_postgres_redis(  # noqa: E501
    gateways: tuple[RunningGateway, RunningGateway],
    database: Database,
    redis: aioredis.Redis,
    redis_url: str,
    fresh_upstream: FakeUpstream,
) -> None:
    first, second = gateways
    who = await person(database, plan="unlimited", units=10**9)
    assert (await call(first, who)).status == 200
    assert (await call(second, who)).status == 200
    assert await redis.exists(f"wfg:auth:tok:{hash_token(who.token)}")  # checked via Redis

    use_redis(database, redis_url)  # as the portal does: the service drops the cached check
    async with database.transaction() as session:
        await tokens.revoke_token(session, user_id=who.user_id, token_id=who.token_id)
    refused_by = await refused_within(second, who, seconds=1.0)

    assert refused_by.status == 401
    assert (await call(first, who)).status == 401


async def test_a_suspended_account_is_refused_by_every_instance_within_a_second_postgres_redis(
    gateways: tuple[RunningGateway, RunningGateway],
    database: Database,
    redis_url: str,
    fresh_upstream: FakeUpstream,
) -> None:
    who = await person(database, plan="unlimited", units=10**9)
    for gateway in gateways:
        assert (await call(gateway, who)).status == 200

    use_redis(database, redis_url)  # as the portal does: the service drops the cached checks
    async with database.transaction() as session:
        await accounts.suspend_user(session, who.user_id)

    for gateway in gateways:
        assert (await refused_within(gateway, who, seconds=1.0)).status == 403


async def refused_within(gateway: RunningGateway, who: Person, *, seconds: float) -> Outcome:
    """The first refusal of a call to `gateway`; fails if calls still pass after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        outcome = await call(gateway, who)
        if outcome.status != 200:
            return outcome
        assert time.monotonic() < deadline, f"still served {seconds}s after the change"
        await asyncio.sleep(0.05)
