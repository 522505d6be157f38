"""What an operator sees of a running gateway: JSON log lines with request ids and no
content even at debug level (LiteLLM's own included), Prometheus metrics, health; and
what a rolling restart does: SIGTERM during a burst of streams loses no usage record.

One gateway process serves the module (LOG_FORMAT=json, LOG_LEVEL=debug,
LITELLM_LOG=DEBUG); the SIGTERM test stops it, so it comes last.
"""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from portal.accounts.service import create_user
from portal.credits import ledger
from portal.credits.models import CauseType, EntryKind
from portal.db import Database, open_database
from portal.db.migrate import upgrade
from portal.tokens.service import create_token
from portal.usage.models import CallStatus
from portal.usage.service import list_usage
from tests.fakes.upstream import FakeUpstream
from tests.fixtures.gateway import RunningGateway, start_gateway, stop_gateway
from tests.gateway.support import money, settled_usage

pytestmark = pytest.mark.gateway

MODEL = "gpt-4.1-nano"
STARTED = "Application startup complete."


@dataclass
class Person:
    user_id: str
    token: str


@pytest.fixture(scope="module")
def ops_db_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('ops-db') / 'ops.db'}"
    upgrade(url)
    return url


@pytest.fixture(scope="module")
def ops_gateway(
    ops_db_url: str, upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    running = start_gateway(
        database_url=ops_db_url,
        upstream=upstream,
        work_dir=tmp_path_factory.mktemp("ops-gateway"),
        extra_env={"LOG_FORMAT": "json", "LOG_LEVEL": "debug", "LITELLM_LOG": "DEBUG"},
    )
    yield running
    stop_gateway(running)


@pytest.fixture
async def ops_db(ops_db_url: str) -> AsyncIterator[Database]:
    database = open_database(ops_db_url)
    yield database
    await database.dispose()


async def person(database: Database, credits_units: int = 10**9) -> Person:
    async with database.transaction() as session:
        user = await create_user(
            session, email=f"ops-{uuid.uuid4().hex[:10]}@example.com", name="O", verified=True
        )
        token, _row = await create_token(session, user, name="ops")
        await ledger.ensure_account(session, user.id)
        if credits_units:
            await ledger.post_entry(
                session, user_id=user.id, amount=credits_units, kind=EntryKind.GRANT,
                cause_type=CauseType.ADMIN, cause_id=f"ops-{uuid.uuid4()}",
            )  # fmt: skip
    return Person(user.id, token)


def log_lines(gateway: RunningGateway) -> list[str]:
    """Lines logged once the app started (before it, LiteLLM prints its model list)."""
    text = gateway.logs()
    return text[text.index(STARTED) :].splitlines()[1:]


async def test_logs_are_json_lines_with_request_ids_and_never_content_at_debug_level(
    ops_gateway: RunningGateway, ops_db: Database, fresh_upstream: FakeUpstream
) -> None:
    canary = f"canary{uuid.uuid4().hex}"
    fresh_upstream.reply_text = f"The answer is {canary}-reply here."
    who = await person(ops_db)
    client = ops_gateway.async_client(who.token)
    messages = [
        {"role": "system", "content": f"You are {canary}-system."},
        {"role": "user", "content": f"Tell me about {canary}-prompt please"},
    ]
    tool_turn = [
        *messages,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": json.dumps({"q": canary})},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": f"{canary}-tool-result"},
    ]
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": f"Looks up {canary}-tool-description",
                "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
            },
        }
    ]

    plain = await client.chat.completions.with_raw_response.create(model=MODEL, messages=messages)
    streamed = await client.chat.completions.create(model=MODEL, messages=messages, stream=True)
    assert canary in "".join(
        [c.choices[0].delta.content or "" async for c in streamed if c.choices]
    )
    await client.chat.completions.create(model=MODEL, messages=tool_turn, tools=tools)
    fresh_upstream.fail_next(400)  # the upstream's error quotes the prompt, as real ones do
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model=MODEL, messages=messages)
    await settled_usage(ops_db, who.user_id, 4)

    lines = log_lines(ops_gateway)
    assert canary not in ops_gateway.logs()
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert any(e["level"] == "debug" and e["logger"].startswith("LiteLLM") for e in entries)
    request_id = plain.headers["x-request-id"]
    call_id = plain.headers["x-litellm-call-id"]
    mine = [e for e in entries if e.get("request_id") == request_id]
    assert mine, "no log line carries the request id of the call"
    assert any(e.get("call_id") == call_id for e in mine)
    access = [e for e in mine if e["logger"] == "uvicorn.access"]
    assert len(access) == 1 and "POST /v1/chat/completions" in access[0]["message"]


