"""Google AI Studio (Gemini): ``POST /v1beta/models/{model}:generateContent`` and
``:streamGenerateContent?alt=sse``, ``GET /v1beta/models``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .core import UpstreamCore
from .tokens import count, gemini_message_texts, last_user_text, split_reply
from .wire import GEMINI_RESPONSE_ID, Frame, Kind, error_response, sse_data, unauthorized


def _key(request: Request) -> str | None:
    return request.headers.get("x-goog-api-key") or request.query_params.get("key")


async def generate(up: UpstreamCore, request: Request) -> Response:
    target = request.path_params["target"]
    model, _, method = target.partition(":")
    body = await up.json_body(request)
    if body is None:
        return error_response("gemini", 400, "Invalid JSON payload received.")
    stream = method == "streamGenerateContent"
    up.record("gemini", request, model, stream, body)
    key = _key(request)
    if key != up.api_key:
        return unauthorized("gemini", key)
    if method not in ("generateContent", "streamGenerateContent"):
        return error_response("gemini", 404, f"Method not found: {method!r}.")
    if not body.get("contents"):
        return error_response(
            "gemini", 400, "* GenerateContentRequest.contents: contents is not specified"
        )
    if refused := await up.admit("gemini", request, last_user_text(body["contents"], key="parts")):
        return refused
    usage = up.usage(count(gemini_message_texts(body)), body=body)
    reply = up.reply_for(body)

    def response(text: str, *, final: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {
            "content": {"parts": [{"text": text}], "role": "model"},
        }
        if final:
            candidate["finishReason"] = "STOP"
        candidate["index"] = 0
        return {
            "candidates": [candidate],
            "usageMetadata": usage.gemini(final=final),
            "modelVersion": model,
            "responseId": GEMINI_RESPONSE_ID,
        }

    if not stream:
        up.served()
        return JSONResponse(response(reply, final=True))

    if request.query_params.get("alt") != "sse":
        # Without alt=sse Gemini streams one JSON array; LiteLLM always asks for SSE.
        up.served()
        pieces = split_reply(reply)
        items = [response(p, final=i == len(pieces) - 1) for i, p in enumerate(pieces)]
        return JSONResponse(items)

    async def frames() -> AsyncIterator[Frame]:
        # The last chunk carries the last word with finishReason and the final usage:
        # it is the stream's closing frame (stream faults fire before it).
        pieces = split_reply(reply)
        for i, piece in enumerate(pieces):
            if i:
                await up.pace()
            final = i == len(pieces) - 1
            data = sse_data(response(piece, final=final)).replace(b"\n\n", b"\r\n\r\n")
            yield (Kind.LAST if final else Kind.CONTENT), data

    return up.stream(request, frames(), media_type="text/event-stream")


async def models(up: UpstreamCore, request: Request) -> Response:
    up.record("gemini", request, "", False, {})
    key = _key(request)
    if key != up.api_key:
        return unauthorized("gemini", key)
    listed = [
        {
            "name": f"models/{m}",
            "displayName": m,
            "supportedGenerationMethods": ["generateContent", "countTokens"],
        }
        for m in ("gemini-2.0-flash", "gemini-2.5-flash")
    ]
    return JSONResponse({"models": listed})
