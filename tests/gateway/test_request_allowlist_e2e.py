"""Deny by default inside the request too (issue 19, items 1, 2 and 7's request side),
against the real gateway process and the wire-format fakes, with the official SDKs where
real clients send a field.

Refused content names the field (400, the endpoint's own error format) and nothing
reaches the upstream; harmless fields real clients send are accepted and never
forwarded; every call that can reach OpenAI's Responses API carries `store: false`;
Gemini never gets a context cache; upstream 4xx texts and response ids carry nothing of
the operator's setup.
"""

# ruff: noqa: E501  (REFUSED reads as a table: one refused request per line)
from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from portal.db import Database
from portal.usage.service import list_usage
from tests.fakes.upstream import FakeUpstream
from tests.fixtures.gateway import (
    MakeUser,
    RunningGateway,
    config_copy,
    start_gateway,
    stop_gateway,
)

pytestmark = pytest.mark.gateway

NANO, MINI, CLAUDE, GEMINI = "gpt-4.1-nano", "gpt-4o-mini", "claude-haiku-4-5", "gemini-2.5-flash"
HI = [{"role": "user", "content": "hi"}]
PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 24).decode()


def chat(model: str, **extra: Any) -> tuple[str, dict[str, Any]]:
    return "/v1/chat/completions", {"model": model, "messages": HI, "max_tokens": 20, **extra}