def metric_samples(gateway: RunningGateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


async def test_metrics_count_calls_tokens_credits_and_refusals_with_bounded_labels(
    ops_gateway: RunningGateway, ops_db: Database, fresh_upstream: FakeUpstream
) -> None:
    before = metric_samples(ops_gateway)
    rich, poor = await person(ops_db), await person(ops_db, credits_units=0)
    for _ in range(2):
        await ops_gateway.async_client(rich.token).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "count me"}]
        )
    with pytest.raises(openai.APIStatusError) as no_credit:
        await ops_gateway.async_client(poor.token).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "count me"}]
        )
    assert no_credit.value.status_code == 402
    with pytest.raises(openai.AuthenticationError):
        await ops_gateway.async_client("wfg_" + "x" * 43).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "count me"}]
        )
    with pytest.raises(openai.APIStatusError):
        await ops_gateway.async_client(rich.token).chat.completions.create(
            model=f"no-such-model-{uuid.uuid4().hex}", messages=[{"role": "user", "content": "x"}]
        )
    records = await settled_usage(ops_db, rich.user_id, 2)

    after = metric_samples(ops_gateway)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    model = {"model": MODEL}
    assert grew("wfg_gateway_requests_total", **model, status="200") == 2
    assert grew("wfg_gateway_requests_total", **model, status="402") == 1
    assert grew("wfg_gateway_refusals_total", reason="402") == 1
    assert grew("wfg_gateway_refusals_total", reason="401") == 1
    assert grew("wfg_gateway_tokens_total", **model, direction="in") == sum(
        r.prompt_tokens for r in records
    )
    assert grew("wfg_gateway_tokens_total", **model, direction="out") == sum(
        r.completion_tokens for r in records
    )
    debited = grew("wfg_gateway_credits_debited_total", **model)
    assert debited == pytest.approx(sum(r.credits for r in records) / 10**9)
    assert grew("wfg_gateway_upstream_latency_seconds_count", **model) == 2
    assert grew("wfg_gateway_added_latency_seconds_count") == 2
    assert after[("wfg_gateway_reserved_units", ())] == 0
    labels = {value for _name, pairs in after for _key, value in pairs}
    assert not labels & {rich.user_id, poor.user_id, rich.token}
    assert "other" in {dict(pairs).get("model") for _name, pairs in after}  # unknown model

    async with httpx.AsyncClient(base_url=ops_gateway.url, timeout=5) as http:
        health, ready = await http.get("/healthz"), await http.get("/readyz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    report = ready.json()
    assert (ready.status_code, report["status"], report["database"]) == (200, "ok", "ok")
    assert report["breakers"]["database"]["state"] == "closed"


async def test_sigterm_during_a_burst_of_streams_keeps_every_answered_calls_usage(
    ops_gateway: RunningGateway, ops_db: Database, fresh_upstream: FakeUpstream
) -> None:
    fresh_upstream.chunk_delay = 0.25  # each stream lasts ~1.5 s
    who = await person(ops_db)
    burst = 12

    async def stream() -> str | None:
        """The call id of a stream answered in full, else None."""
        client = ops_gateway.async_client(who.token, timeout=60)
        try:
            raw = await client.chat.completions.with_raw_response.create(
                model=MODEL, messages=[{"role": "user", "content": "stream it"}], stream=True
            )
            finish = [c.choices[0].finish_reason async for c in raw.parse() if c.choices]
            return raw.headers["x-litellm-call-id"] if finish[-1] == "stop" else None
        except (openai.APIError, httpx.HTTPError):
            return None
        finally:
            await client.close()

    calls = [asyncio.create_task(stream()) for _ in range(burst)]
    for _ in range(1000):  # until every stream has reached the upstream
        if len([r for r in fresh_upstream.requests if r["stream"]]) == burst:
            break
        await asyncio.sleep(0.02)
    ops_gateway.process.send_signal(signal.SIGTERM)
    answered = [call_id for call_id in await asyncio.gather(*calls) if call_id]
    exit_code = await asyncio.to_thread(lambda: ops_gateway.process.wait(timeout=60))

    # uvicorn re-raises the signal once it has shut down cleanly
    assert exit_code == -signal.SIGTERM
    assert (
        ops_gateway.logs()
        .rstrip()
        .splitlines()[-1]
        .endswith(f'"Finished server process [{ops_gateway.process.pid}]"}}')
    )
    assert len(answered) == burst  # open requests finish before the process stops
    async with ops_db.session() as session:
        records = {r.call_id: r for r in await list_usage(session, who.user_id)}
    assert set(answered) <= set(records)
    assert {records[c].status for c in answered} == {CallStatus.SUCCESS}
    state = await money(ops_db, who.user_id)
    assert state.reserved == 0 and state.balance == state.ledger_sum
    assert "shutdown: settlement" not in ops_gateway.logs()  # none needed the spool
