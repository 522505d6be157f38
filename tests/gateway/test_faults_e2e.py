"""Streams end honestly, deadlines hold, and a client that leaves cancels the upstream
call (issue 8, point 4) — real faults from the fake upstream, a real gateway process.

- The upstream closes a stream after 3 chunks: each API's client gets an error event in
  that API's own format and never its finish (`[DONE]`, `message_stop`,
  `response.completed`, a finish_reason); what was delivered is billed ("incomplete").
- The upstream goes quiet: the stream ends with an error event once
  `timeouts.stream_idle_seconds` passed, and the delivered chunks are billed.
- The upstream never answers: a stream is refused within `first_byte_seconds`; a plain
  call within `request_seconds`, however many retries and fallbacks the Router makes.
- The client leaves (mid-stream, before a stream's first byte, or while a plain call
  waits upstream): the call runs on upstream and is settled exactly once from the usage
  the upstream reports (issue 19.3); a deadline that passes bills the counted prompt.

The session gateway runs the default config; the timeout tests use one extra gateway
(SQLite) with stream_idle 2 s, first byte 3 s, request 8 s and 3 s per upstream attempt,
and the stall test also one whose idle timeout (30 s) the 3 s upstream read timeout beats.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import openai
import orjson
import pytest

from gateway_plugins import litellm_bridge
from gateway_plugins.upstream import CLIENT_LEFT_LOG
from portal.db import Database, open_database
from portal.usage.models import CallStatus
from tests.fakes.upstream import FakeUpstream
from tests.fakes.upstream.wire import DEFAULT_REPLY_TEXT
from tests.fixtures.gateway import (
    Closing,
    MakeUser,
    RunningGateway,
    eventually,
    funded_user,
    start_configured_gateway,
    stop_gateway,
)
from tests.gateway.accounting import debits_by_call
from tests.gateway.support import (
    expected_units,
    fake_completion_tokens,
    fake_prompt_tokens,
    money,
    settled_usage,
    stream_request,
    streamed_response,
)

pytestmark = pytest.mark.gateway

APIS = ["chat", "messages", "responses"]
MODELS = {"chat": "gpt-4.1-nano", "messages": "claude-haiku-4-5", "responses": "gpt-4.1-nano"}
PROMPT = "Tell me a long story"
FUNDING = 10**9
# What each API sends when it finished: none of it may reach the client of a broken stream.
FINISH_MARKERS = [b"[DONE]", b"message_stop", b"response.completed", b'"finish_reason":"stop"']

IDLE_SECONDS, FIRST_BYTE_SECONDS, REQUEST_SECONDS, ATTEMPT_SECONDS = 2, 3, 8, 3
LONG_IDLE_SECONDS = 30  # an idle timeout the upstream read timeout (3 s) always beats
# What a hung upstream would take without the deadlines under test (2 x 3 attempts x 3 s
# for a model with a fallback): the ceiling a busy machine may take the deadlines up to.
WITHOUT_DEADLINES_SECONDS = 2 * 3 * ATTEMPT_SECONDS


def long_reply(words: int) -> str:
    return " ".join(f"part{i}" for i in range(words))


@dataclass
class Ended:
    """How a stream ended for the client: the text pieces it got, the finish reasons and
    event types it saw, and the error (an exception or an error event) it ended with."""

    pieces: list[str] = field(default_factory=list)
    finishes: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    error: Any = None
    last_piece_at: float = 0.0
    ended_at: float = 0.0

    def got(self, piece: str | None) -> None:
        if piece:
            self.pieces.append(piece)
            self.last_piece_at = time.monotonic()


async def stream_chat(gateway: RunningGateway, token: str, ended: Ended) -> None:
    client = gateway.async_client(token, timeout=60)
    try:
        stream = await client.chat.completions.create(
            model=MODELS["chat"],
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=400,
            stream=True,
        )
        async for chunk in stream:
            for choice in chunk.choices:
                ended.got(choice.delta.content)
                if choice.finish_reason:
                    ended.finishes.append(choice.finish_reason)
    except openai.APIError as error:  # the SDK raises on an OpenAI-format error event
        ended.error = error
    finally:
        ended.ended_at = time.monotonic()
        await client.close()


def anthropic_client(gateway: RunningGateway, token: str) -> anthropic.AsyncAnthropic:
    return gateway.anthropic_client(token, timeout=60)


async def stream_messages(gateway: RunningGateway, token: str, ended: Ended) -> None:
    client = anthropic_client(gateway, token)
    try:
        stream = await client.messages.create(
            model=MODELS["messages"],
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=400,
            stream=True,
        )
        async for event in stream:
            ended.events.append(event.type)
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                ended.got(event.delta.text)
            if event.type == "message_delta" and event.delta.stop_reason:
                ended.finishes.append(event.delta.stop_reason)
    except anthropic.APIStatusError as error:  # the SDK raises on `event: error`
        ended.error = error
    finally:
        ended.ended_at = time.monotonic()
        await client.close()


async def stream_responses(gateway: RunningGateway, token: str, ended: Ended) -> None:
    client = gateway.async_client(token, timeout=60)
    try:
        stream = await client.responses.create(
            model=MODELS["responses"], input=PROMPT, max_output_tokens=400, stream=True
        )
        async for event in stream:  # the SDK yields the `error` event as the last one
            ended.events.append(event.type)
            if event.type == "response.output_text.delta":
                ended.got(event.delta)
            if event.type == "error":
                ended.error = event
    finally:
        ended.ended_at = time.monotonic()
        await client.close()


STREAMERS = {"chat": stream_chat, "messages": stream_messages, "responses": stream_responses}


def error_code(api: str, ended: Ended) -> str:
    """The error each client ended with: the gateway's code in OpenAI formats, the error
    type in Anthropic's (which has no code)."""
    if api == "chat":
        assert isinstance(ended.error, openai.APIError), ended
        assert isinstance(ended.error.body, dict), ended.error
        return str(ended.error.body["code"])
    if api == "messages":
        assert isinstance(ended.error, anthropic.APIStatusError), ended
        body = ended.error.body
        assert isinstance(body, dict) and body["type"] == "error", body
        return str(body["error"]["type"])
    assert ended.error is not None and ended.error.type == "error", ended
    return str(ended.error.code)


