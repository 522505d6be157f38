"""The Responses API: ``POST {base}/responses`` (OpenAI, also OpenRouter).

``input`` is a string or a list of input items (``{"role", "content"}`` messages with
string or ``input_text`` parts, ``function_call_output`` items ...); ``instructions``
counts as one more message. Usage: ``input_tokens`` = words + 3 per input item
(+ instructions), ``output_tokens`` = reply words + reasoning tokens, reported as
``input_tokens_details.cached_tokens`` / ``output_tokens_details.reasoning_tokens``
from ``usage_extra``. With reasoning tokens the output starts with a ``reasoning``
item (empty summary), as reasoning models' output does.

``max_output_tokens`` below 16 is a 400, as on the real API; when the reply (plus
reasoning) is longer, it is cut to fit: ``status: "incomplete"``,
``incomplete_details.reason: "max_output_tokens"``, and a stream ends with
``response.incomplete`` instead of ``response.completed``.

Streams are ``event: <type>\\ndata: <json>\\n\\n`` frames with a running
``sequence_number``: response.created, response.in_progress, (reasoning item
added/done,) response.output_item.added, response.content_part.added,
response.output_text.delta (one per word), response.output_text.done,
response.content_part.done, response.output_item.done, response.completed.
There is no ``[DONE]``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .core import UpstreamCore
from .openai_chat import begin
from .tokens import count, split_reply, text_of
from .wire import (
    OPENAI_MESSAGE_ID,
    OPENAI_REASONING_ID,
    OPENAI_RESPONSE_ID,
    Frame,
    Kind,
    Provider,
    error_response,
    sse_event,
)

MIN_OUTPUT_TOKENS = 16


def _item_text(item: Any) -> str:
    if not isinstance(item, dict):
        return text_of(item)
    for key in ("content", "output", "arguments"):
        if key in item:
            return text_of(item[key])
    return ""


def input_texts(body: dict[str, Any]) -> list[str]:
    """One text per input item, ``instructions`` first."""
    texts = [text_of(body["instructions"])] if body.get("instructions") else []
    value = body.get("input")
    if isinstance(value, list):
        return texts + [_item_text(item) for item in value]
    return [*texts, text_of(value)]


def _last_user_text(body: dict[str, Any]) -> str:
    value = body.get("input")
    if not isinstance(value, list):
        return text_of(value)
    users = [i for i in value if isinstance(i, dict) and i.get("role") == "user"]
    return text_of(users[-1].get("content")) if users else ""


async def responses(up: UpstreamCore, provider: Provider, request: Request) -> Response:
    body, error = await begin(up, provider, request, "input")
    if error is not None:
        return error
    limit = body.get("max_output_tokens")
    if limit is not None and (not isinstance(limit, int) or limit < MIN_OUTPUT_TOKENS):
        return error_response(
            provider,
            400,
            "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= "
            f"{MIN_OUTPUT_TOKENS}, but got {limit} instead.",
            param="max_output_tokens",
        )
    if refused := await up.admit(provider, request, _last_user_text(body)):
        return refused

    usage = up.usage(count(input_texts(body)), body=body, capped=False)  # capped below
    pieces = split_reply(up.reply_text)
    incomplete = False
    if limit is not None and usage.output > limit:
        incomplete = True
        reasoning = min(usage.reasoning, limit)
        pieces = pieces[: limit - reasoning]
        usage = dataclasses.replace(usage, completion=len(pieces), reasoning=reasoning)
    text = "".join(pieces)
    status = "incomplete" if incomplete else "completed"
    created = int(time.time())

    def response_object(state: str, output: list[dict[str, Any]]) -> dict[str, Any]:
        done = state != "in_progress"
        return {
            "id": OPENAI_RESPONSE_ID,
            "object": "response",
            "created_at": created,
            "status": state,
            "background": False,
            "completed_at": created if state == "completed" else None,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete and done else None,
            "instructions": body.get("instructions"),
            "max_output_tokens": limit,
            "max_tool_calls": None,
            "model": str(body.get("model", "")),
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": body.get("previous_response_id"),
            "prompt_cache_key": None,
            "reasoning": {"effort": None, "summary": None},
            "safety_identifier": None,
            "service_tier": "default" if done else "auto",
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": "auto",
            "tools": [],
            "top_logprobs": 0,
            "top_p": body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": usage.responses() if done else None,
            "user": None,
            "metadata": body.get("metadata") or {},
        }

    reasoning_item = {"id": OPENAI_REASONING_ID, "type": "reasoning", "summary": []}
    index = 1 if usage.reasoning else 0  # output_index of the message

    def part(value: str) -> dict[str, Any]:
        return {"type": "output_text", "annotations": [], "logprobs": [], "text": value}

    def message(state: str, content: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": OPENAI_MESSAGE_ID,
            "type": "message",
            "status": state,
            "content": content,
            "role": "assistant",
        }

    final_output = [reasoning_item] if usage.reasoning else []
    final_output.append(message(status, [part(text)]))

    if not body.get("stream"):
        up.served()
        return JSONResponse(response_object(status, final_output))

    sequence = iter(range(1_000_000))

    def event(kind: Kind, name: str, **fields: Any) -> Frame:
        payload = {"type": name, "sequence_number": next(sequence), **fields}
        return kind, sse_event(name, payload)

    at_part = {"item_id": OPENAI_MESSAGE_ID, "output_index": index, "content_index": 0}

    async def frames() -> AsyncIterator[Frame]:
        head = Kind.HEAD
        yield event(head, "response.created", response=response_object("in_progress", []))
        yield event(head, "response.in_progress", response=response_object("in_progress", []))
        if usage.reasoning:
            yield event(head, "response.output_item.added", output_index=0, item=reasoning_item)
            yield event(head, "response.output_item.done", output_index=0, item=reasoning_item)
        added = message("in_progress", [])
        yield event(head, "response.output_item.added", output_index=index, item=added)
        yield event(head, "response.content_part.added", **at_part, part=part(""))
        for piece in pieces:
            await up.pace()
            yield event(
                Kind.CONTENT, "response.output_text.delta", **at_part, delta=piece, logprobs=[]
            )
        await up.pace()
        yield event(Kind.TAIL, "response.output_text.done", **at_part, text=text, logprobs=[])
        done_part = part(text)
        if not up.part_logprobs:  # as some OpenAI-compatible servers send it
            del done_part["logprobs"]
        yield event(Kind.TAIL, "response.content_part.done", **at_part, part=done_part)
        done = message(status, [part(text)])
        yield event(Kind.TAIL, "response.output_item.done", output_index=index, item=done)
        yield event(Kind.LAST, f"response.{status}", response=response_object(status, final_output))

    return up.stream(request, frames())
