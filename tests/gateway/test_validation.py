"""Validate before reserving (issue 8, point 2).

Unit tests of `gateway_plugins.validation`: every endpoint's allowed fields as a snapshot
(adding or removing one fails here, on purpose: look at what it lets a client choose),
the fields that would let a client pick its upstream, key, price or call id refused by
name, output sizes typed and capped, `n` capped and multiplying the reservation, the
body size capped. End to end: the same refusals before anything is held or forwarded,
and `n` (and a list of prompts) really reserving every completion.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gateway_plugins.validation import (
    DROPPED,
    FORCED,
    REFUSED_BY_NAME,
    REQUEST_MODELS,
    InvalidRequest,
    ValidRequest,
    field_policy,
    parse_body,
    read_body,
    validate,
)
from portal.credits.units import credits_to_units
from portal.db import Database
from portal.settings import PROJECT_ROOT
from portal.usage.service import list_usage
from tests.fakes.upstream import FakeUpstream
from tests.fixtures.gateway import MakeUser, RunningGateway
from tests.gateway.support import (
    expected_units,
    fake_completion_tokens,
    fake_prompt_tokens,
    money,
    settled_usage,
)

# The allow-lists, field by field. A change here is a change of what a client may set.
ALLOWED_FIELDS: dict[str, set[str]] = {
    "chat": {
        "model", "messages", "max_tokens", "max_completion_tokens", "n", "stream",
        "stream_options", "temperature", "top_p", "stop", "presence_penalty",
        "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "seed", "tools",
        "tool_choice", "parallel_tool_calls", "response_format", "reasoning_effort", "user",
        "verbosity", "prompt_cache_key", "store", "metadata", "safety_identifier",
    },
    "text": {
        "model", "prompt", "max_tokens", "n", "stream", "stream_options", "temperature",
        "top_p", "stop", "presence_penalty", "frequency_penalty", "logprobs", "echo", "seed",
        "suffix", "user",
    },
    "messages": {
        "model", "messages", "max_tokens", "system", "stop_sequences", "stream",
        "temperature", "top_p", "top_k", "tools", "tool_choice", "thinking", "metadata",
    },
    "responses": {
        "model", "input", "instructions", "max_output_tokens", "stream", "temperature",
        "top_p", "tools", "tool_choice", "parallel_tool_calls", "text", "reasoning",
        "truncation", "store", "user", "prompt_cache_key", "include", "metadata",
        "safety_identifier",
    },
    "embeddings": {"model", "input", "encoding_format", "dimensions", "user"},
    "count_tokens": {"model", "messages", "system", "tools", "tool_choice", "thinking"},
}  # fmt: skip

MINIMAL: dict[str, dict[str, Any]] = {
    "chat": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    "text": {"model": "m", "prompt": "hi"},
    "messages": {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 9},
    "responses": {"model": "m", "input": "hi"},
    "embeddings": {"model": "m", "input": "hi"},
    "count_tokens": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
}
OUTPUT_FIELDS = {
    "chat": ("max_tokens", "max_completion_tokens"),
    "text": ("max_tokens",),
    "messages": ("max_tokens",),
    "responses": ("max_output_tokens",),
}
# Anything that could change where, as whom, or at what price a call is made.
DANGEROUS = {
    "api_base": "http://127.0.0.1:1/v1",
    "base_url": "http://127.0.0.1:1/v1",
    "api_key": "sk-mine",
    "input_cost_per_token": 0,
    "output_cost_per_token": 0,
    "mock_response": "free lunch",
    "litellm_call_id": "someone-elses-call",
    "litellm_metadata": {"user_api_key_user_id": "someone-else"},
    "user_config": {"model_list": []},
    "fallbacks": ["o1-pro"],
    "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/o1-pro"}}],
    "extra_body": {"api_base": "http://127.0.0.1:1"},
    "custom_llm_provider": "openai",
    "api_version": "2024-01-01",
    "litellm_logging_obj": None,
    "model_info": {"input_cost_per_token": 0},
    "timeout": 0.001,
    "num_retries": 100,
}
BAD_SIZES = (150000.0, "150000", True, 1e9, 0, -1, 1.5, "10", [10], {"n": 1})
LIMIT, DEFAULT_OUTPUT, MAX_CHOICES = 32768, 4096, 8


def check(kind: str, body: dict[str, Any], *, limit: int = LIMIT) -> ValidRequest:
    return validate(
        kind,
        {**MINIMAL[kind], **body},
        max_output_tokens=limit,
        default_output_tokens=DEFAULT_OUTPUT,
        max_choices=MAX_CHOICES,
    )


def refused(kind: str, body: dict[str, Any], *, limit: int = LIMIT) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        check(kind, body, limit=limit)
    error = caught.value
    assert error.status_code == 400 and error.error_type == "invalid_request_error"
    return error


# --------------------------------------------------------------------------- unit


def test_every_endpoints_allowed_fields_are_exactly_the_snapshot() -> None:
    assert set(REQUEST_MODELS) == set(ALLOWED_FIELDS)
    for kind, model in REQUEST_MODELS.items():
        assert set(model.model_fields) == ALLOWED_FIELDS[kind], kind
        assert model.model_config.get("extra") == "forbid", kind


SAMPLES: dict[str, Any] = {
    "model": "m",
    "messages": [{"role": "user", "content": "hi"}],
    "max_tokens": 5,
    "max_completion_tokens": 5,
    "n": 2,
    "stream": True,
    "stream_options": {"include_usage": True},
    "temperature": 0.5,
    "top_p": 1,
    "stop": ["x"],
    "presence_penalty": 0,
    "frequency_penalty": 0.5,
    "logit_bias": {"50256": -100},
    "logprobs": True,
    "top_logprobs": 2,
    "seed": 1,
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
    "tool_choice": "auto",
    "parallel_tool_calls": True,
    "response_format": {"type": "json_object"},
    "reasoning_effort": "low",
    "user": "user-1",
    "prompt": "hi",
    "echo": False,
    "suffix": "s",
    "system": "be brief",
    "stop_sequences": ["x"],
    "top_k": 5,
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "input": "hi",
    "instructions": "be brief",
    "max_output_tokens": 5,
    "text": {"format": {"type": "text"}},
    "reasoning": {"effort": "low"},
    "truncation": "auto",
    "store": False,
    "encoding_format": "float",
    "dimensions": 8,
    "verbosity": "low",
    "prompt_cache_key": "conversation-1",
    "metadata": {"user_id": "someone", "user_api_key_user_id": "someone-else"},
    "safety_identifier": "hash-of-a-person",
    "include": ["message.output_text.logprobs"],
}
ANTHROPIC_SAMPLES = {
    "tool_choice": {"type": "auto"},
    "tools": [{"name": "f", "input_schema": {"type": "object"}}],
}
SAMPLE_OVERRIDES = {
    "text": {"logprobs": 2},
    "messages": ANTHROPIC_SAMPLES,
    "count_tokens": ANTHROPIC_SAMPLES,
    "responses": {"tools": [{"type": "function", "name": "f", "parameters": {}}]},
}


def test_every_allowed_field_is_accepted_and_passed_on() -> None:
    for kind, fields in ALLOWED_FIELDS.items():
        body = {field: SAMPLES[field] for field in fields} | SAMPLE_OVERRIDES.get(kind, {})
        valid = check(kind, body)
        assert set(valid.params) >= fields - DROPPED, kind
        assert not set(valid.params) & (DROPPED - {"store"}), kind  # accepted, never forwarded
        for stranger in ("model_name", "engine", "deployment_id", "prompt_id", "prediction"):
            assert refused(kind, {stranger: 1}).param == stranger


@pytest.mark.parametrize("kind", sorted(MINIMAL))
@pytest.mark.parametrize("field", sorted(DANGEROUS))
def test_a_field_that_picks_upstream_key_or_price_is_refused_by_name(kind: str, field: str) -> None:
    error = refused(kind, {field: DANGEROUS[field]})
    assert error.param == field
    assert repr(field) in error.message and "not accepted" in error.message


@pytest.mark.parametrize("kind", sorted(OUTPUT_FIELDS))
def test_output_sizes_are_strict_positive_integers(kind: str) -> None:
    for field in OUTPUT_FIELDS[kind]:
        for value in BAD_SIZES:
            error = refused(kind, {field: value})
            assert error.param == field, (field, value)
            assert field in error.message
        assert check(kind, {field: 1}).output_tokens == 1
        assert check(kind, {field: 777}).params[field] == 777


@pytest.mark.parametrize("kind", sorted(OUTPUT_FIELDS))
def test_output_sizes_above_the_models_limit_are_refused(kind: str) -> None:
    for field in OUTPUT_FIELDS[kind]:
        error = refused(kind, {field: 1001}, limit=1000)
        assert error.param == field and "1000" in error.message
        assert refused(kind, {field: 150000}).param == field  # above gpt-4.1-nano's 32768
        assert check(kind, {field: 1000}, limit=1000).output_tokens == 1000


def test_both_output_sizes_are_checked_and_the_larger_is_reserved() -> None:
    """max_tokens and max_completion_tokens together: whichever the upstream honours, the
    reservation covers it and neither may pass the limit."""
    error = refused("chat", {"max_completion_tokens": 10, "max_tokens": 150000})
    assert error.param == "max_tokens"
    error = refused("chat", {"max_completion_tokens": 150000, "max_tokens": 10})
    assert error.param == "max_completion_tokens"
    valid = check("chat", {"max_completion_tokens": 10, "max_tokens": 3000})
    assert valid.output_tokens == 3000


def test_no_output_size_reserves_the_default() -> None:
    assert check("chat", {}).output_tokens == DEFAULT_OUTPUT
    assert check("responses", {"max_output_tokens": None}).output_tokens == DEFAULT_OUTPUT
    assert check("embeddings", {}).output_tokens == 0
    assert refused("messages", {"max_tokens": None}).param == "max_tokens"
    without = {k: v for k, v in MINIMAL["messages"].items() if k != "max_tokens"}
    with pytest.raises(InvalidRequest) as caught:
        validate(
            "messages", without, max_output_tokens=LIMIT, default_output_tokens=1, max_choices=1
        )
    assert caught.value.param == "max_tokens" and "Missing" in caught.value.message


@pytest.mark.parametrize("kind", ["chat", "text"])
def test_n_is_capped_and_multiplies_the_reservation(kind: str) -> None:
    assert check(kind, {"n": 3, "max_tokens": 100}).output_tokens == 300
    assert check(kind, {"n": 3}).output_tokens == 3 * DEFAULT_OUTPUT
    assert check(kind, {"n": MAX_CHOICES, "max_tokens": 10}).output_tokens == 10 * MAX_CHOICES
    error = refused(kind, {"n": MAX_CHOICES + 1})
    assert error.param == "n" and str(MAX_CHOICES) in error.message
    for value in (100, 0, -1, 3.0, "3", True):
        assert refused(kind, {"n": value}).param == "n", value


def test_a_list_of_prompts_reserves_a_completion_per_prompt() -> None:
    """Legacy completions answer every prompt of a list: k prompts × n choices each."""
    valid = check("text", {"prompt": ["one", "two", "three"], "max_tokens": 100})
    assert valid.output_tokens == 300
    assert check("text", {"prompt": ["a", "b"], "n": 2, "max_tokens": 10}).output_tokens == 40
    too_many = ["p"] * (MAX_CHOICES + 1)
    assert refused("text", {"prompt": too_many, "max_tokens": 10}).param == "prompt"


def test_n_is_not_offered_where_the_api_has_none() -> None:
    for kind in ("messages", "responses", "embeddings"):
        assert refused(kind, {"n": 2}).param == "n"


def test_what_the_gateway_sets_itself() -> None:
    chat = check("chat", {"stream": True})
    assert chat.stream and chat.params["stream_options"] == {"include_usage": True}
    assert not chat.client_wants_usage
    assert check("text", {"stream": True, "stream_options": {"include_usage": True}}).params[
        "stream_options"
    ] == {"include_usage": True}
    assert check("responses", {}).params["store"] is False
    assert refused("responses", {"store": True}).param == "store"
    assert refused("chat", {"stream_options": {"include_usage": True, "x": 1}}).param == (
        "stream_options"
    )
    for value in ("true", 1, None):
        assert refused("chat", {"stream": value}).param == "stream"


def test_body_must_be_a_json_object() -> None:
    assert parse_body(b'{"model": "m"}') == {"model": "m"}
    for raw in (b"", b"not json", b"[1, 2]", b'"text"', b"{"):
        with pytest.raises(InvalidRequest):
            parse_body(raw)


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_the_body_is_read_no_further_than_its_cap() -> None:
    assert await read_body(chunks(b"a" * 60, b"b" * 40), "100", 100, 30) == b"a" * 60 + b"b" * 40
    assert await read_body(chunks(b"x" * 100), None, 100, 30) == b"x" * 100
    with pytest.raises(InvalidRequest) as caught:  # declared too large: not read at all
        await read_body(chunks(), "101", 100, 30)
    assert "larger than 100 bytes" in caught.value.message
    with pytest.raises(InvalidRequest):  # undeclared (chunked), found too large while reading
        await read_body(chunks(b"x" * 60, b"y" * 60), None, 100, 30)
    with pytest.raises(InvalidRequest):  # a lying Content-Length changes nothing
        await read_body(chunks(b"x" * 60, b"y" * 60), "10", 100, 30)


def docs_field_table() -> dict[str, dict[str, str]]:
    """docs/security.md's field table: field → endpoint → passed/dropped/forced/refused."""
    text = (PROJECT_ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    table = text.split("<!-- field-table:start -->")[1].split("<!-- field-table:end -->")[0]
    header, _rule, *rows = [line for line in table.strip().splitlines()]
    endpoints = [cell.strip() for cell in header.strip("|").split("|")][1:]
    found: dict[str, dict[str, str]] = {}
    for row in rows:
        field, *cells = [cell.strip() for cell in row.strip("|").split("|")]
        found[field.strip("`")] = dict(zip(endpoints, cells, strict=True))
    return found


def test_the_docs_field_table_is_the_code() -> None:
    """Every field each endpoint accepts, forces or refuses by name has its row, with the
    word the code applies; no row names a field the code does not know."""
    table = docs_field_table()
    known = {f for model in REQUEST_MODELS.values() for f in model.model_fields}
    known |= {f for forced in FORCED.values() for f in forced} | set(REFUSED_BY_NAME)
    assert set(table) == known
    for field, cells in table.items():
        assert set(cells) == set(REQUEST_MODELS), field
        for kind, word in cells.items():
            assert word == field_policy(kind, field), (field, kind, word)


def test_dropped_fields_are_accepted_and_never_forwarded() -> None:
    body = {"metadata": {"user_id": "u"}, "user": "u", "safety_identifier": "s", "store": False}
    for kind in ("chat", "responses"):
        params = check(kind, body).params
        assert not {"metadata", "user", "safety_identifier"} & set(params), kind
    assert "store" not in check("chat", body).params
    assert check("responses", body).params["store"] is False
    assert "metadata" not in check("messages", {"metadata": {"user_id": "u"}}).params


# --------------------------------------------------------------------------- end to end

MODEL = "gpt-4.1-nano"  # no fallbacks: the reservation is priced at its own price
ENDPOINTS: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {**MINIMAL["chat"], "model": MODEL, "max_tokens": 20},
    "/v1/completions": {**MINIMAL["text"], "model": MODEL, "max_tokens": 20},
    "/v1/messages": {**MINIMAL["messages"], "model": MODEL},
    "/v1/responses": {**MINIMAL["responses"], "model": MODEL, "max_output_tokens": 20},
    "/v1/embeddings": {**MINIMAL["embeddings"], "model": "text-embedding-3-small"},
}