# The error each API's client gets: OpenAI formats carry our code, Anthropic's its type.
CUT = {"chat": "upstream_stream_cut", "messages": "api_error", "responses": "upstream_stream_cut"}
STALLED = {"chat": "upstream_timeout", "messages": "timeout_error", "responses": "upstream_timeout"}


async def raw_stream(gateway: RunningGateway, token: str, api: str) -> bytes:
    """Every byte of a streamed answer, as sent (no SDK in between)."""
    body = stream_request(api, MODELS[api], PROMPT)
    async with streamed_response(gateway, token, api, body) as response:
        assert response.status_code == 200
        return b"".join([chunk async for chunk in response.aiter_bytes()])


def last_event(raw: bytes) -> tuple[str | None, dict[str, Any]]:
    """(event name, data) of the last SSE event of a stream."""
    frame = raw.strip().split(b"\n\n")[-1]
    name, data = None, {}
    for line in frame.split(b"\n"):
        if line.startswith(b"event:"):
            name = line[6:].strip().decode()
        elif line.startswith(b"data:"):
            data = orjson.loads(line[5:])
    return name, data


def assert_error_event_in_format(api: str, raw: bytes, code: str) -> None:
    for marker in FINISH_MARKERS:
        assert marker not in raw, (api, marker)
    name, data = last_event(raw)
    if api == "chat":  # `data: {"error": {...}}`, as OpenAI ends a failed stream
        assert name is None and data["error"]["code"] == code, raw[-400:]
    elif api == "messages":  # `event: error` / {"type": "error", "error": {...}}
        assert name == "error" and data["type"] == "error", raw[-400:]
        assert data["error"]["type"] == code, data
    else:  # `event: error` / {"type": "error", "code": ..., "sequence_number": ...}
        assert name == "error" and data["type"] == "error" and data["code"] == code, data
        assert isinstance(data["sequence_number"], int)


