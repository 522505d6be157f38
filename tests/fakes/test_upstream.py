"""The fake upstream is only useful if LiteLLM itself cannot tell it from the real thing.

Every test here drives the real ``litellm.acompletion`` client against the fake
(or reads the raw wire format with httpx) and checks what LiteLLM parsed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price-map fetch at import

import litellm

from .upstream import DEFAULT_REPLY_TEXT, FakeUpstream

# Third-party: importing litellm.llms.github_copilot.authenticator (done lazily by the first
# acompletion) makes pydantic warn about its ReadOnly TypedDict items.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:Items? .* (is|are) using the `ReadOnly` qualifier:UserWarning"
)

MODELS = {
    "openai": "openai/gpt-4o-mini",
    "anthropic": "anthropic/claude-3-5-haiku-20241022",
    "gemini": "gemini/gemini-2.0-flash",
    "openrouter": "openrouter/openai/gpt-4o-mini",
}
# Models that are in LiteLLM's local cost map (the ones above for Anthropic, Gemini and
# OpenRouter are not: they are served at cost 0.0, and gemini-2.0-flash gets its system
# prompt folded into the user turn because the map does not say it supports one).
PRICED_MODELS = {
    "openai": "openai/gpt-4o-mini",
    "anthropic": "anthropic/claude-haiku-4-5",
    "gemini": "gemini/gemini-2.5-flash",
}
PROVIDERS = list(MODELS)
WIRE_MODEL = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-3-5-haiku-20241022",
    "gemini": "gemini-2.0-flash",
    "openrouter": "openai/gpt-4o-mini",
}
WIRE_PATH = {
    "openai": "/v1/chat/completions",
    "anthropic": "/v1/messages",
    "gemini": "/v1beta/models/gemini-2.0-flash:generateContent",
    "openrouter": "/api/v1/chat/completions",
}

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello please"},
]
# 3 + 3 words, plus 3 per message.
PROMPT_TOKENS = 12
COMPLETION_TOKENS = len(DEFAULT_REPLY_TEXT.split())  # 5


@pytest.fixture(scope="module")
def running() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture
def upstream(running: FakeUpstream) -> Iterator[FakeUpstream]:
    running.reset()
    yield running
    running.reset()


def _client_args(upstream: FakeUpstream, provider: str) -> dict[str, Any]:
    env = upstream.env()
    prefix = provider.upper()
    # max_retries=0: the OpenAI SDK (used for openai/) would otherwise retry 429/5xx twice.
    return {
        "api_base": env[f"{prefix}_API_BASE"],
        "api_key": env[f"{prefix}_API_KEY"],
        "max_retries": 0,
    }


async def _complete(
    upstream: FakeUpstream, provider: str, *, model: str | None = None, **kwargs: Any
) -> Any:
    return await litellm.acompletion(
        model=model or MODELS[provider],
        messages=kwargs.pop("messages", MESSAGES),
        **_client_args(upstream, provider),
        **kwargs,
    )


async def _stream(
    upstream: FakeUpstream, provider: str, *, model: str | None = None, **kwargs: Any
) -> tuple[str, Any, int]:
    """Return (text, usage, number of chunks carrying text)."""
    response = await litellm.acompletion(
        model=model or MODELS[provider],
        messages=kwargs.pop("messages", MESSAGES),
        stream=True,
        stream_options={"include_usage": True},
        **_client_args(upstream, provider),
        **kwargs,
    )
    text, usage, text_chunks = "", None, 0
    async for chunk in response:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
            text_chunks += 1
        if getattr(chunk, "usage", None):
            usage = chunk.usage
    return text, usage, text_chunks


# --------------------------------------------------------------------------- LiteLLM parses it


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_completion_text_and_usage(upstream: FakeUpstream, provider: str) -> None:
    response = await _complete(upstream, provider)

    assert response.choices[0].message.content == DEFAULT_REPLY_TEXT
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.prompt_tokens == PROMPT_TOKENS
    assert response.usage.completion_tokens == COMPLETION_TOKENS
    assert response.usage.total_tokens == PROMPT_TOKENS + COMPLETION_TOKENS
    [request] = upstream.requests
    assert request["provider"] == provider
    assert request["path"] == WIRE_PATH[provider]
    assert request["model"] == WIRE_MODEL[provider]
    assert request["stream"] is False
    assert isinstance(request["body"], dict)
    assert upstream.calls_served == 1


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_stream_text_and_usage(upstream: FakeUpstream, provider: str) -> None:
    text, usage, text_chunks = await _stream(upstream, provider)

    assert text == DEFAULT_REPLY_TEXT
    assert text_chunks >= 3  # about one word per chunk, really streamed
    assert usage is not None
    assert usage.prompt_tokens == PROMPT_TOKENS
    assert usage.completion_tokens == COMPLETION_TOKENS
    [request] = upstream.requests
    assert request["provider"] == provider
    assert request["stream"] is True
    if provider == "gemini":
        assert request["path"].endswith(":streamGenerateContent")
    assert upstream.calls_served == 1


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_env_alone_points_litellm_at_the_fake(
    upstream: FakeUpstream, provider: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a LiteLLM proxy process does: no api_base/api_key, only env()."""
    for name, value in upstream.env().items():
        monkeypatch.setenv(name, value)

    response = await litellm.acompletion(model=MODELS[provider], messages=MESSAGES)

    assert response.choices[0].message.content == DEFAULT_REPLY_TEXT
    assert [r["provider"] for r in upstream.requests] == [provider]