def parts(model: str, *content: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return chat(model, messages=[{"role": "user", "content": list(content)}])


def messages(model: str, **extra: Any) -> tuple[str, dict[str, Any]]:
    return "/v1/messages", {"model": model, "messages": HI, "max_tokens": 20, **extra}


def blocks(model: str, *content: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return messages(model, messages=[{"role": "user", "content": list(content)}])


def responses(**extra: Any) -> tuple[str, dict[str, Any]]:
    return "/v1/responses", {"model": NANO, "input": "hi", "max_output_tokens": 20, **extra}


def image(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, **extra}}


# (name, (path, body), the field the 400 must name)
REFUSED: list[tuple[str, tuple[str, dict[str, Any]], str]] = [
    # server-side tools
    ("chat-web-search-preview", chat(NANO, tools=[{"type": "web_search_preview"}]), "tools[0].type"),
    ("chat-claude-web-search", chat(CLAUDE, tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 50}]), "tools[0].type"),
    ("chat-claude-mcp", chat(CLAUDE, tools=[{"type": "mcp", "server_url": "https://mcp.example", "authorization_token": "t"}]), "tools[0].type"),
    ("chat-gemini-googleSearch", chat(GEMINI, tools=[{"googleSearch": {}}]), "tools[0].type"),
    ("chat-gemini-google_search", chat(GEMINI, tools=[{"google_search": {}}]), "tools[0].type"),
    ("chat-gemini-code-execution", chat(GEMINI, tools=[{"code_execution": {}}]), "tools[0].type"),
    ("chat-gemini-url-context", chat(GEMINI, tools=[{"url_context": {}}]), "tools[0].type"),
    ("chat-gemini-retrieval", chat(GEMINI, tools=[{"googleSearchRetrieval": {}}]), "tools[0].type"),
    ("chat-computer-use", chat(CLAUDE, tools=[{"type": "computer_20250124", "name": "computer", "display_width_px": 1, "display_height_px": 1}]), "tools[0].type"),
    ("messages-web-search", messages(CLAUDE, tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 50}]), "tools[0].type"),
    ("messages-web-fetch", messages(CLAUDE, tools=[{"type": "web_fetch_20250910", "name": "web_fetch"}]), "tools[0].type"),
    ("messages-code-execution", messages(CLAUDE, tools=[{"type": "code_execution_20250522", "name": "code_execution"}]), "tools[0].type"),
    ("messages-mcp-tool", messages(CLAUDE, tools=[{"type": "mcp", "server_url": "https://mcp.example"}]), "tools[0].type"),
    ("messages-mcp-servers", messages(CLAUDE, mcp_servers=[{"type": "url", "url": "https://mcp.example", "name": "x"}]), "mcp_servers"),
    ("responses-web-search", responses(tools=[{"type": "web_search_preview"}]), "tools[0].type"),
    ("responses-file-search", responses(tools=[{"type": "file_search", "vector_store_ids": ["vs_1"]}]), "tools[0].type"),
    ("responses-code-interpreter", responses(tools=[{"type": "code_interpreter", "container": {"type": "auto"}}]), "tools[0].type"),
    ("responses-image-generation", responses(tools=[{"type": "image_generation"}]), "tools[0].type"),
    ("responses-mcp", responses(tools=[{"type": "mcp", "server_label": "x", "server_url": "https://mcp.example"}]), "tools[0].type"),
    # stored provider objects and parts of unbounded size
    ("chat-file-id", parts(NANO, {"type": "file", "file": {"file_id": "file-abc"}}), "messages[0].content[0].type"),
    ("chat-audio", parts(NANO, {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}), "messages[0].content[0].type"),
    ("chat-gemini-gs-uri", parts(GEMINI, image("gs://bucket/video.mp4")), "messages[0].content[0].image_url"),
    ("chat-gemini-files-api", parts(GEMINI, image("https://generativelanguage.googleapis.com/v1beta/files/abc")), "messages[0].content[0].image_url"),
    ("messages-document", blocks(CLAUDE, {"type": "document", "source": {"type": "url", "url": "https://x.example/a.pdf"}}), "messages[0].content[0].type"),
    ("messages-file-image", blocks(CLAUDE, {"type": "image", "source": {"type": "file", "file_id": "file_1"}}), "messages[0].content[0].source.type"),
    ("responses-input-file", responses(input=[{"role": "user", "content": [{"type": "input_file", "file_url": "https://x.example/a.pdf"}]}]), "input[0].content[0].type"),
    ("responses-file-id-image", responses(input=[{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]), "input[0].content[0].file_id"),
    ("responses-item-reference", responses(input=[{"type": "item_reference", "id": "msg_1"}]), "input[0].type"),
    ("responses-previous-response-id", responses(previous_response_id="resp_1"), "previous_response_id"),
    ("responses-conversation", responses(conversation="conv_1"), "conversation"),
    ("responses-store-true", responses(store=True), "store"),
    ("responses-include-encrypted", responses(include=["reasoning.encrypted_content"]), "include"),
    ("responses-include-search-results", responses(include=["file_search_call.results"]), "include"),
    ("chat-store-true", chat(NANO, store=True), "store"),
    # URLs the gateway itself would fetch
    ("chat-http-image", parts(CLAUDE, image("http://127.0.0.1:9/cat.png")), "messages[0].content[0].image_url"),
    ("chat-high-detail-url", parts(NANO, image("https://img.example/cat.png", detail="high")), "messages[0].content[0].image_url.detail"),
    ("chat-gemini-https-image", parts(GEMINI, image("https://img.example/cat.png")), "messages[0].content[0].image_url"),
    ("messages-gemini-url-image", blocks(GEMINI, {"type": "image", "source": {"type": "url", "url": "https://img.example/cat.png"}}), "messages[0].content[0].source.url"),
    # not an embedding model
    ("embeddings-on-a-chat-model", ("/v1/embeddings", {"model": NANO, "input": "hi"}), "model"),
    ("chat-on-an-embedding-model", chat("text-embedding-3-small"), "model"),
]  # fmt: skip