async def post(gateway: RunningGateway, token: str, path: str, body: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
        return await client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})


def error_of(response: httpx.Response, path: str) -> dict[str, Any]:
    """The error object of an OpenAI-style body, or of an Anthropic one on /v1/messages."""
    body = response.json()
    if path == "/v1/messages":
        assert body["type"] == "error", body
        return {"param": None, **body["error"]}
    assert set(body) == {"error"}, body
    return body["error"]


async def assert_nothing_happened(
    db: Database, user_id: str, upstream: FakeUpstream, balance: int
) -> None:
    assert upstream.requests == []
    state = await money(db, user_id)
    assert (state.balance, state.reserved) == (balance, 0)
    async with db.session() as session:
        assert await list_usage(session, user_id) == []


@pytest.mark.gateway
async def test_refused_fields_on_every_endpoint_before_anything_is_held(
    gateway: RunningGateway, db: Database, make_user: MakeUser, fresh_upstream: FakeUpstream
) -> None:
    user = await make_user("1")
    for path, body in ENDPOINTS.items():
        for field in ("api_base", "mock_response", "litellm_call_id", "custom_llm_provider"):
            response = await post(gateway, user.token, path, {**body, field: DANGEROUS[field]})
            assert response.status_code == 400, (path, field, response.text)
            error = error_of(response, path)
            assert field in error["message"] and error["param"] in (field, None)
    await assert_nothing_happened(db, user.user_id, fresh_upstream, credits_to_units("1"))