def test_env_shape(running: FakeUpstream) -> None:
    url = running.url
    assert url.startswith("http://127.0.0.1:")
    assert running.env() == {
        "OPENAI_API_BASE": f"{url}/v1",
        "ANTHROPIC_API_BASE": url,
        "GEMINI_API_BASE": f"{url}/v1beta",
        "OPENROUTER_API_BASE": f"{url}/api/v1",
        "OPENAI_API_KEY": "fake-upstream-key",
        "ANTHROPIC_API_KEY": "fake-upstream-key",
        "GEMINI_API_KEY": "fake-upstream-key",
        "OPENROUTER_API_KEY": "fake-upstream-key",
    }


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("stream", [False, True])
async def test_usage_extra_cached_and_reasoning(
    upstream: FakeUpstream, provider: str, stream: bool
) -> None:
    upstream.usage_extra = {"cached_tokens": 4, "reasoning_tokens": 7}

    if stream:
        _, usage, _ = await _stream(upstream, provider)
    else:
        usage = (await _complete(upstream, provider)).usage

    # Cached tokens are part of the prompt; reasoning tokens are billed as output.
    assert usage.prompt_tokens == PROMPT_TOKENS
    assert usage.completion_tokens == COMPLETION_TOKENS + 7
    assert usage.prompt_tokens_details.cached_tokens == 4
    if provider != "anthropic":  # Anthropic reports thinking only inside output_tokens
        assert usage.completion_tokens_details.reasoning_tokens == 7


@pytest.mark.parametrize("provider", list(PRICED_MODELS))
async def test_priced_models_get_a_cost(upstream: FakeUpstream, provider: str) -> None:
    response = await _complete(upstream, provider, model=PRICED_MODELS[provider])

    assert response.usage.prompt_tokens == PROMPT_TOKENS
    assert litellm.completion_cost(completion_response=response) > 0


async def test_gemini_system_instruction_counts_like_a_message(upstream: FakeUpstream) -> None:
    """gemini-2.5-flash gets a real system_instruction; 2.0-flash a merged user turn."""
    await _complete(upstream, "gemini", model="gemini/gemini-2.5-flash")
    await _complete(upstream, "gemini")

    with_system, merged = (r["body"] for r in upstream.requests)
    assert "system_instruction" in with_system
    assert "system_instruction" not in merged
    assert len(merged["contents"][0]["parts"]) == 2


