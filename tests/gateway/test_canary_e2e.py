"""No content anywhere (issue 8, point 8): unique canary strings sent in every place a
request or a reply can carry text (system prompt, user message, tool definition, tool-call
argument, tool result, the upstream's reply, an upstream error quoting the prompt), through
every POST endpoint (chat on every model; completions, embeddings, responses, and Anthropic
messages for an Anthropic and a translated OpenAI model), plain and streamed, answered and
failed, never appear in the database (every row of every table, pg_dump, raw SQLite
files), in Redis (every key and value), in `/metrics`, or in anything the gateway wrote
(its logs at the default level and at debug, its spool). Expected refusals are logged at
INFO or WARNING, never ERROR."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import redis

from portal.credits.units import credits_to_units
from portal.db import Database, open_database
from portal.usage.models import CallStatus
from tests.fakes.upstream import FakeUpstream
from tests.fixtures.gateway import (
    DEBUG_LOGGING_ENV,
    FundedUser,
    MakeUser,
    RunningGateway,
    config_copy,
    funded_user,
    migrated_sqlite_url,
    start_gateway,
    stop_gateway,
)
from tests.gateway.dumps import database_dump, files_dump
from tests.gateway.support import chat_model_names, settled_usage

pytestmark = pytest.mark.gateway

PLACES = (
    "system",
    "user",
    "earlier_user",
    "tool_description",
    "tool_parameter",
    "tool_argument",
    "tool_result",
    "reply",
)


def new_canaries() -> dict[str, str]:
    return {place: f"CANARY{uuid.uuid4().hex.upper()}" for place in PLACES}


def canary_request(canary: dict[str, str]) -> dict[str, Any]:
    """A chat request with a canary in every field that can carry content."""
    arguments = json.dumps({"query": f"find {canary['tool_argument']}"})
    return {
        "messages": [
            {"role": "system", "content": f"You are careful. {canary['system']}"},
            {"role": "user", "content": f"Look up {canary['earlier_user']} for me"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_canary1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": arguments},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_canary1", "content": canary["tool_result"]},
            {"role": "user", "content": f"Now summarise {canary['user']} please"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "lookup",
                    "description": f"Looks a thing up. {canary['tool_description']}",
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "query": {"type": "string", "description": canary["tool_parameter"]}
                        },
                        "required": ["query"],
                    },
                },
            }
        ],
        "max_tokens": 50,
    }


def leaks(canary: dict[str, str], text: str) -> list[str]:
    return [place for place, value in canary.items() if value in text]


# --------------------------------------------------------------------------- the calls

# One call through one endpoint: (client factory output, canaries, stream) -> answer text.
Send = Callable[[RunningGateway, str, dict[str, str], bool], Awaitable[str]]


async def chat_call(
    gateway: RunningGateway, token: str, canary: dict[str, str], stream: bool, *, model: str
) -> str:
    client = gateway.async_client(token)
    body = canary_request(canary)
    if not stream:
        completion = await client.chat.completions.create(model=model, **body)
        return completion.choices[0].message.content or ""
    chunks = await client.chat.completions.create(model=model, stream=True, **body)
    return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])


async def completions_call(
    gateway: RunningGateway, token: str, canary: dict[str, str], stream: bool
) -> str:
    client = gateway.async_client(token)
    prompt = f"{canary['system']} Summarise {canary['user']} and {canary['tool_argument']}"
    if not stream:
        answer = await client.completions.create(model=OPENAI_MODEL, prompt=prompt, max_tokens=50)
        return answer.choices[0].text
    chunks = await client.completions.create(
        model=OPENAI_MODEL, prompt=prompt, max_tokens=50, stream=True
    )
    return "".join([choice.text or "" async for chunk in chunks for choice in chunk.choices])


async def embeddings_call(
    gateway: RunningGateway, token: str, canary: dict[str, str], stream: bool
) -> str:
    assert not stream
    answer = await gateway.async_client(token).embeddings.create(
        model="text-embedding-3-small",
        input=[f"embed {canary['user']}", f"{canary['system']} {canary['tool_argument']}"],
    )
    assert len(answer.data) == 2
    return canary["reply"]  # an embedding has no text to carry the reply canary


async def responses_call(
    gateway: RunningGateway, token: str, canary: dict[str, str], stream: bool
) -> str:
    client = gateway.async_client(token)
    arguments = json.dumps({"query": f"find {canary['tool_argument']}"})
    body: dict[str, Any] = {
        "model": OPENAI_MODEL,
        "instructions": f"You are careful. {canary['system']}",
        "input": [
            {"role": "user", "content": f"Look up {canary['earlier_user']} for me"},
            {
                "type": "function_call",
                "call_id": "call_canary1",
                "name": "lookup",
                "arguments": arguments,
            },
            {
                "type": "function_call_output",
                "call_id": "call_canary1",
                "output": canary["tool_result"],
            },
            {"role": "user", "content": f"Now summarise {canary['user']} please"},
        ],
        "tools": [
            {
                "type": "function",
                "name": "lookup",
                "description": f"Looks a thing up. {canary['tool_description']}",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "query": {"type": "string", "description": canary["tool_parameter"]}
                    },
                    "required": ["query"],
                },
            }
        ],
        "max_output_tokens": 50,
    }
    if not stream:
        return (await client.responses.create(**body)).output_text
    events = await client.responses.create(stream=True, **body)
    return "".join([e.delta async for e in events if e.type == "response.output_text.delta"])


def anthropic_request(canary: dict[str, str]) -> dict[str, Any]:
    return {
        "system": f"You are careful. {canary['system']}",
        "messages": [
            {"role": "user", "content": f"Look up {canary['earlier_user']} for me"},
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "toolu_canary1",
                        "name": "lookup",
                        "input": {"query": f"find {canary['tool_argument']}"},
                    }
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_canary1",
                        "content": canary["tool_result"],
                    },
                    {"type": "text", "text": f"Now summarise {canary['user']} please"},
                ],
            },
        ],
        "tools": [
            {
                "name": "lookup",
                "description": f"Looks a thing up. {canary['tool_description']}",
                "input_schema": {
                    "type": "object",
                    "properties": {
                        "query": {"type": "string", "description": canary["tool_parameter"]}
                    },
                    "required": ["query"],
                },
            }
        ],
        "max_tokens": 50,
    }


async def messages_call(
    gateway: RunningGateway, token: str, canary: dict[str, str], stream: bool, *, model: str
) -> str:
    client = gateway.anthropic_client(token)
    body = anthropic_request(canary)
    if not stream:
        answer = await client.messages.create(model=model, **body)
        return "".join(block.text for block in answer.content if block.type == "text")
    async with client.messages.stream(model=model, **body) as events:
        return "".join([piece async for piece in events.text_stream])


def bind(send: Callable[..., Awaitable[str]], **kwargs: Any) -> Send:
    async def bound(gateway: RunningGateway, token: str, canary: dict[str, str], stream: bool):
        return await send(gateway, token, canary, stream, **kwargs)

    return bound


OPENAI_MODEL = "gpt-4.1-nano"
ANTHROPIC_MODEL = "claude-haiku-4-5"
ON_THE_WIRE = {"system", "user", "tool_argument"}  # what every endpoint below really sends


def every_call() -> list[tuple[str, Send, tuple[bool, ...]]]:
    """(name, call, stream modes): chat on every model, then every other POST endpoint."""
    calls: list[tuple[str, Send, tuple[bool, ...]]] = [
        (f"chat {model}", bind(chat_call, model=model), (False, True))
        for model in chat_model_names()  # the debug gateway's unpriced one: refused
    ]
    return [
        *calls,
        ("completions", completions_call, (False, True)),
        ("embeddings", embeddings_call, (False,)),
        ("responses", responses_call, (False, True)),
        ("messages anthropic", bind(messages_call, model=ANTHROPIC_MODEL), (False, True)),
        ("messages openai", bind(messages_call, model=OPENAI_MODEL), (False, True)),
    ]


async def send_canaries_everywhere(
    gateway: RunningGateway,
    db: Database,
    make_user: Callable[[str], Awaitable[FundedUser]],
    upstream: FakeUpstream,
) -> dict[str, str]:
    """Every endpoint (chat: every model), plain and streamed, answered and failed with an
    upstream error quoting the prompt, canaries everywhere; returns the canaries once
    every call has settled."""
    canary = new_canaries()
    user = await make_user("10")
    calls = 0
    for name, send, modes in every_call():
        for stream in modes:
            upstream.reply_text = f"Here is the summary: {canary['reply']} done"
            answer = await send(gateway, user.token, canary, stream)
            assert canary["reply"] in answer, (name, stream)
            sent = json.dumps(upstream.requests[-1]["body"])
            # The upstream did get the content: the canaries are really on the wire.
            assert not ON_THE_WIRE - set(leaks(canary, sent)), (name, stream)

            # An upstream error that quotes the request (and the fallbacks' attempts).
            quoted = f"Invalid request near {canary['user']!r} (system: {canary['system']})"
            upstream.fail_next(400, message=quoted, count=3)
            with pytest.raises((openai.APIStatusError, anthropic.APIStatusError)) as failed:
                await send(gateway, user.token, canary, stream)
            assert 400 <= failed.value.status_code < 600, (name, stream)
            upstream.reset()
            calls += 2

    records = await settled_usage(db, user.user_id, calls)
    statuses = sorted(r.status for r in records)
    assert statuses == sorted([CallStatus.SUCCESS, CallStatus.FAILED] * (calls // 2))
    return canary


def redis_dump(url: str) -> str:
    """Every key and value of the Redis database, read by type (never DUMP: it compresses)."""
    client = redis.Redis.from_url(url)
    parts: list[str] = []
    try:
        for key in client.scan_iter(count=1000):
            kind = client.type(key).decode()
            value: Any
            if kind == "string":
                value = client.get(key)
            elif kind == "hash":
                value = client.hgetall(key)
            elif kind == "list":
                value = client.lrange(key, 0, -1)
            elif kind == "set":
                value = client.smembers(key)
            elif kind == "zset":
                value = client.zrange(key, 0, -1, withscores=True)
            elif kind == "stream":
                value = client.xrange(key)
            else:
                value = kind
            parts.append(f"{key!r} {kind} {value!r}")
    finally:
        client.close()
    return "\n".join(parts)


def metrics_text(gateway: RunningGateway) -> str:
    response = httpx.get(f"{gateway.url}/metrics", timeout=30)
    assert response.status_code == 200 and "wfg_gateway_requests_total" in response.text
    return response.text


def assert_nothing_kept(canary: dict[str, str], gateway: RunningGateway, dump: str) -> None:
    assert leaks(canary, dump) == []
    assert leaks(canary, gateway.logs()) == []
    assert leaks(canary, files_dump([gateway.log_path.parent])) == []  # logs, spool, var/
    spool = gateway.log_path.parent / "var" / "spool"
    assert leaks(canary, files_dump([spool]) if spool.exists() else "") == []
    metrics = metrics_text(gateway)
    assert "wfg_gateway_tokens_total" in metrics  # the calls were counted, their text not
    assert leaks(canary, metrics) == []


async def test_no_canary_reaches_the_database_or_the_logs(
    gateway: RunningGateway, db: Database, make_user: MakeUser, fresh_upstream: FakeUpstream
) -> None:
    canary = await send_canaries_everywhere(gateway, db, make_user, fresh_upstream)
    assert_nothing_kept(canary, gateway, await database_dump(gateway.database_url))


async def test_no_canary_in_a_python_warning_on_stderr(
    gateway: RunningGateway, make_user: MakeUser, fresh_upstream: FakeUpstream
) -> None:
    """A Responses stream whose `content_part.done` part lacks `logprobs` made pydantic
    write a UserWarning quoting the reply's last characters to the gateway's stderr
    (captured with its logs; issue 19, on LiteLLM 1.108.5). On 1.110.2 that part parses
    without a warning; warnings go through the log scrubbing either way
    (`tests/unit/test_log_scrubbing.py` shows one withheld)."""
    canary = new_canaries()
    user = await make_user("10")
    fresh_upstream.part_logprobs = False
    for attempt in range(3):  # distinct replies: a warning is shown once per text
        fresh_upstream.reply_text = f"The answer is {canary['reply']} number {attempt}"
        answer = await responses_call(gateway, user.token, canary, stream=True)
        assert canary["reply"] in answer
    # (stderr is unbuffered and the warning is written while the stream is relayed.)
    assert leaks(canary, gateway.logs()) == []


async def test_no_canary_in_the_logs_at_debug_level(
    debug_gateway: RunningGateway, db: Database, make_user: MakeUser, fresh_upstream: FakeUpstream
) -> None:
    canary = await send_canaries_everywhere(debug_gateway, db, make_user, fresh_upstream)
    assert_nothing_kept(canary, debug_gateway, await database_dump(debug_gateway.database_url))
    # Debug logging really was on and said a lot, so its silence about content counts.
    logs = debug_gateway.logs()
    assert re.search(r"\bdebug\b", logs, re.IGNORECASE) and len(logs) > 20_000


# --------------------------------------------------------------------------- with Redis

TIGHT_PLAN = "tight"  # one request a minute: the second is a 429


@pytest.fixture(scope="module")
def redis_gateway(
    redis_url: str, upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    """SQLite + Redis (auth cache, limits), every logger at debug, in text format."""
    work_dir: Path = tmp_path_factory.mktemp("canary-redis-gateway")
    config = config_copy(
        work_dir,
        {"workforce_gateway": {"limits": {"plans": {TIGHT_PLAN: {"rpm": 1}}}}},
    )
    running = start_gateway(
        database_url=migrated_sqlite_url(work_dir),
        upstream=upstream,
        work_dir=work_dir,
        extra_env={
            **DEBUG_LOGGING_ENV,
            "LOG_FORMAT": "text",
            "REDIS_URL": redis_url,
            "WFG_CONFIG": str(config),
        },
    )
    yield running
    stop_gateway(running)


@pytest.fixture
async def redis_gateway_db(redis_gateway: RunningGateway) -> AsyncIterator[Database]:
    database = open_database(redis_gateway.database_url)
    yield database
    await database.dispose()


@pytest.mark.redis
async def test_no_canary_in_redis_metrics_or_debug_logs_redis(
    redis_gateway: RunningGateway,
    redis_gateway_db: Database,
    redis_url: str,
    fresh_upstream: FakeUpstream,
) -> None:
    async def make(credits: str) -> FundedUser:
        return await funded_user(redis_gateway_db, units=credits_to_units(credits))

    canary = await send_canaries_everywhere(redis_gateway, redis_gateway_db, make, fresh_upstream)
    dump = redis_dump(redis_url)
    # Redis really holds the gateway's state (auth cache, limits), so its silence counts.
    assert "wfg:auth:" in dump and "wfg:limits" in dump
    assert leaks(canary, dump) == []
    assert_nothing_kept(canary, redis_gateway, await database_dump(redis_gateway.database_url))


LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d (?P<level>[A-Z]+) (?P<logger>\S+)(?P<rest>.*)$")


@pytest.mark.redis
async def test_expected_refusals_are_logged_below_error_redis(
    redis_gateway: RunningGateway, redis_gateway_db: Database, fresh_upstream: FakeUpstream
) -> None:
    """401, 402, 403, 404 and 429 are the gateway doing its job: INFO or WARNING lines an
    operator can count, never ERROR lines that page someone."""
    funded = await funded_user(redis_gateway_db, units=credits_to_units("1"))
    broke = await funded_user(redis_gateway_db, units=0)
    unverified = await funded_user(redis_gateway_db, units=credits_to_units("1"), verified=False)
    tight = await funded_user(redis_gateway_db, units=credits_to_units("1"), plan=TIGHT_PLAN)
    chat = {"model": OPENAI_MODEL, "messages": [{"role": "user", "content": "hi"}]}
    start = len(redis_gateway.logs().splitlines())

    expected = [
        ("POST", "/v1/chat/completions", "wfg_" + "0" * 43, chat, 401),
        ("GET", "/v1/credits", None, None, 401),
        ("POST", "/v1/chat/completions", broke.token, chat, 402),
        ("POST", "/v1/messages", broke.token, {**chat, "max_tokens": 10}, 402),
        ("POST", "/v1/chat/completions", unverified.token, chat, 403),
        ("POST", "/v1/chat/completions", funded.token, {**chat, "model": "o1-pro"}, 404),
        ("GET", "/v1/models/o1-pro", funded.token, None, 404),
        ("POST", "/openai/v1/chat/completions", funded.token, chat, 404),
        ("GET", "/health", funded.token, None, 404),
        ("POST", "/v1/chat/completions", tight.token, chat, 200),
        ("POST", "/v1/chat/completions", tight.token, chat, 429),
        ("POST", "/v1/chat/completions", funded.token, {**chat, "api_base": "x"}, 400),
    ]
    async with httpx.AsyncClient(base_url=redis_gateway.url, timeout=60) as client:
        for method, path, token, body, status in expected:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            response = await client.request(method, path, json=body, headers=headers)
            assert response.status_code == status, (path, status, response.text)

    lines = redis_gateway.logs().splitlines()[start:]
    levels = [m["level"] for line in lines if (m := LOG_LINE.match(line))]
    assert levels, "\n".join(lines[:50])
    errors = [
        line
        for line in lines
        if (m := LOG_LINE.match(line)) and m["level"] in ("ERROR", "CRITICAL")
    ]
    assert errors == []
    text = "\n".join(lines)
    for status in (401, 402, 403, 404, 429):
        said = [
            line
            for line in lines
            if (m := LOG_LINE.match(line))
            and m["level"] in ("INFO", "WARNING")
            and (f"refused {status}" in line or f'HTTP/1.1" {status}' in line)
        ]
        assert said, f"no INFO/WARNING line for {status}:\n{text[-3000:]}"