@pytest.mark.gateway
async def test_an_untyped_max_tokens_is_400_not_an_unreserved_call(
    gateway: RunningGateway, db: Database, make_user: MakeUser, fresh_upstream: FakeUpstream
) -> None:
    """With ~0.0099 credits, 150000 is 402; 150000.0, "150000" and 1e9 used to be 200."""
    user = await make_user("0.0099")
    for path, field in (
        ("/v1/chat/completions", "max_tokens"),
        ("/v1/chat/completions", "max_completion_tokens"),
        ("/v1/completions", "max_tokens"),
        ("/v1/messages", "max_tokens"),
        ("/v1/responses", "max_output_tokens"),
    ):
        for value in (150000.0, "150000", 1e9, True, 0, -1, 32769):
            response = await post(gateway, user.token, path, {**ENDPOINTS[path], field: value})
            assert response.status_code == 400, (path, field, value, response.text)
            assert field in error_of(response, path)["message"]
        # At the model's own limit the request is well-formed, and simply not affordable.
        response = await post(gateway, user.token, path, {**ENDPOINTS[path], field: 32768})
        assert response.status_code == 402, (path, response.text)
    await assert_nothing_happened(db, user.user_id, fresh_upstream, credits_to_units("0.0099"))


@pytest.mark.gateway
async def test_a_body_over_the_cap_is_refused(
    gateway: RunningGateway, db: Database, make_user: MakeUser, fresh_upstream: FakeUpstream
) -> None:
    user = await make_user("1")
    huge = b'{"model": "gpt-4.1-nano", "messages": [{"role": "user", "content": "'
    huge += b"x" * (8 * 1024 * 1024) + b'"}]}'

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: read and cut off
        for start in range(0, len(huge), 1 << 20):
            yield huge[start : start + (1 << 20)]

    headers = {"Authorization": f"Bearer {user.token}", "content-type": "application/json"}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=120) as client:
        for content in (huge, chunked()):
            response = await client.post("/v1/chat/completions", content=content, headers=headers)
            assert response.status_code == 400, response.text[:500]
            assert "larger than 8388608 bytes" in response.json()["error"]["message"]
    await assert_nothing_happened(db, user.user_id, fresh_upstream, credits_to_units("1"))


