"""Stream and connection faults: cut, stall, hang, on every streamed endpoint.

Read with raw httpx, so what is checked is what any client really sees on the
socket: a body that stops in the middle of the chunked response, or silence.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price-map fetch at import

import litellm

from .upstream import FakeUpstream

pytestmark = pytest.mark.filterwarnings(
    r"ignore:Items? .* (is|are) using the `ReadOnly` qualifier:UserWarning"
)

KEY = "fake-upstream-key"
MESSAGES = [{"role": "user", "content": "Say hello please"}]
REPLY = "one two three four five six"


@dataclass(frozen=True)
class Endpoint:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    is_content: Callable[[dict[str, Any]], bool]
    closing: tuple[str, ...]  # substrings only the frames after the text contain


def _chat_content(p: dict[str, Any]) -> bool:
    return bool(p.get("choices") and p["choices"][0]["delta"].get("content"))


BEARER = {"authorization": f"Bearer {KEY}"}
CHAT_BODY = {"messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
ENDPOINTS = {
    "openai-chat": Endpoint(
        "/v1/chat/completions",
        {"model": "gpt-4o-mini", **CHAT_BODY},
        BEARER,
        _chat_content,
        ('"finish_reason":"stop"', '"usage":{', "[DONE]"),
    ),
    "openrouter-chat": Endpoint(
        "/api/v1/chat/completions",
        {"model": "openai/gpt-4o-mini", **CHAT_BODY},
        BEARER,
        _chat_content,
        ('"finish_reason":"stop"', '"usage":{', "[DONE]"),
    ),
    "anthropic": Endpoint(
        "/v1/messages",
        {
            "model": "claude-3-5-haiku-20241022",
            "max_tokens": 50,
            "messages": MESSAGES,
            "stream": True,
        },
        {"x-api-key": KEY, "anthropic-version": "2023-06-01"},
        lambda p: p["type"] == "content_block_delta",
        ("content_block_stop", "message_delta", "message_stop"),
    ),
    "gemini": Endpoint(
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
        {"contents": [{"role": "user", "parts": [{"text": "Say hello please"}]}]},
        {"x-goog-api-key": KEY},
        lambda p: "finishReason" not in p["candidates"][0],
        ("finishReason", "candidatesTokenCount"),
    ),
    "openai-completions": Endpoint(
        "/v1/completions",
        {"model": "gpt-3.5-turbo-instruct", "prompt": "hi", **CHAT_BODY},
        BEARER,
        lambda p: bool(p.get("choices") and p["choices"][0]["text"]),
        ('"finish_reason":"stop"', '"usage":{', "[DONE]"),
    ),
    "openai-responses": Endpoint(
        "/v1/responses",
        {"model": "gpt-4o-mini", "input": "hi", "stream": True},
        BEARER,
        lambda p: p["type"] == "response.output_text.delta",
        ("response.output_text.done", "response.completed", '"usage":{'),
    ),
}


@pytest.fixture(scope="module")
def running() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture
def upstream(running: FakeUpstream) -> Iterator[FakeUpstream]:
    running.reset()
    running.reply_text = REPLY
    yield running
    running.reset()
    _eventually(lambda: running.streams_open == 0 and running.calls_hanging == 0)


def _eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


@dataclass
class Read:
    text: str  # everything received
    content_frames: int
    error: Exception | None


def _read_stream(
    upstream: FakeUpstream,
    endpoint: Endpoint,
    *,
    read_timeout: float = 5.0,
    on_content: Callable[[int], None] | None = None,
) -> Read:
    """Read the SSE body frame by frame until it ends or the connection fails."""
    text, content, error = "", 0, None
    timeout = httpx.Timeout(5.0, read=read_timeout)
    with httpx.Client(timeout=timeout) as client:
        try:
            with client.stream(
                "POST", upstream.url + endpoint.path, json=endpoint.body, headers=endpoint.headers
            ) as response:
                assert response.status_code == 200
                for line in response.iter_lines():
                    text += line + "\n"
                    data = line.removeprefix("data: ")
                    is_json = line.startswith("data: ") and data.startswith("{")
                    if is_json and endpoint.is_content(json.loads(data)):
                        content += 1
                        if on_content:
                            on_content(content)
        except (httpx.TransportError, httpx.RemoteProtocolError) as exc:
            error = exc
    return Read(text, content, error)


def _assert_no_closing(read: Read, endpoint: Endpoint) -> None:
    for marker in endpoint.closing:
        assert marker not in read.text, marker


# --------------------------------------------------------------------------- cut


@pytest.mark.parametrize("name", list(ENDPOINTS))
def test_cut_stream_after_chunks(upstream: FakeUpstream, name: str) -> None:
    endpoint = ENDPOINTS[name]
    upstream.cut_stream_after(2)

    cut = _read_stream(upstream, endpoint)
    whole = _read_stream(upstream, endpoint)  # count=1: the next stream is whole

    assert isinstance(cut.error, httpx.RemoteProtocolError)  # a broken connection
    assert "incomplete chunked read" in str(cut.error)
    assert cut.content_frames == 2
    _assert_no_closing(cut, endpoint)
    assert whole.error is None
    assert all(marker in whole.text for marker in endpoint.closing)
    assert upstream.calls_served == 1  # only the whole one
    _eventually(lambda: upstream.streams_open == 0)


@pytest.mark.parametrize("name", list(ENDPOINTS))
def test_end_stream_after_chunks_closes_a_close_delimited_body_cleanly(
    upstream: FakeUpstream, name: str
) -> None:
    endpoint = ENDPOINTS[name]
    upstream.end_stream_after(2, count=2)
    with (
        httpx.Client(timeout=10) as client,
        client.stream(
            "POST", upstream.url + endpoint.path, json=endpoint.body, headers=endpoint.headers
        ) as response,
    ):
        headers = response.headers
    assert headers.get("connection") == "close"
    assert "transfer-encoding" not in headers and "content-length" not in headers

    ended = _read_stream(upstream, endpoint)

    assert ended.error is None  # an ordinary end of body, as far as HTTP can tell
    assert ended.content_frames == 2
    _assert_no_closing(ended, endpoint)
    assert upstream.calls_served == 0
    _eventually(lambda: upstream.streams_open == 0)


@pytest.mark.parametrize("name", ["openai-chat", "anthropic", "openai-responses"])
def test_cut_before_text_and_after_all_of_it(upstream: FakeUpstream, name: str) -> None:
    endpoint = ENDPOINTS[name]
    upstream.cut_stream_after(0)
    upstream.cut_stream_after(100)

    before = _read_stream(upstream, endpoint)
    after = _read_stream(upstream, endpoint)

    assert before.error is not None
    assert after.error is not None
    assert before.content_frames == 0
    assert before.text  # the frames before the text still went out
    assert after.content_frames == len(REPLY.split())
    _assert_no_closing(after, endpoint)
    assert upstream.calls_served == 0


def test_cut_count_and_plain_calls_do_not_consume(upstream: FakeUpstream) -> None:
    endpoint = ENDPOINTS["openai-chat"]
    upstream.cut_stream_after(1, count=2)

    plain = httpx.post(
        f"{upstream.url}/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": MESSAGES},
        headers=BEARER,
    )
    reads = [_read_stream(upstream, endpoint) for _ in range(3)]

    assert plain.json()["choices"][0]["message"]["content"] == REPLY
    assert [r.error is not None for r in reads] == [True, True, False]
    assert upstream.calls_served == 2


async def test_cut_seen_by_the_openai_sdk_and_litellm(upstream: FakeUpstream) -> None:
    upstream.cut_stream_after(2, count=2)
    sdk = openai.AsyncOpenAI(base_url=f"{upstream.url}/v1", api_key=KEY, max_retries=0)

    texts: list[str] = []
    with pytest.raises(openai.APIConnectionError) as raised:
        stream = await sdk.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        )
        async for chunk in stream:
            texts += [chunk.choices[0].delta.content or ""]
    await sdk.close()
    with pytest.raises(litellm.exceptions.MidStreamFallbackError):
        response = await litellm.acompletion(
            model="openai/gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            api_base=f"{upstream.url}/v1",
            api_key=KEY,
            max_retries=0,
        )
        async for _ in response:
            pass

    assert "".join(texts) == "one two "
    assert "incomplete chunked read" in str(raised.value.__cause__)
    assert upstream.calls_served == 0


# --------------------------------------------------------------------------- stall


@pytest.mark.parametrize("name", list(ENDPOINTS))
def test_stall_stream_until_the_client_gives_up(upstream: FakeUpstream, name: str) -> None:
    endpoint = ENDPOINTS[name]
    upstream.stall_stream_after(1)
    seen: dict[str, Any] = {}

    def while_stalled(content: int) -> None:
        seen["open"] = upstream.streams_open
        # The fake's event loop still serves other calls during the stall.
        other = httpx.post(
            f"{upstream.url}/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": MESSAGES},
            headers=BEARER,
        )
        seen["other"] = other.status_code

    started = time.monotonic()
    read = _read_stream(upstream, endpoint, read_timeout=0.5, on_content=while_stalled)

    assert isinstance(read.error, httpx.ReadTimeout)
    assert time.monotonic() - started >= 0.5
    assert read.content_frames == 1
    _assert_no_closing(read, endpoint)
    assert seen == {"open": 1, "other": 200}
    _eventually(lambda: upstream.streams_open == 0)  # the fake saw the client leave
    assert upstream.calls_served == 1  # the other call only


def test_reset_ends_a_stall_by_dropping_the_connection(upstream: FakeUpstream) -> None:
    upstream.stall_stream_after(2)
    result: list[Read] = []
    reader = threading.Thread(
        target=lambda: result.append(_read_stream(upstream, ENDPOINTS["anthropic"])),
    )
    reader.start()
    _eventually(lambda: upstream.streams_open == 1)
    time.sleep(0.1)

    upstream.reset()
    reader.join(timeout=5)

    [read] = result
    assert isinstance(read.error, httpx.RemoteProtocolError)
    assert read.content_frames == 2
    _eventually(lambda: upstream.streams_open == 0)
    assert upstream.calls_served == 0


def test_stop_with_a_stalled_stream_and_a_hung_call_is_prompt() -> None:
    fake = FakeUpstream(api_key=KEY).start()
    errors: list[Exception | None] = []
    fake.hang_next()
    hung = threading.Thread(target=lambda: errors.append(_post_chat(fake, timeout=10)))
    hung.start()
    _eventually(lambda: fake.calls_hanging == 1)
    fake.stall_stream_after(0)
    stalled = threading.Thread(
        target=lambda: errors.append(_read_stream(fake, ENDPOINTS["openai-chat"]).error)
    )
    stalled.start()
    _eventually(lambda: fake.streams_open == 1)
    threads = [hung, stalled]

    started = time.monotonic()
    fake.stop()
    for thread in threads:
        thread.join(timeout=5)

    assert time.monotonic() - started < 1.0
    assert len(errors) == 2
    assert all(isinstance(e, httpx.RemoteProtocolError) for e in errors)


# --------------------------------------------------------------------------- hang


def _post_chat(upstream: FakeUpstream, *, timeout: float) -> Exception | None:
    try:
        httpx.post(
            f"{upstream.url}/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": MESSAGES},
            headers=BEARER,
            timeout=timeout,
        )
    except httpx.HTTPError as exc:
        return exc
    return None


def test_hang_next_until_the_client_gives_up(upstream: FakeUpstream) -> None:
    upstream.hang_next()

    started = time.monotonic()
    error = _post_chat(upstream, timeout=0.4)

    assert isinstance(error, httpx.ReadTimeout)  # no headers ever came
    assert time.monotonic() - started >= 0.4
    assert len(upstream.requests) == 1  # it was received
    _eventually(lambda: upstream.calls_hanging == 0)
    assert _post_chat(upstream, timeout=5) is None  # count=1
    assert upstream.calls_served == 1


@pytest.mark.parametrize("stream", [False, True])
async def test_hang_next_is_a_first_byte_timeout_for_the_sdk(
    upstream: FakeUpstream, stream: bool
) -> None:
    upstream.hang_next(count=2)
    sdk = openai.AsyncOpenAI(base_url=f"{upstream.url}/v1", api_key=KEY, max_retries=0, timeout=0.3)

    for _ in range(2):
        with pytest.raises(openai.APITimeoutError):
            await sdk.responses.create(model="gpt-4o-mini", input="hi", stream=stream)
    response = await sdk.responses.create(model="gpt-4o-mini", input="hi")
    await sdk.close()

    assert response.output_text == REPLY
    _eventually(lambda: upstream.calls_hanging == 0)


def test_reset_ends_a_hang_without_a_response(upstream: FakeUpstream) -> None:
    upstream.hang_next()
    errors: list[Exception | None] = []
    caller = threading.Thread(target=lambda: errors.append(_post_chat(upstream, timeout=10)))
    caller.start()
    _eventually(lambda: upstream.calls_hanging == 1)

    upstream.reset()
    caller.join(timeout=5)

    [error] = errors
    assert isinstance(error, httpx.RemoteProtocolError)
    assert "without sending a response" in str(error)
    _eventually(lambda: upstream.calls_hanging == 0)  # the handler ends after the socket


def test_hang_then_fail_then_stream_fault_order(upstream: FakeUpstream) -> None:
    """One fault of each queue per call: a hung call first, then the error."""
    upstream.hang_next()
    upstream.fail_next(503, message="overloaded")
    upstream.cut_stream_after(1)

    hung = _post_chat(upstream, timeout=0.3)
    failed = _read_failure(upstream)
    cut = _read_stream(upstream, ENDPOINTS["openai-chat"])

    assert isinstance(hung, httpx.ReadTimeout)
    assert failed == (503, "overloaded")
    assert cut.error is not None
    assert cut.content_frames == 1


def _read_failure(upstream: FakeUpstream) -> tuple[int, str]:
    endpoint = ENDPOINTS["openai-chat"]
    response = httpx.post(upstream.url + endpoint.path, json=endpoint.body, headers=BEARER)
    return response.status_code, response.json()["error"]["message"]
