"""OpenAI and OpenRouter: ``POST {base}/chat/completions`` and ``GET {base}/models``.

Also ``begin``, the request preamble every OpenAI-style endpoint shares.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .core import UpstreamCore
from .tokens import count, last_user_text, openai_message_texts, split_reply
from .wire import (
    OPENAI_ID,
    OPENROUTER_ID,
    SYSTEM_FINGERPRINT,
    Frame,
    Kind,
    Provider,
    error_response,
    sse_data,
    unauthorized,
)


async def begin(
    up: UpstreamCore, provider: Provider, request: Request, required: str
) -> tuple[dict[str, Any], Response | None]:
    """Parse, record and authenticate an OpenAI-style call; (body, error or None)."""
    body = await up.json_body(request)
    if body is None:
        return {}, error_response(provider, 400, "We could not parse the JSON body.")
    up.record(provider, request, str(body.get("model", "")), bool(body.get("stream")), body)
    key = up.bearer(request)
    if key != up.api_key:
        return body, unauthorized(provider, key)
    if body.get(required) in (None, "", []):
        return body, error_response(
            provider, 400, f"'{required}' is a required property", param=required
        )
    return body, None


def stream_usage_requested(provider: Provider, body: dict[str, Any]) -> bool:
    """OpenRouter always sends usage; OpenAI only with stream_options.include_usage."""
    if provider == "openrouter":
        return True
    return bool((body.get("stream_options") or {}).get("include_usage"))


async def chat_completions(up: UpstreamCore, provider: Provider, request: Request) -> Response:
    body, error = await begin(up, provider, request, "messages")
    if error is not None:
        return error
    if refused := await up.admit(provider, request, last_user_text(body["messages"])):
        return refused
    model = str(body.get("model", ""))
    # ``n`` choices (plain calls), each the same reply; usage counts every choice.
    n = body.get("n") if isinstance(body.get("n"), int) and not body.get("stream") else 1
    reply = up.reply_for(last_user_text(body["messages"]))
    usage = up.usage(count(openai_message_texts(body)), choices=max(n, 1), reply=reply)
    openrouter = provider == "openrouter"
    created = int(time.time())
    base: dict[str, Any] = {"id": OPENROUTER_ID if openrouter else OPENAI_ID}
    if openrouter:
        base["provider"] = "OpenAI"
    base["model"] = model

    if not body.get("stream"):
        up.served()
        message: dict[str, Any] = {"role": "assistant", "content": reply, "refusal": None}
        choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": "stop"}
        if openrouter:
            message["reasoning"] = None
            choice["logprobs"] = None
            choice["native_finish_reason"] = "stop"
        else:
            message["annotations"] = []
            choice["logprobs"] = None
        payload = {
            **base,
            "object": "chat.completion",
            "created": created,
            "choices": [{**choice, "index": i} for i in range(max(n, 1))],
            "usage": usage.openai(openrouter=openrouter),
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }
        if not openrouter:
            payload["service_tier"] = "default"
        return JSONResponse(payload, headers={"openai-processing-ms": "1"})

    include_usage = stream_usage_requested(provider, body)

    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        choice: dict[str, Any] = {
            "index": 0,
            "delta": delta,
            "logprobs": None,
            "finish_reason": finish,
        }
        if openrouter:
            choice["native_finish_reason"] = finish
        out: dict[str, Any] = {
            **base,
            "object": "chat.completion.chunk",
            "created": created,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": [choice],
        }
        if include_usage and not openrouter:
            out["usage"] = None
        if not openrouter:
            out["service_tier"] = "default"
        return out

    async def frames() -> AsyncIterator[Frame]:
        if openrouter:
            # Real OpenRouter sends SSE comments while the provider warms up.
            yield Kind.HEAD, b": OPENROUTER PROCESSING\n\n"
        first_delta: dict[str, Any] = {"role": "assistant", "content": ""}
        if not openrouter:
            first_delta["refusal"] = None
        yield Kind.HEAD, sse_data(chunk(first_delta, None))
        for piece in split_reply(reply):
            await up.pace()
            yield Kind.CONTENT, sse_data(chunk({"content": piece}, None))
        await up.pace()
        final = chunk({} if not openrouter else {"role": "assistant", "content": ""}, "stop")
        if openrouter:
            final["usage"] = usage.openai(openrouter=True)
        yield Kind.TAIL, sse_data(final)
        if include_usage and not openrouter:
            usage_chunk = chunk({}, None)
            usage_chunk["choices"] = []
            usage_chunk["usage"] = usage.openai()
            yield Kind.TAIL, sse_data(usage_chunk)
        yield Kind.LAST, sse_data("[DONE]")

    return up.stream(request, frames())


def _models_list(provider: Provider, ids: list[str]) -> dict[str, Any]:
    if provider == "openrouter":
        return {"data": [{"id": i, "name": i, "context_length": 128000} for i in ids]}
    return {
        "object": "list",
        "data": [
            {"id": i, "object": "model", "created": 1700000000, "owned_by": "system"} for i in ids
        ],
    }


async def openai_models(up: UpstreamCore, request: Request) -> Response:
    up.record("openai", request, "", False, {})
    key = up.bearer(request)
    if key != up.api_key:
        return unauthorized("openai", key)
    ids = ["gpt-4o-mini", "gpt-4o", "o3-mini", "gpt-3.5-turbo-instruct", "text-embedding-3-small"]
    return JSONResponse(_models_list("openai", ids))


async def openrouter_models(up: UpstreamCore, request: Request) -> Response:
    up.record("openrouter", request, "", False, {})
    return JSONResponse(
        _models_list("openrouter", ["openai/gpt-4o-mini", "anthropic/claude-3.5-haiku"])
    )