async def test_reply_text_and_chunk_delay(upstream: FakeUpstream) -> None:
    upstream.reply_text = "one two three four five six seven eight"
    upstream.chunk_delay = 0.02

    started = time.monotonic()
    text, usage, text_chunks = await _stream(upstream, "openai")

    assert time.monotonic() - started >= 8 * 0.02
    assert text == upstream.reply_text
    assert text_chunks == 8
    assert usage.completion_tokens == 8


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_fail_next_quotes_the_prompt(upstream: FakeUpstream, provider: str) -> None:
    canary = "canary-7f3a9 please never log me"
    messages = [{"role": "user", "content": canary}]
    upstream.fail_next(400)

    with pytest.raises(litellm.BadRequestError) as raised:
        await _complete(upstream, provider, messages=messages)

    assert raised.value.status_code == 400
    assert canary in str(raised.value)  # what our own logging must never repeat
    response = await _complete(upstream, provider, messages=messages)  # only one failure
    assert response.choices[0].message.content == DEFAULT_REPLY_TEXT
    assert upstream.calls_served == 1
    assert len(upstream.requests) == 2


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_fail_next_in_a_stream(upstream: FakeUpstream, provider: str) -> None:
    upstream.fail_next(400, message="bad thing")

    # Gemini streams make their request lazily, so the error can surface on iteration.
    with pytest.raises(litellm.BadRequestError) as raised:
        await _stream(upstream, provider)

    assert raised.value.status_code == 400
    assert "bad thing" in str(raised.value)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (429, litellm.RateLimitError),
        (500, litellm.InternalServerError),
        (401, litellm.AuthenticationError),
    ],
)
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_fail_next_status_and_count(
    upstream: FakeUpstream, provider: str, status: int, error: type[Exception]
) -> None:
    upstream.fail_next(status, message="upstream says no", count=2)

    for _ in range(2):
        # OpenRouter 500s come back as litellm.APIError, the base of InternalServerError.
        # OpenAI chat goes through LiteLLM's own HTTP handler (as the gateway's process
        # sets it), which names a 401 AuthenticationError only when its message speaks of
        # the key, BadRequestError otherwise: the status, which the gateway maps, is kept.
        expected: Any = error
        if (provider, status) == ("openrouter", 500):
            expected = litellm.APIError
        elif (provider, status) == ("openai", 401):
            expected = (litellm.AuthenticationError, litellm.BadRequestError)
        with pytest.raises(expected) as raised:
            await _complete(upstream, provider)
        assert raised.value.status_code == status
        assert "upstream says no" in str(raised.value)
    await _complete(upstream, provider)
    assert upstream.calls_served == 1


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_wrong_key_is_401(upstream: FakeUpstream, provider: str) -> None:
    args = _client_args(upstream, provider) | {"api_key": "sk-wrong-key-123456"}

    with pytest.raises(litellm.AuthenticationError) as raised:
        await litellm.acompletion(model=MODELS[provider], messages=MESSAGES, **args)

    assert raised.value.status_code == 401
    assert upstream.calls_served == 0


# --------------------------------------------------------------------------- raw wire format


def _sse_payloads(text: str) -> list[tuple[str | None, str]]:
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        event, data = None, None
        for line in block.splitlines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = line.removeprefix("data: ")
        if data is not None:
            events.append((event, data))
    return events


def test_openai_wire_stream(upstream: FakeUpstream) -> None:
    """Also shows the fake works from plain sync code."""
    body = {
        "model": "gpt-4o-mini",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    headers = {"authorization": f"Bearer {upstream.api_key}"}
    response = httpx.post(f"{upstream.url}/v1/chat/completions", json=body, headers=headers)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = _sse_payloads(response.text)
    assert events[-1] == (None, "[DONE]")
    chunks = [json.loads(data) for _, data in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert all(c["id"].startswith("chatcmpl-") for c in chunks)
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == PROMPT_TOKENS
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1])
    assert text == DEFAULT_REPLY_TEXT


def test_prompt_asks_for_a_long_streamed_reply(upstream: FakeUpstream) -> None:
    """`[reply with N words]` in the prompt: N content chunks, usage counting them; other
    calls at the same time keep `reply_text`."""
    asked = "Write a lot. [reply with 1200 words]"
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": asked}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    headers = {"authorization": f"Bearer {upstream.api_key}"}
    response = httpx.post(f"{upstream.url}/v1/chat/completions", json=body, headers=headers)

    chunks = [json.loads(data) for _, data in _sse_payloads(response.text)[:-1]]
    contents = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert len([piece for piece in contents if piece]) == 1200
    assert chunks[-1]["usage"]["completion_tokens"] == 1200
    short = httpx.post(
        f"{upstream.url}/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": MESSAGES},
        headers=headers,
    ).json()
    assert short["choices"][0]["message"]["content"] == DEFAULT_REPLY_TEXT