async def post(
    gateway: RunningGateway, token: str, path: str, body: Any, **headers: str
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
        return await client.post(
            path, json=body, headers={"Authorization": f"Bearer {token}", **headers}
        )


def error_of(response: httpx.Response, path: str) -> dict[str, Any]:
    body = response.json()
    if path == "/v1/messages":
        assert body["type"] == "error" and set(body) == {"type", "error"}, body
        assert body["error"]["type"] == "invalid_request_error", body
        return {"param": None, **body["error"]}
    assert set(body) == {"error"}, body
    return dict(body["error"])


@pytest.mark.parametrize("case", REFUSED, ids=[name for name, _, _ in REFUSED])
async def test_refused_content_names_the_field_and_reaches_no_upstream(
    case: tuple[str, tuple[str, dict[str, Any]], str],
    gateway: RunningGateway,
    db: Database,
    make_user: MakeUser,
    fresh_upstream: FakeUpstream,
) -> None:
    _name, (path, body), field = case
    user = await make_user("1")
    response = await post(gateway, user.token, path, body)
    assert response.status_code == 400, response.text
    error = error_of(response, path)
    assert field in error["message"], error
    assert error["param"] in (field, None), error
    assert fresh_upstream.requests == []
    async with db.session() as session:
        assert await list_usage(session, user.user_id) == []


def sent(upstream: FakeUpstream, provider: str) -> dict[str, Any]:
    [request] = [r for r in upstream.requests if r["provider"] == provider]
    body: dict[str, Any] = request["body"]
    return body


NEVER_FORWARDED = ("metadata", "user", "safety_identifier")


async def test_openai_sdk_harmless_fields_are_accepted_and_dropped(
    gateway: RunningGateway, make_user: MakeUser, fresh_upstream: FakeUpstream
) -> None:
    user = await make_user("1")
    client = gateway.async_client(user.token)
    answer = await client.chat.completions.create(
        model=NANO,
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=20,
        store=False,
        metadata={"session": "abc"},
        user="person@example.com",
        safety_identifier="hash-of-a-person",
        prompt_cache_key="conversation-7",
    )
    assert answer.choices[0].message.content
    body = sent(fresh_upstream, "openai")
    assert not set(body) & {*NEVER_FORWARDED, "store"}, body
    assert body["prompt_cache_key"] == "conversation-7"

    fresh_upstream.reset()
    reply = await client.responses.create(
        model=NANO,
        input="hi",
        max_output_tokens=20,
        store=False,
        metadata={"session": "abc"},
        user="person@example.com",
        safety_identifier="hash-of-a-person",
        include=["message.output_text.logprobs"],
        text={"verbosity": "low"},
    )
    assert reply.output_text
    body = sent(fresh_upstream, "openai")
    assert body["store"] is False, body
    assert not set(body) & set(NEVER_FORWARDED), body


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_messages_on_an_openai_model_tell_the_responses_api_not_to_store(
    stream: bool, gateway: RunningGateway, make_user: MakeUser, fresh_upstream: FakeUpstream
) -> None:
    """Anthropic SDK, Claude-Code style (metadata.user_id on every call), on gpt-4o-mini:
    LiteLLM bridges it to OpenAI's Responses API, which keeps everything by default."""
    user = await make_user("1")
    client = gateway.anthropic_client(user.token)
    request: dict[str, Any] = {
        "model": MINI,
        "max_tokens": 20,
        "messages": HI,
        "metadata": {"user_id": "user_abc_account_def_session_ghi"},
    }
    if stream:
        async with client.messages.stream(**request) as events:
            await events.get_final_message()
    else:
        assert (await client.messages.create(**request)).content
    [call] = fresh_upstream.requests
    assert call["path"] == "/v1/responses", call["path"]
    assert call["body"]["store"] is False, call["body"]
    assert "user" not in call["body"] and "metadata" not in call["body"]


async def test_messages_on_claude_forward_no_metadata_and_no_store(
    gateway: RunningGateway, make_user: MakeUser, fresh_upstream: FakeUpstream
) -> None:
    user = await make_user("1")
    client = gateway.anthropic_client(user.token)
    answer = await client.messages.create(
        model=CLAUDE, max_tokens=20, messages=HI, metadata={"user_id": "user_abc"}
    )
    assert answer.content
    body = sent(fresh_upstream, "anthropic")
    assert "metadata" not in body and "store" not in body, body


def cached_text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text, "cache_control": {"type": "ephemeral", "ttl": "1h"}}