async def assert_billed_for_delivery(
    db: Database, user_id: str, calls: int, error_type: str
) -> None:
    """`calls` incomplete records billed for what was delivered, each debited once, the
    balance down by exactly their credits, nothing held."""
    records = await settled_usage(db, user_id, calls)
    assert len(records) == calls
    for record in records:
        assert record.status == CallStatus.INCOMPLETE, record.status
        assert record.error_type == error_type
        assert record.completion_tokens > 0 and record.credits > 0
    assert await debits_by_call(db, user_id) == {r.call_id: 1 for r in records}
    state = await money(db, user_id)
    assert state.reserved == 0
    assert FUNDING - state.balance == sum(r.credits for r in records)
    assert state.balance == state.ledger_sum


# --------------------------------------------------------------------- upstream cuts


@pytest.mark.parametrize("api", APIS)
async def test_a_stream_the_upstream_cuts_ends_with_an_error_event_and_is_billed(
    api: str,
    gateway: RunningGateway,
    db: Database,
    make_user: MakeUser,
    fresh_upstream: FakeUpstream,
) -> None:
    fresh_upstream.reply_text = long_reply(20)
    # Paced, so the gateway is relaying when the cut comes (a cut before the first chunk
    # reached the gateway is retried by the Router, and the client gets a whole answer).
    fresh_upstream.chunk_delay = 0.05
    fresh_upstream.cut_stream_after(3, count=2)
    user = await make_user("1")

    ended = Ended()
    await STREAMERS[api](gateway, user.token, ended)
    raw = await raw_stream(gateway, user.token, api)

    assert "".join(ended.pieces) == "part0 part1 part2 "  # the 3 chunks, then the error
    assert ended.finishes == []
    assert not {"message_stop", "response.completed"} & set(ended.events)
    assert error_code(api, ended) == CUT[api]
    assert_error_event_in_format(api, raw, CUT[api])
    assert fresh_upstream.calls_served == 0 and len(fresh_upstream.requests) == 2
    await assert_billed_for_delivery(db, user.user_id, 2, "upstream_stream_cut")


# --------------------------------------------------------------------- client leaves


async def read_then_leave(api: str, gateway: RunningGateway, token: str) -> None:
    """Open a stream with the API's SDK, read two text pieces, close it."""
    if api == "messages":
        client: Any = anthropic_client(gateway, token)
        stream: Any = await client.messages.create(
            model=MODELS[api], messages=[{"role": "user", "content": PROMPT}], max_tokens=900,
            stream=True,
        )  # fmt: skip
    else:
        client = gateway.async_client(token, timeout=60)
        if api == "chat":
            stream = await client.chat.completions.create(
                model=MODELS[api], messages=[{"role": "user", "content": PROMPT}],
                max_tokens=900, stream=True,
            )  # fmt: skip
        else:
            stream = await client.responses.create(
                model=MODELS[api], input=PROMPT, max_output_tokens=900, stream=True
            )
    pieces = 0
    async for event in stream:
        text = (
            (event.choices and event.choices[0].delta.content)
            if api == "chat"
            else getattr(getattr(event, "delta", None), "text", None)
            if api == "messages"
            else getattr(event, "delta", None)
        )
        pieces += bool(text)
        if pieces == 2:
            break
    await stream.close()
    await client.close()