def test_anthropic_wire_stream_and_headers(upstream: FakeUpstream) -> None:
    body = {"model": "claude-3-5-haiku-20241022", "max_tokens": 100, "messages": MESSAGES[1:]}
    headers = {"x-api-key": upstream.api_key, "anthropic-version": "2023-06-01"}
    url = f"{upstream.url}/v1/messages"

    missing_version = httpx.post(url, json=body, headers={"x-api-key": upstream.api_key})
    streamed = httpx.post(url, json=body | {"stream": True}, headers=headers)

    assert missing_version.status_code == 400
    assert missing_version.json()["error"]["type"] == "invalid_request_error"
    events = _sse_payloads(streamed.text)
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert set(names[3:-3]) == {"content_block_delta"}
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    start = json.loads(events[0][1])["message"]
    assert start["id"].startswith("msg_")
    assert start["usage"]["input_tokens"] == 3 + 3  # one message of three words
    delta = json.loads(events[-2][1])
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert delta["usage"]["output_tokens"] == COMPLETION_TOKENS


def test_gemini_wire_key_in_query(upstream: FakeUpstream) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "Say hello please"}]}]}
    url = f"{upstream.url}/v1beta/models/gemini-2.0-flash:generateContent"

    ok = httpx.post(url, params={"key": upstream.api_key}, json=body)
    wrong = httpx.post(url, params={"key": "nope"}, json=body)

    assert ok.status_code == 200
    assert ok.json()["usageMetadata"] == {
        "promptTokenCount": 6,
        "candidatesTokenCount": COMPLETION_TOKENS,
        "totalTokenCount": 6 + COMPLETION_TOKENS,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 6}],
    }
    assert wrong.status_code == 401
    assert wrong.json()["error"]["status"] == "UNAUTHENTICATED"


@pytest.mark.parametrize(
    ("path", "headers", "error_path"),
    [
        ("/v1/chat/completions", {"authorization": "Bearer x"}, ("error", "code")),
        ("/api/v1/chat/completions", {"authorization": "Bearer x"}, ("error", "code")),
        ("/v1/messages", {"x-api-key": "x", "anthropic-version": "2023-06-01"}, ("type",)),
        ("/v1beta/models/gemini-2.0-flash:generateContent", {"x-goog-api-key": "x"}, ("error",)),
    ],
)
def test_wrong_key_error_shapes(
    upstream: FakeUpstream, path: str, headers: dict[str, str], error_path: tuple[str, ...]
) -> None:
    body = {"model": "m", "max_tokens": 5, "messages": MESSAGES, "contents": [{"parts": []}]}

    response = httpx.post(upstream.url + path, json=body, headers=headers)

    assert response.status_code == 401
    value: Any = response.json()
    for key in error_path:
        value = value[key]
    assert value


def test_models_list(upstream: FakeUpstream) -> None:
    headers = {"authorization": f"Bearer {upstream.api_key}"}

    response = httpx.get(f"{upstream.url}/v1/models", headers=headers)

    assert response.status_code == 200
    assert response.json()["object"] == "list"
    assert "gpt-4o-mini" in {m["id"] for m in response.json()["data"]}


# --------------------------------------------------------------------------- lifecycle


def test_reset_restores_defaults(upstream: FakeUpstream) -> None:
    upstream.reply_text = "changed"
    upstream.usage_extra = {"cached_tokens": 1}
    upstream.chunk_delay = 1.0
    upstream.fail_next(500, count=3)
    httpx.get(f"{upstream.url}/v1/models")

    upstream.reset()

    assert upstream.requests == []
    assert upstream.calls_served == 0
    assert (upstream.reply_text, upstream.usage_extra, upstream.chunk_delay) == (
        DEFAULT_REPLY_TEXT,
        {},
        0.0,
    )
    headers = {"authorization": f"Bearer {upstream.api_key}"}
    body = {"model": "gpt-4o-mini", "messages": MESSAGES}
    ok = httpx.post(f"{upstream.url}/v1/chat/completions", json=body, headers=headers)
    assert ok.status_code == 200


def test_start_stop_custom_key() -> None:
    fake = FakeUpstream(api_key="another-key")
    with fake:
        assert fake.env()["OPENAI_API_KEY"] == "another-key"
        response = httpx.get(
            f"{fake.url}/v1/models", headers={"authorization": "Bearer another-key"}
        )
        assert response.status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{fake.url}/v1/models")
