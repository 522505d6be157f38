"""The OpenAI endpoints beyond chat: legacy completions, embeddings, the Responses API.

Each is driven by the official ``openai`` SDK (plain and streamed), which proves the
fake speaks a wire format the SDK accepts, by raw httpx for the wire details, and by
LiteLLM (what the gateway calls) for the usage it parses.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price-map fetch at import

import litellm

from .upstream import DEFAULT_REPLY_TEXT, EMBEDDING_DIMENSIONS, FakeUpstream, embedding_vector

pytestmark = pytest.mark.filterwarnings(
    r"ignore:Items? .* (is|are) using the `ReadOnly` qualifier:UserWarning"
)

REPLY_WORDS = len(DEFAULT_REPLY_TEXT.split())  # 5


@pytest.fixture(scope="module")
def running() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture
def upstream(running: FakeUpstream) -> Iterator[FakeUpstream]:
    running.reset()
    yield running
    running.reset()


@pytest.fixture
def client(upstream: FakeUpstream) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"{upstream.url}/v1", api_key=upstream.api_key, max_retries=0
    ) as sdk:
        yield sdk


def _headers(upstream: FakeUpstream) -> dict[str, str]:
    return {"authorization": f"Bearer {upstream.api_key}"}


def _sse(text: str) -> list[tuple[str | None, str]]:
    events = []
    for block in text.split("\n\n"):
        event, data = None, None
        for line in block.splitlines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = line.removeprefix("data: ")
        if data is not None:
            events.append((event, data))
    return events


# --------------------------------------------------------------------------- /completions


def test_completions_plain(upstream: FakeUpstream, client: openai.OpenAI) -> None:
    completion = client.completions.create(
        model="gpt-3.5-turbo-instruct", prompt="Say hello please", max_tokens=20
    )

    assert completion.object == "text_completion"
    assert completion.id.startswith("cmpl-")
    assert completion.model == "gpt-3.5-turbo-instruct"
    [choice] = completion.choices
    assert (choice.text, choice.index, choice.finish_reason) == (DEFAULT_REPLY_TEXT, 0, "stop")
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 3 + 3
    assert completion.usage.completion_tokens == REPLY_WORDS
    assert completion.usage.total_tokens == 6 + REPLY_WORDS
    [request] = upstream.requests
    assert request["provider"] == "openai"
    assert request["path"] == "/v1/completions"
    assert request["stream"] is False
    assert upstream.calls_served == 1


def test_completions_prompt_list_and_usage_extra(
    upstream: FakeUpstream, client: openai.OpenAI
) -> None:
    upstream.usage_extra = {"cached_tokens": 2, "reasoning_tokens": 4}

    completion = client.completions.create(
        model="gpt-3.5-turbo-instruct", prompt=["one two", "three four five", [1, 2, 3, 4]]
    )

    assert [c.index for c in completion.choices] == [0, 1, 2]
    assert {c.text for c in completion.choices} == {DEFAULT_REPLY_TEXT}
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens == (2 + 3 + 4) + 3 * 3
    assert usage.completion_tokens == 3 * REPLY_WORDS + 4
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 2
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 4


def test_completions_stream_sdk(upstream: FakeUpstream, client: openai.OpenAI) -> None:
    stream = client.completions.create(
        model="gpt-3.5-turbo-instruct",
        prompt="Say hello please",
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == DEFAULT_REPLY_TEXT
    assert sum(1 for c in chunks if c.choices and c.choices[0].text) == REPLY_WORDS
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 6
    assert chunks[-1].usage.completion_tokens == REPLY_WORDS
    assert upstream.requests[0]["stream"] is True
    assert upstream.calls_served == 1


def test_completions_stream_wire_without_usage(upstream: FakeUpstream) -> None:
    body = {"model": "gpt-3.5-turbo-instruct", "prompt": "hi", "stream": True}

    response = httpx.post(f"{upstream.url}/v1/completions", json=body, headers=_headers(upstream))

    assert response.headers["content-type"].startswith("text/event-stream")
    events = _sse(response.text)
    assert events[-1] == (None, "[DONE]")
    chunks = [json.loads(data) for _, data in events[:-1]]
    assert {c["object"] for c in chunks} == {"text_completion"}
    assert all("usage" not in c for c in chunks)  # only with stream_options.include_usage
    assert chunks[-1]["choices"][0] == {
        "text": "",
        "index": 0,
        "logprobs": None,
        "finish_reason": "stop",
    }


# --------------------------------------------------------------------------- /embeddings


def test_embeddings_sdk_default_base64(upstream: FakeUpstream, client: openai.OpenAI) -> None:
    result = client.embeddings.create(
        model="text-embedding-3-small", input=["hello world", "three little words"]
    )

    # The SDK asks for base64 unless told otherwise and decodes it back to floats.
    assert upstream.requests[0]["body"]["encoding_format"] == "base64"
    assert [d.index for d in result.data] == [0, 1]
    assert result.data[0].embedding == embedding_vector("hello world")
    assert result.data[1].embedding == embedding_vector("three little words")
    assert len(result.data[0].embedding) == EMBEDDING_DIMENSIONS
    assert result.usage.prompt_tokens == result.usage.total_tokens == 2 + 3  # words only
    assert result.model == "text-embedding-3-small"
    assert upstream.calls_served == 1


def test_embeddings_wire_float_and_base64(upstream: FakeUpstream) -> None:
    url = f"{upstream.url}/v1/embeddings"
    body = {"model": "text-embedding-3-small", "input": "same text", "dimensions": 4}

    floats = httpx.post(url, json=body, headers=_headers(upstream)).json()
    encoded = httpx.post(
        url, json=body | {"encoding_format": "base64"}, headers=_headers(upstream)
    ).json()

    assert floats["object"] == "list"
    [item] = floats["data"]
    assert item["object"] == "embedding"
    assert item["embedding"] == embedding_vector("same text", 4)
    assert abs(sum(v * v for v in item["embedding"]) - 1) < 1e-5
    raw = base64.b64decode(encoded["data"][0]["embedding"])
    assert list(struct.unpack("<4f", raw)) == item["embedding"]
    assert floats["usage"] == {"prompt_tokens": 2, "total_tokens": 2}


def test_embeddings_rejects_empty_input(upstream: FakeUpstream, client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="text-embedding-3-small", input="")
    assert upstream.calls_served == 0


# --------------------------------------------------------------------------- /responses


def test_responses_plain(upstream: FakeUpstream, client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="gpt-4o-mini", input="Say hello please", instructions="You are terse."
    )

    assert response.object == "response"
    assert response.id.startswith("resp_")
    assert response.status == "completed"
    assert response.output_text == DEFAULT_REPLY_TEXT
    [message] = response.output
    assert message.type == "message"
    assert message.role == "assistant"
    assert response.usage is not None
    assert response.usage.input_tokens == (3 + 3) + (3 + 3)  # instructions + input
    assert response.usage.output_tokens == REPLY_WORDS
    assert response.usage.total_tokens == 12 + REPLY_WORDS
    assert response.usage.input_tokens_details.cached_tokens == 0
    assert response.usage.output_tokens_details.reasoning_tokens == 0
    assert upstream.requests[0]["path"] == "/v1/responses"
    assert upstream.calls_served == 1


def test_responses_item_list_and_usage_extra(upstream: FakeUpstream, client: openai.OpenAI) -> None:
    upstream.usage_extra = {"cached_tokens": 5, "reasoning_tokens": 7}
    items: Any = [
        {"role": "user", "content": "first question here"},
        {"role": "assistant", "content": "an answer"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "more"}]},
    ]

    response = client.responses.create(model="o3-mini", input=items)

    assert response.usage is not None
    assert response.usage.input_tokens == (3 + 2 + 1) + 3 * 3
    assert response.usage.input_tokens_details.cached_tokens == 5
    assert response.usage.output_tokens == REPLY_WORDS + 7
    assert response.usage.output_tokens_details.reasoning_tokens == 7
    assert [item.type for item in response.output] == ["reasoning", "message"]
    assert response.output_text == DEFAULT_REPLY_TEXT


def test_responses_max_output_tokens(upstream: FakeUpstream, client: openai.OpenAI) -> None:
    upstream.reply_text = " ".join(f"w{i}" for i in range(30))

    response = client.responses.create(model="gpt-4o-mini", input="hi", max_output_tokens=16)
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model="gpt-4o-mini", input="hi", max_output_tokens=5)

    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert len(response.output_text.split()) == 16
    assert response.usage is not None
    assert response.usage.output_tokens == 16
    assert "max_output_tokens" in str(raised.value)


def test_responses_stream_sdk(upstream: FakeUpstream, client: openai.OpenAI) -> None:
    events = list(client.responses.create(model="gpt-4o-mini", input="Say hi", stream=True))

    types = [e.type for e in events]
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * REPLY_WORDS,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == DEFAULT_REPLY_TEXT
    completed = events[-1].response
    assert completed.status == "completed"
    assert completed.output_text == DEFAULT_REPLY_TEXT
    assert completed.usage is not None
    assert (completed.usage.input_tokens, completed.usage.output_tokens) == (5, REPLY_WORDS)
    assert events[0].response.usage is None
    assert upstream.calls_served == 1


def test_responses_stream_wire_frames(upstream: FakeUpstream) -> None:
    upstream.usage_extra = {"reasoning_tokens": 3}
    body = {"model": "o3-mini", "input": "hi", "stream": True}

    response = httpx.post(f"{upstream.url}/v1/responses", json=body, headers=_headers(upstream))

    assert response.headers["content-type"].startswith("text/event-stream")
    assert "[DONE]" not in response.text
    events = _sse(response.text)
    payloads = [json.loads(data) for _, data in events]
    assert all(name == p["type"] for (name, _), p in zip(events, payloads, strict=True))
    added = [p for p in payloads if p["type"] == "response.output_item.added"]
    assert [(a["output_index"], a["item"]["type"]) for a in added] == [
        (0, "reasoning"),
        (1, "message"),
    ]
    usage = payloads[-1]["response"]["usage"]
    assert usage["output_tokens"] == REPLY_WORDS + 3
    assert usage["output_tokens_details"] == {"reasoning_tokens": 3}


# --------------------------------------------------------------------------- shared behaviour


@pytest.mark.parametrize("endpoint", ["completions", "embeddings", "responses"])
def test_fail_next_on_new_endpoints(
    upstream: FakeUpstream, client: openai.OpenAI, endpoint: str
) -> None:
    canary = "canary-42 quoted"
    calls = {
        "completions": lambda: client.completions.create(model="m", prompt=canary),
        "embeddings": lambda: client.embeddings.create(model="m", input=canary),
        "responses": lambda: client.responses.create(model="m", input=canary),
    }
    upstream.fail_next(400)
    upstream.fail_next(429, message="slow down")

    with pytest.raises(openai.BadRequestError) as bad:
        calls[endpoint]()
    with pytest.raises(openai.RateLimitError) as limited:
        calls[endpoint]()
    calls[endpoint]()

    assert canary in str(bad.value)
    assert "slow down" in str(limited.value)
    assert upstream.calls_served == 1
    assert len(upstream.requests) == 3


@pytest.mark.parametrize("endpoint", ["completions", "embeddings", "responses"])
def test_openrouter_routes(upstream: FakeUpstream, endpoint: str) -> None:
    body = {"model": "openai/gpt-4o-mini", "prompt": "hi there", "input": "hi there"}

    ok = httpx.post(f"{upstream.url}/api/v1/{endpoint}", json=body, headers=_headers(upstream))
    wrong = httpx.post(
        f"{upstream.url}/api/v1/{endpoint}", json=body, headers={"authorization": "Bearer x"}
    )

    assert ok.status_code == 200
    assert upstream.requests[0]["provider"] == "openrouter"
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == 401


# --------------------------------------------------------------------------- LiteLLM parses it


def _litellm_args(upstream: FakeUpstream) -> dict[str, Any]:
    return {"api_base": f"{upstream.url}/v1", "api_key": upstream.api_key, "max_retries": 0}


async def test_litellm_text_completion(upstream: FakeUpstream) -> None:
    # With a client, as the Router passes one: without, LiteLLM's text completion opens a
    # new SDK client (and aiohttp session) per call and never closes it.
    args = _litellm_args(upstream)
    async with openai.AsyncOpenAI(base_url=args["api_base"], api_key=args["api_key"]) as client:
        response = await litellm.atext_completion(
            model="openai/gpt-3.5-turbo-instruct", prompt="Say hello please", client=client, **args
        )

    assert response.choices[0].text == DEFAULT_REPLY_TEXT
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (6, REPLY_WORDS)
    assert upstream.requests[0]["path"] == "/v1/completions"


async def test_litellm_embedding(upstream: FakeUpstream) -> None:
    response = await litellm.aembedding(
        model="openai/text-embedding-3-small", input=["a b c", "d"], **_litellm_args(upstream)
    )

    assert response.data[0]["embedding"] == pytest.approx(embedding_vector("a b c"))
    assert response.usage.prompt_tokens == 4
    assert upstream.requests[0]["path"] == "/v1/embeddings"


@pytest.mark.parametrize("stream", [False, True])
async def test_litellm_responses(upstream: FakeUpstream, stream: bool) -> None:
    upstream.usage_extra = {"cached_tokens": 2, "reasoning_tokens": 3}
    response = await litellm.aresponses(
        model="openai/gpt-4o-mini",
        input="Say hello please",
        stream=stream,
        **_litellm_args(upstream),
    )
    if stream:
        events = [event async for event in response]
        assert events[-1].type == "response.completed"
        response = events[-1].response

    assert response.usage.input_tokens == 6
    assert response.usage.output_tokens == REPLY_WORDS + 3
    assert response.usage.input_tokens_details.cached_tokens == 2
    assert response.usage.output_tokens_details.reasoning_tokens == 3
    assert upstream.requests[0]["path"] == "/v1/responses"
    assert upstream.calls_served == 1