@pytest.mark.parametrize("api", APIS)
async def test_a_client_that_leaves_mid_stream_is_billed_the_upstreams_usage_once(
    api: str,
    gateway: RunningGateway,
    db: Database,
    make_user: MakeUser,
    fresh_upstream: FakeUpstream,
) -> None:
    """Issue 19.3: the gateway reads the stream on after the client left (for at most
    `abandoned_read_seconds`) and settles from the usage the upstream reports."""
    words = 60
    fresh_upstream.reply_text = long_reply(words)
    fresh_upstream.chunk_delay = 0.02  # the rest of the reply comes after the client left
    user = await make_user("1")

    await read_then_leave(api, gateway, user.token)

    # The upstream's stream ran to its end (its usage report included).
    await eventually(lambda: fresh_upstream.calls_served == 1, seconds=60, what="read on")
    (record,) = await settled_usage(db, user.user_id, 1)
    assert (record.status, record.error_type) == (CallStatus.INCOMPLETE, "client_gone")
    prompt = fake_prompt_tokens(PROMPT)
    assert (record.prompt_tokens, record.completion_tokens) == (prompt, words), record
    assert record.credits == expected_units(MODELS[api], prompt, words) > 0
    assert await debits_by_call(db, user.user_id) == {record.call_id: 1}
    state = await money(db, user.user_id)
    assert (state.reserved, FUNDING - state.balance) == (0, record.credits)


async def noticed_leaving(gateway: RunningGateway, upstream: FakeUpstream, before: int) -> None:
    """Once the gateway logged one more client leaving than `before` — or, on a gateway
    that cancels the upstream call instead, once the upstream saw it go."""
    await eventually(
        lambda: gateway.logs().count(CLIENT_LEFT_LOG) > before or upstream.calls_held == 0,
        seconds=60,
        what="the gateway noticed the client leaving",
    )


async def start_plain_then_leave(
    gateway: RunningGateway, upstream: FakeUpstream, token: str, closing: Closing
) -> None:
    """A plain call the upstream holds; the client leaves; returns once the gateway
    noticed (its log line) or, on a gateway that cancels the upstream, the upstream did."""
    client = closing(gateway.async_client(token, timeout=60))
    noticed = gateway.logs().count(CLIENT_LEFT_LOG)
    call = asyncio.ensure_future(
        client.chat.completions.create(
            model=MODELS["chat"], messages=[{"role": "user", "content": PROMPT}], max_tokens=50
        )
    )
    await eventually(lambda: upstream.calls_held == 1, seconds=60, what="call held upstream")
    call.cancel()  # the client gives up: its connection closes
    with pytest.raises(asyncio.CancelledError):
        await call
    await noticed_leaving(gateway, upstream, noticed)


async def test_a_client_that_leaves_a_plain_call_is_billed_the_upstreams_usage(
    gateway: RunningGateway,
    db: Database,
    make_user: MakeUser,
    fresh_upstream: FakeUpstream,
    closing: Closing,
) -> None:
    """Issue 19.3: 20 of 20 such calls were free on main; now the call runs on upstream
    in the background and settles from the usage the upstream reports."""
    fresh_upstream.hold_next()
    user = await make_user("1")

    await start_plain_then_leave(gateway, fresh_upstream, user.token, closing)
    assert (await money(db, user.user_id)).reserved > 0
    fresh_upstream.release_held()  # the upstream answers after the client left

    (record,) = await settled_usage(db, user.user_id, 1)
    prompt, completion = fake_prompt_tokens(PROMPT), fake_completion_tokens(DEFAULT_REPLY_TEXT)
    assert (record.status, record.http_status) == (CallStatus.INCOMPLETE, 499), record
    assert (record.prompt_tokens, record.completion_tokens) == (prompt, completion)
    assert record.credits == expected_units(MODELS["chat"], prompt, completion) > 0
    assert await debits_by_call(db, user.user_id) == {record.call_id: 1}
    state = await money(db, user.user_id)
    assert (state.reserved, FUNDING - state.balance) == (0, record.credits)
    assert fresh_upstream.calls_served == 1 and len(fresh_upstream.requests) == 1