async def test_cache_control_creates_no_gemini_context_cache(
    gateway: RunningGateway, make_user: MakeUser, fresh_upstream: FakeUpstream
) -> None:
    """On Gemini LiteLLM turned cache_control into a `cachedContents` holding the prompt in
    the operator's Google project: the hint is stripped, the call answered as usual."""
    user = await make_user("1")
    long_text = "a long shared preamble " * 600
    content = [cached_text(long_text), {"type": "text", "text": "hi"}]
    for path, body in (
        parts(GEMINI, *content),
        blocks(GEMINI, *content),
    ):
        response = await post(gateway, user.token, path, body)
        assert response.status_code == 200, response.text
    assert fresh_upstream.requests and all(
        r["provider"] == "gemini" and "cachedContents" not in r["path"]
        for r in fresh_upstream.requests
    ), [r["path"] for r in fresh_upstream.requests]
    for request in fresh_upstream.requests:
        wire = json.dumps(request["body"])
        assert "cachedContent" not in wire and "cache_control" not in wire, wire[:300]


async def test_cache_control_reaches_claude(
    gateway: RunningGateway, make_user: MakeUser, fresh_upstream: FakeUpstream
) -> None:
    user = await make_user("1")
    response = await post(gateway, user.token, *blocks(CLAUDE, cached_text("preamble")))
    assert response.status_code == 200, response.text
    body = sent(fresh_upstream, "anthropic")
    assert body["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}


async def test_inline_images_and_https_urls_pass(
    gateway: RunningGateway, make_user: MakeUser, fresh_upstream: FakeUpstream
) -> None:
    user = await make_user("1")
    for model, part in (
        (NANO, image("https://img.example/cat.png", detail="low")),
        (NANO, image(PNG, detail="high")),
        (GEMINI, image(PNG)),
    ):
        response = await post(
            gateway, user.token, *parts(model, {"type": "text", "text": "what"}, part)
        )
        assert response.status_code == 200, (model, response.text)
    assert len(fresh_upstream.requests) == 3


async def test_count_tokens_is_free_authenticated_and_never_upstream(
    gateway: RunningGateway, db: Database, make_user: MakeUser, fresh_upstream: FakeUpstream
) -> None:
    user = await make_user("0")
    client = gateway.anthropic_client(user.token)
    short = await client.messages.count_tokens(model=CLAUDE, messages=HI)
    longer = await client.messages.count_tokens(
        model=CLAUDE,
        system="Answer in French.",
        messages=[{"role": "user", "content": "hello there " * 200}],
        tools=[{"name": "f", "input_schema": {"type": "object"}}],
    )
    assert 0 < short.input_tokens < longer.input_tokens
    assert fresh_upstream.requests == []
    async with db.session() as session:
        assert await list_usage(session, user.user_id) == []
    with pytest.raises(anthropic.AuthenticationError):
        await gateway.anthropic_client("wfg_" + "0" * 43).messages.count_tokens(
            model=CLAUDE, messages=HI
        )
    refused = await post(
        gateway,
        user.token,
        "/v1/messages/count_tokens",
        {"model": CLAUDE, "messages": HI, "tools": [{"type": "web_search_20250305", "name": "w"}]},
    )
    assert refused.status_code == 400 and "tools[0].type" in refused.json()["error"]["message"]


async def test_json_nested_deeper_than_64_is_refused(
    gateway: RunningGateway, make_user: MakeUser, fresh_upstream: FakeUpstream
) -> None:
    user = await make_user("1")
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(70):
        schema = {"type": "object", "properties": {"x": schema}}
    deep = {"type": "json_schema", "json_schema": {"name": "deep", "schema": schema}}
    response = await post(gateway, user.token, *chat(NANO, response_format=deep))
    assert response.status_code == 400, response.text
    assert "deeper than 64" in response.json()["error"]["message"]
    assert fresh_upstream.requests == []


@pytest.mark.parametrize("endpoint", ["chat", "responses", "messages"])
async def test_an_upstream_4xx_text_never_reaches_the_client(
    endpoint: str, gateway: RunningGateway, make_user: MakeUser, fresh_upstream: FakeUpstream
) -> None:
    user = await make_user("1")
    secret = f"Bearer {fresh_upstream.api_key}"
    echo = (
        f"Invalid request; you sent Authorization: {secret} "
        f"to {fresh_upstream.url}/v1 deployment openai/gpt-4.1-nano"
    )
    fresh_upstream.fail_next(400, message=echo, count=3)
    path, body = {
        "chat": chat(NANO),
        "responses": responses(),
        "messages": messages(NANO),
    }[endpoint]
    response = await post(gateway, user.token, path, body)
    assert response.status_code == 400, response.text
    text = response.text
    for leak in (fresh_upstream.api_key, "Bearer", fresh_upstream.url, "127.0.0.1", "openai/"):
        assert leak not in text, (leak, text)
    assert "HTTP 400" in error_of(response, path)["message"]


def encodes_a_deployment(response_id: str) -> bool:
    try:
        decoded = base64.b64decode(response_id.removeprefix("resp_") + "==").decode()
    except (ValueError, UnicodeDecodeError):
        return False
    return "model_id" in decoded or "litellm" in decoded


async def test_responses_ids_carry_no_deployment_id(
    gateway: RunningGateway, make_user: MakeUser, fresh_upstream: FakeUpstream
) -> None:
    user = await make_user("1")
    client = gateway.async_client(user.token)
    reply = await client.responses.create(model=NANO, input="hi", max_output_tokens=20)
    assert reply.id.startswith("resp_") and not encodes_a_deployment(reply.id), reply.id
    ids = set()
    stream = await client.responses.create(
        model=NANO, input="hi", max_output_tokens=20, stream=True
    )
    async for event in stream:
        response = getattr(event, "response", None)
        if response is not None:
            ids.add(response.id)
    assert ids and not any(encodes_a_deployment(i) for i in ids), ids


ORIGIN = "https://app.example"


@pytest.fixture(scope="module")
def cors_gateway(
    database_url: str, upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    work_dir = tmp_path_factory.mktemp("cors-gateway")
    config = config_copy(work_dir, {"workforce_gateway": {"cors": {"allowed_origins": [ORIGIN]}}})
    running = start_gateway(
        database_url=database_url,
        upstream=upstream,
        work_dir=work_dir,
        extra_env={"WFG_CONFIG": str(config)},
    )
    yield running
    stop_gateway(running)


async def preflight(url: str, origin: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.options(
            f"{url}/v1/chat/completions",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )


async def test_cors_preflight_only_for_configured_origins(
    cors_gateway: RunningGateway,
    gateway: RunningGateway,
    make_user: MakeUser,
    fresh_upstream: FakeUpstream,
) -> None:
    allowed = await preflight(cors_gateway.url, ORIGIN)
    assert allowed.status_code == 200, allowed.text
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert "access-control-allow-credentials" not in allowed.headers
    other = await preflight(cors_gateway.url, "https://evil.example")
    assert "access-control-allow-origin" not in other.headers
    user = await make_user("1")
    answer = await post(cors_gateway, user.token, *chat(NANO), Origin=ORIGIN)
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    async with httpx.AsyncClient(timeout=30) as client:
        health = await client.get(f"{cors_gateway.url}/healthz", headers={"Origin": ORIGIN})
    assert "access-control-allow-origin" not in health.headers  # API routes only
    # The default config names no origin: no CORS header at all, the method is 405.
    default = await preflight(gateway.url, ORIGIN)
    assert default.status_code == 405 and default.headers["allow"] == "POST"
    assert "access-control-allow-origin" not in default.headers
