"""Legacy text completions: ``POST {base}/completions`` (OpenAI, also OpenRouter).

``prompt`` is a string, a list of strings, a token array or a list of token arrays.
Each prompt item gets its own choice (``index`` = item position), as the real
endpoint does; ``n``, ``echo``, ``suffix`` and ``logprobs`` are ignored; ``max_tokens``
cuts each reply (as every fake provider does, ``UpstreamCore.reply_for``).

Usage: prompt tokens = words (or ints of a token array) + 3 per prompt item;
completion tokens = reply words x items + ``usage_extra["reasoning_tokens"]``;
``usage_extra["cached_tokens"]`` is reported in ``prompt_tokens_details``.
Streams send ``choices[].text`` chunks, one ``finish_reason: "stop"`` chunk per
choice, a ``choices: []`` usage chunk when ``stream_options.include_usage`` is true
(always on OpenRouter, whose last chunk carries it), then ``data: [DONE]``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .core import UpstreamCore
from .openai_chat import begin, stream_usage_requested
from .tokens import PER_MESSAGE_TOKENS, item_text, item_tokens, prompt_items, split_reply
from .wire import (
    OPENAI_COMPLETION_ID,
    OPENROUTER_ID,
    SYSTEM_FINGERPRINT,
    Frame,
    Kind,
    Provider,
    error_response,
    sse_data,
)


async def completions(up: UpstreamCore, provider: Provider, request: Request) -> Response:
    body, error = await begin(up, provider, request, "prompt")
    if error is not None:
        return error
    items = prompt_items(body["prompt"])
    if not items:
        return error_response(provider, 400, "Invalid type for 'prompt'.", param="prompt")
    if refused := await up.admit(provider, request, item_text(items[-1])):
        return refused
    openrouter = provider == "openrouter"
    prompt_tokens = sum(item_tokens(i) for i in items) + PER_MESSAGE_TOKENS * len(items)
    usage = up.usage(prompt_tokens, choices=len(items), body=body)
    reply = up.reply_for(body)
    base: dict[str, Any] = {
        "id": OPENROUTER_ID if openrouter else OPENAI_COMPLETION_ID,
        "object": "text_completion",
        "created": int(time.time()),
        "model": str(body.get("model", "")),
    }
    if openrouter:
        base["provider"] = "OpenAI"
    else:
        base["system_fingerprint"] = SYSTEM_FINGERPRINT

    def choice(index: int, text: str, finish: str | None) -> dict[str, Any]:
        return {"text": text, "index": index, "logprobs": None, "finish_reason": finish}

    if not body.get("stream"):
        up.served()
        payload = {
            **base,
            "choices": [choice(i, reply, "stop") for i in range(len(items))],
            "usage": usage.openai(openrouter=openrouter),
        }
        return JSONResponse(payload, headers={"openai-processing-ms": "1"})

    include_usage = stream_usage_requested(provider, body)

    def chunk(choices: list[dict[str, Any]]) -> dict[str, Any]:
        out = {**base, "choices": choices}
        if include_usage and not openrouter:
            out["usage"] = None
        return out

    async def frames() -> AsyncIterator[Frame]:
        for index in range(len(items)):
            for piece in split_reply(reply):
                await up.pace()
                yield Kind.CONTENT, sse_data(chunk([choice(index, piece, None)]))
        await up.pace()
        for index in range(len(items)):
            final = chunk([choice(index, "", "stop")])
            if openrouter and index == len(items) - 1:
                final["usage"] = usage.openai(openrouter=True)
            yield Kind.TAIL, sse_data(final)
        if include_usage and not openrouter:
            yield Kind.TAIL, sse_data({**base, "choices": [], "usage": usage.openai()})
        yield Kind.LAST, sse_data("[DONE]")

    return up.stream(request, frames())