@pytest.mark.parametrize("api", APIS)
async def test_a_stream_dropped_before_its_first_byte_is_billed_the_upstreams_usage(
    api: str,
    gateway: RunningGateway,
    db: Database,
    make_user: MakeUser,
    fresh_upstream: FakeUpstream,
) -> None:
    """Issue 19.3: 5 of 5 were free on main."""
    fresh_upstream.hold_next()
    user = await make_user("1")
    noticed = gateway.logs().count(CLIENT_LEFT_LOG)
    opened = asyncio.ensure_future(raw_stream(gateway, user.token, api))
    await eventually(lambda: fresh_upstream.calls_held == 1, seconds=60, what="call held")
    opened.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opened
    await noticed_leaving(gateway, fresh_upstream, noticed)
    fresh_upstream.release_held()

    (record,) = await settled_usage(db, user.user_id, 1)
    prompt, completion = fake_prompt_tokens(PROMPT), fake_completion_tokens(DEFAULT_REPLY_TEXT)
    assert (record.status, record.error_type) == (CallStatus.INCOMPLETE, "client_gone")
    assert (record.prompt_tokens, record.completion_tokens) == (prompt, completion), record
    assert record.credits == expected_units(MODELS[api], prompt, completion) > 0
    state = await money(db, user.user_id)
    assert (state.reserved, FUNDING - state.balance) == (0, record.credits)


# --------------------------------------------------------------------- deadlines


def timeouts_gateway(
    upstream: FakeUpstream, work: Path, idle_seconds: float
) -> Iterator[RunningGateway]:
    running = start_configured_gateway(
        upstream,
        work,
        {
            "router_settings": {"timeout": ATTEMPT_SECONDS},
            "workforce_gateway": {
                "timeouts": {
                    "stream_idle_seconds": idle_seconds,
                    "first_byte_seconds": FIRST_BYTE_SECONDS,
                    "request_seconds": REQUEST_SECONDS,
                }
            },
        },
    )
    yield running
    stop_gateway(running)


