"""Anthropic: ``POST /v1/messages`` (LiteLLM appends /v1/messages to ANTHROPIC_API_BASE)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .core import UpstreamCore
from .tokens import anthropic_message_texts, count, last_user_text, split_reply
from .wire import (
    ANTHROPIC_ID,
    ANTHROPIC_REQUEST_ID,
    SSE_HEADERS,
    Frame,
    Kind,
    error_response,
    sse_event,
    unauthorized,
)


async def messages(up: UpstreamCore, request: Request) -> Response:
    body = await up.json_body(request)
    if body is None:
        return error_response("anthropic", 400, "messages: invalid JSON body")
    model = str(body.get("model", ""))
    stream = bool(body.get("stream", False))
    up.record("anthropic", request, model, stream, body)
    key = request.headers.get("x-api-key")
    if key != up.api_key:
        return unauthorized("anthropic", key)
    if not request.headers.get("anthropic-version"):
        return error_response("anthropic", 400, "anthropic-version: header is required")
    if not body.get("messages"):
        return error_response("anthropic", 400, "messages: Field required")
    if "max_tokens" not in body:
        return error_response("anthropic", 400, "max_tokens: Field required")
    if refused := await up.admit("anthropic", request, last_user_text(body["messages"])):
        return refused
    usage = up.usage(count(anthropic_message_texts(body)), body=body)
    reply = up.reply_for(body)
    message: dict[str, Any] = {
        "id": ANTHROPIC_ID,
        "type": "message",
        "role": "assistant",
        "model": model,
    }
    if not stream:
        up.served()
        return JSONResponse(
            {
                **message,
                "content": [{"type": "text", "text": reply}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": usage.anthropic(),
            },
            headers={"request-id": ANTHROPIC_REQUEST_ID},
        )

    async def frames() -> AsyncIterator[Frame]:
        start = {
            **message,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage.anthropic(output_tokens=1),
        }
        yield Kind.HEAD, sse_event("message_start", {"type": "message_start", "message": start})
        yield (
            Kind.HEAD,
            sse_event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
        )
        yield Kind.HEAD, sse_event("ping", {"type": "ping"})
        for piece in split_reply(reply):
            await up.pace()
            delta = {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            }
            yield Kind.CONTENT, sse_event("content_block_delta", delta)
        stop = {"type": "content_block_stop", "index": 0}
        yield Kind.TAIL, sse_event("content_block_stop", stop)
        await up.pace()
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": usage.output},
        }
        yield Kind.TAIL, sse_event("message_delta", delta)
        yield Kind.LAST, sse_event("message_stop", {"type": "message_stop"})

    return up.stream(request, frames(), headers={**SSE_HEADERS, "request-id": ANTHROPIC_REQUEST_ID})