@pytest.mark.gateway
async def test_n_reserves_every_completion_and_is_charged_for_all(
    gateway: RunningGateway, db: Database, make_user: MakeUser, fresh_upstream: FakeUpstream
) -> None:
    """1000 output tokens of gpt-4.1-nano cost 0.0004 credits: 0.0006 covers n=1, not n=3."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "count to three"}]}
    body["max_tokens"] = 1000
    small = await make_user("0.0006")
    refused_n3 = await post(gateway, small.token, "/v1/chat/completions", {**body, "n": 3})
    assert refused_n3.status_code == 402, refused_n3.text
    assert refused_n3.json()["error"]["code"] == "insufficient_credits"
    assert fresh_upstream.requests == []
    one = await post(gateway, small.token, "/v1/chat/completions", {**body, "n": 1})
    assert one.status_code == 200, one.text

    rich = await make_user("1")
    three = await post(gateway, rich.token, "/v1/chat/completions", {**body, "n": 3})
    assert three.status_code == 200, three.text
    assert [c["message"]["content"] for c in three.json()["choices"]] == [
        fresh_upstream.reply_text
    ] * 3
    assert fresh_upstream.requests[-1]["body"]["n"] == 3
    [record] = await settled_usage(db, rich.user_id, 1)
    assert record.prompt_tokens == fake_prompt_tokens("count to three")
    assert record.completion_tokens == 3 * fake_completion_tokens(fresh_upstream.reply_text)
    assert record.credits == expected_units(MODEL, record.prompt_tokens, record.completion_tokens)
    state = await money(db, rich.user_id)
    assert state.balance == credits_to_units("1") - record.credits == state.ledger_sum


@pytest.mark.gateway
async def test_a_list_of_prompts_reserves_every_completion(
    gateway: RunningGateway, db: Database, make_user: MakeUser, fresh_upstream: FakeUpstream
) -> None:
    body = {"model": MODEL, "prompt": ["one", "two", "three"], "max_tokens": 1000}
    small = await make_user("0.0006")
    response = await post(gateway, small.token, "/v1/completions", body)
    assert response.status_code == 402, response.text
    assert fresh_upstream.requests == []
    single = await post(gateway, small.token, "/v1/completions", {**body, "prompt": "one"})
    assert single.status_code == 200, single.text