@pytest.fixture(scope="module")
def short_timeouts(
    upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    yield from timeouts_gateway(upstream, tmp_path_factory.mktemp("short-timeouts"), IDLE_SECONDS)


@pytest.fixture(scope="module")
def read_timeout_first(
    upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    """The short timeouts, but an idle timeout the upstream read timeout always beats: what
    a busy machine may do to `short_timeouts` (the read timer runs from the last byte, ours
    from when the gateway got round to the last chunk)."""
    work = tmp_path_factory.mktemp("read-timeout-first")
    yield from timeouts_gateway(upstream, work, LONG_IDLE_SECONDS)


@pytest.fixture
async def short_db(short_timeouts: RunningGateway) -> AsyncIterator[Database]:
    database = open_database(short_timeouts.database_url)
    yield database
    await database.dispose()


@pytest.fixture(params=["idle_timeout", "read_timeout"])
def stalled_gateway(request: pytest.FixtureRequest) -> RunningGateway:
    """The gateway whose idle timer notices a stall first, then the one whose upstream
    read timeout does."""
    name = "short_timeouts" if request.param == "idle_timeout" else "read_timeout_first"
    gateway: RunningGateway = request.getfixturevalue(name)
    return gateway


@pytest.fixture
async def stall_db(stalled_gateway: RunningGateway) -> AsyncIterator[Database]:
    database = open_database(stalled_gateway.database_url)
    yield database
    await database.dispose()


@pytest.mark.parametrize("api", APIS)
async def test_a_stalled_stream_ends_with_an_error_event_after_the_idle_timeout_and_is_billed(
    api: str, stalled_gateway: RunningGateway, stall_db: Database, fresh_upstream: FakeUpstream
) -> None:
    """A stall is told from a cut by what happened (the fake holds the stream open and
    never closes it), whichever timer notices it first: the gateway's idle timeout or the
    upstream read timeout (`read_timeout`, where the idle timeout is far longer)."""
    gateway, db = stalled_gateway, stall_db
    fresh_upstream.reply_text = long_reply(20)
    fresh_upstream.stall_stream_after(3)
    user = await funded_user(db, units=FUNDING)

    ended = Ended()
    await STREAMERS[api](gateway, user.token, ended)

    assert "".join(ended.pieces) == "part0 part1 part2 "
    assert ended.finishes == []
    assert not {"message_stop", "response.completed"} & set(ended.events)
    assert error_code(api, ended) == STALLED[api]
    # How soon is not asserted: the fake never ends the stream (only the gateway's timers
    # can), and the client's own read timeout (60 s) would have ended it with another error.
    # The gateway hung up on the stalled upstream stream (the fake would wait forever).
    await eventually(lambda: fresh_upstream.streams_open == 0, seconds=60, what="stall closed")
    await assert_billed_for_delivery(db, user.user_id, 1, "upstream_timeout")


async def assert_failed_billed_the_prompt(
    db: Database, user_id: str, status: int, model: str, messages: list[dict[str, str]]
) -> None:
    """Issue 19.3: a deadline that passed while the upstream worked is billed the prompt
    as counted before the call (0 on main)."""
    (record,) = await settled_usage(db, user_id, 1)
    counted = litellm_bridge.count_prompt_tokens("chat", {"messages": messages})
    assert (record.status, record.http_status) == (CallStatus.FAILED, status)
    assert (record.prompt_tokens, record.completion_tokens) == (counted, 0)
    assert record.credits == expected_units(model, counted, 0) > 0
    state = await money(db, user_id)
    assert (state.reserved, FUNDING - state.balance) == (0, record.credits)


async def test_a_hung_upstream_fails_a_stream_within_the_first_byte_timeout(
    short_timeouts: RunningGateway,
    short_db: Database,
    fresh_upstream: FakeUpstream,
    closing: Closing,
) -> None:
    fresh_upstream.hang_next(count=20)  # every retry and fallback would hang too
    user = await funded_user(short_db, units=FUNDING)
    client = closing(short_timeouts.async_client(user.token, timeout=120))

    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as refused:
        await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=50,
            stream=True,
        )
    elapsed = time.monotonic() - started

    assert refused.value.status_code == 504, refused.value.body
    assert refused.value.type == "api_error" and refused.value.code == "timeout"
    assert elapsed < WITHOUT_DEADLINES_SECONDS, elapsed
    await eventually(lambda: fresh_upstream.calls_hanging == 0, seconds=60, what="cancelled")
    await assert_failed_billed_the_prompt(
        short_db, user.user_id, 504, "gpt-4o-mini", [{"role": "user", "content": PROMPT}]
    )


async def test_a_hung_upstream_fails_a_plain_call_within_one_deadline_across_retries(
    short_timeouts: RunningGateway,
    short_db: Database,
    fresh_upstream: FakeUpstream,
    closing: Closing,
) -> None:
    # gpt-4o-mini: 3 attempts of 3 s, then its fallback's 3 attempts: 18 s without the
    # request deadline of 8 s.
    fresh_upstream.hang_next(count=20)
    user = await funded_user(short_db, units=FUNDING)
    client = closing(short_timeouts.async_client(user.token, timeout=120))

    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as refused:
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}], max_tokens=50
        )
    elapsed = time.monotonic() - started

    assert refused.value.status_code == 504, refused.value.body
    assert elapsed < WITHOUT_DEADLINES_SECONDS, elapsed
    assert len(fresh_upstream.requests) >= 2  # the Router did retry inside the deadline
    await eventually(lambda: fresh_upstream.calls_hanging == 0, seconds=60, what="cancelled")
    await assert_failed_billed_the_prompt(
        short_db, user.user_id, 504, "gpt-4o-mini", [{"role": "user", "content": PROMPT}]
    )
