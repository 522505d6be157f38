"""Step 2: validate the request body before anything is reserved.

One pydantic model per endpoint is its allow-list: a parameter not named here is refused
with 400 and an error naming it, so nothing can change where, as whom or at what price a
call is made (`api_base`, `api_key`, `*_cost_*`, `mock_response`, `litellm_*`,
`metadata`, `fallbacks`, …). Output sizes are strict integers within the model's limit
(`150000.0`, `"150000"` and `true` are refused); `n` is capped and multiplies the
reservation. `tests/gateway/test_validation.py` enumerates every field.

Harmless fields real clients send are accepted and dropped, never forwarded (`DROPPED`:
`metadata`, `user`, `safety_identifier`, `store` — only as false); what sits inside the
messages and tools is allow-listed by `content_rules`, per provider the call may reach.
Each field's fate per endpoint (passed / dropped / forced / refused, `field_policy`) is
the table in docs/security.md, checked against this module by a test.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from gateway_plugins import metrics
from gateway_plugins.content_rules import checked_content
from gateway_plugins.targets import Target
from portal.errors import GatewayError

__all__ = [
    "BODY_TOO_SLOW_LOG",
    "DROPPED",
    "MAX_JSON_DEPTH",
    "REFUSED_BY_NAME",
    "REQUEST_MODELS",
    "BodyTooSlow",
    "CountTokensRequest",
    "InvalidRequest",
    "ValidRequest",
    "closing",
    "field_policy",
    "parse_body",
    "read_body",
    "validate",
]

log = logging.getLogger(__name__)

Number = Annotated[float, Field(strict=False)]
PositiveInt = Annotated[StrictInt, Field(ge=1)]
Short = Annotated[str, Field(max_length=256)]
Metadata = dict[str, Any]
Verbosity = Literal["low", "medium", "high"]
# Responses `include` values that return nothing stored, encrypted or paid for.
Include = Literal["message.output_text.logprobs"]


class InvalidRequest(GatewayError):
    error_code = "invalid_request"

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)
    model: Annotated[str, Field(min_length=1, max_length=200)]


class ChatRequest(_Request):
    messages: Annotated[list[dict[str, Any]], Field(min_length=1)]
    max_tokens: PositiveInt | None = None
    max_completion_tokens: PositiveInt | None = None
    n: PositiveInt | None = None
    stream: StrictBool = False
    stream_options: dict[Literal["include_usage"], StrictBool] | None = None
    temperature: Number | None = None
    top_p: Number | None = None
    stop: str | list[str] | None = None
    presence_penalty: Number | None = None
    frequency_penalty: Number | None = None
    logit_bias: dict[str, Number] | None = None
    logprobs: StrictBool | None = None
    top_logprobs: StrictInt | None = None
    seed: StrictInt | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: StrictBool | None = None
    response_format: dict[str, Any] | None = None
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None
    verbosity: Verbosity | None = None
    prompt_cache_key: Short | None = None
    store: Literal[False] | None = None
    metadata: Metadata | None = None
    safety_identifier: Short | None = None
    user: Short | None = None


class TextCompletionRequest(_Request):
    prompt: str | list[str]
    max_tokens: PositiveInt | None = None
    n: PositiveInt | None = None
    stream: StrictBool = False
    stream_options: dict[Literal["include_usage"], StrictBool] | None = None
    temperature: Number | None = None
    top_p: Number | None = None
    stop: str | list[str] | None = None
    presence_penalty: Number | None = None
    frequency_penalty: Number | None = None
    logprobs: StrictInt | None = None
    echo: StrictBool | None = None
    seed: StrictInt | None = None
    suffix: str | None = None
    user: Short | None = None


class MessagesRequest(_Request):
    """Anthropic's Messages API (`/v1/messages`)."""

    messages: Annotated[list[dict[str, Any]], Field(min_length=1)]
    max_tokens: PositiveInt
    system: str | list[dict[str, Any]] | None = None
    stop_sequences: list[str] | None = None
    stream: StrictBool = False
    temperature: Number | None = None
    top_p: Number | None = None
    top_k: StrictInt | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None
    metadata: Metadata | None = None


class CountTokensRequest(_Request):
    """Anthropic's `/v1/messages/count_tokens`: what `messages.count_tokens` sends."""

    messages: Annotated[list[dict[str, Any]], Field(min_length=1)]
    system: str | list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None


class ResponsesRequest(_Request):
    """OpenAI's Responses API (`/v1/responses`). Nothing is stored upstream (`store` is
    forced off), so `previous_response_id` cannot be offered."""

    input: str | Annotated[list[dict[str, Any]], Field(min_length=1)]
    instructions: str | None = None
    max_output_tokens: PositiveInt | None = None
    stream: StrictBool = False
    temperature: Number | None = None
    top_p: Number | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: StrictBool | None = None
    text: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    store: Literal[False] | None = None
    prompt_cache_key: Short | None = None
    include: list[Include] | None = None
    metadata: Metadata | None = None
    safety_identifier: Short | None = None
    user: Short | None = None


class EmbeddingsRequest(_Request):
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: PositiveInt | None = None
    user: Short | None = None


REQUEST_MODELS: dict[str, type[_Request]] = {
    "chat": ChatRequest,
    "text": TextCompletionRequest,
    "messages": MessagesRequest,
    "responses": ResponsesRequest,
    "embeddings": EmbeddingsRequest,
    "count_tokens": CountTokensRequest,
}
# Accepted so that real clients work, and never forwarded: they could identify a person
# upstream (`metadata.user_id`, `user`, `safety_identifier`) or ask it to keep content.
DROPPED = frozenset({"metadata", "user", "safety_identifier", "store"})
# Set by the gateway whatever the client sent (or did not send).
FORCED: dict[str, dict[str, str]] = {
    "chat": {"stream_options": "include_usage: true when streaming (metered from it)"},
    "text": {"stream_options": "include_usage: true when streaming (metered from it)"},
    "responses": {"store": "false"},
    "messages": {"store": "false when a deployment it may reach is OpenAI (Responses API)"},
}
# Fields clients are known to send that are refused, with the reason the 400 gives.
REFUSED_BY_NAME: dict[str, str] = {
    "previous_response_id": "nothing is stored upstream, so there is no response to continue",
    "conversation": "nothing is stored upstream, so there is no conversation to continue",
    "background": "a background run is kept upstream",
    "prompt": "stored prompt templates live in the operator's account",
    "service_tier": "it changes the price of the call",
    "web_search_options": "server-side web search is not offered (paid per call upstream)",
    "mcp_servers": "server-side MCP connections are not offered",
    "container": "server-side code execution is not offered",
    "modalities": "audio output is not offered",
    "audio": "audio output is not offered",
    "prediction": "predicted outputs are billed in ways the reservation cannot bound",
    "max_tool_calls": "server-side tools are not offered",
}
MAX_JSON_DEPTH = 64
_OUTPUT_FIELDS = ("max_completion_tokens", "max_tokens", "max_output_tokens")
# Where the reserved output cap goes when the client sets none (messages requires one).
_DEFAULT_OUTPUT_FIELD = {
    "chat": "max_tokens",
    "text": "max_tokens",
    "responses": "max_output_tokens",
}


@dataclass(frozen=True)
class ValidRequest:
    kind: str
    model: str
    stream: bool
    params: dict[str, Any]
    """What goes to the Router (validated fields the client set, plus ours)."""
    output_tokens: int
    """Output tokens the reservation covers, all choices together."""
    client_wants_usage: bool


class BodyTooSlow(GatewayError):
    """The body did not arrive within `timeouts.body_seconds`: 408, connection closed."""

    status_code = 408
    error_code = "body_timeout"


def closing(refused: GatewayError) -> dict[str, str] | None:
    """Response headers for a refusal: a body that came too slowly ends its connection
    (the rest of it is never read)."""
    return {"connection": "close"} if isinstance(refused, BodyTooSlow) else None


BODY_TOO_SLOW_LOG = "closing a connection: request body not complete within %ss"


async def read_body(
    chunks: AsyncIterator[bytes], declared: str | None, max_bytes: int, seconds: float
) -> bytes:
    """The body, read no further than `max_bytes` (a huge upload is refused, not buffered)
    and for no longer than `seconds` (a slow sender cannot hold a socket)."""
    too_large = InvalidRequest(f"The request body is larger than {max_bytes} bytes.")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    parts, size = [], 0
    try:
        async with asyncio.timeout(seconds):
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise too_large
                parts.append(chunk)
    except TimeoutError:
        log.info(BODY_TOO_SLOW_LOG, seconds)
        metrics.slow_client("body")
        raise BodyTooSlow(f"The request body did not arrive within {seconds} s.") from None
    return b"".join(parts)


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    # Fewer brackets than the limit cannot nest deeper than it: most bodies skip the walk.
    if raw.count(b"{") + raw.count(b"[") > MAX_JSON_DEPTH and _too_deep(body):
        raise InvalidRequest(f"The request body nests deeper than {MAX_JSON_DEPTH} levels.")
    return body


def _too_deep(body: Any) -> bool:
    stack: list[tuple[Any, int]] = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return True
        children = value.values() if isinstance(value, dict) else value
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def field_policy(kind: str, field: str) -> str:
    """What happens to `field` on endpoint `kind`: passed, dropped, forced or refused
    (the docs table's words)."""
    if field in FORCED.get(kind, {}):
        return "forced"
    if field not in REQUEST_MODELS[kind].model_fields:
        return "refused"
    return "dropped" if field in DROPPED else "passed"


def validate(
    kind: str,
    body: dict[str, Any],
    *,
    max_output_tokens: int,
    default_output_tokens: int,
    max_choices: int,
    target: Target | None = None,
) -> ValidRequest:
    """The body as an allow-listed request, or InvalidRequest naming the first bad field.
    `target` is what the requested model may reach (unknown: no provider-specific
    content, such as image URLs or cache hints, is let through)."""
    try:
        request = REQUEST_MODELS[kind].model_validate(body)
    except ValidationError as exc:
        raise _refusal(exc) from None
    target = target or Target()
    if (kind == "embeddings") != target.embedding and target.providers:
        what = "an embedding model" if target.embedding else "not an embedding model"
        message = f"The model {request.model!r} is {what}; use another endpoint."
        raise InvalidRequest(message, "model")
    params = request.model_dump(exclude_unset=True)
    for field in DROPPED:
        params.pop(field, None)
    checked_content(kind, params, target.providers)
    # Every output size the client set is checked, and the largest reserved: with both
    # max_tokens and max_completion_tokens, the provider may honour either.
    sizes = {f: params[f] for f in _OUTPUT_FIELDS if params.get(f) is not None}
    for field, size in sizes.items():
        if size > max_output_tokens:
            raise InvalidRequest(
                f"{field} may be at most {max_output_tokens} for model {request.model!r}.", field
            )
    requested = max(sizes.values(), default=None)
    if requested is None and kind in _DEFAULT_OUTPUT_FIELD:
        # The cap sent upstream is the output reserved, never the provider's maximum.
        requested = min(default_output_tokens, max_output_tokens)
        params[_DEFAULT_OUTPUT_FIELD[kind]] = requested
    choices = params.get("n") or 1
    if choices > max_choices:
        raise InvalidRequest(f"n may be at most {max_choices} on this gateway.", "n")
    # Legacy completions answer every prompt of a list, each with n choices.
    prompts = params.get("prompt")
    if isinstance(prompts, list) and prompts:
        choices *= len(prompts)
        if choices > max_choices:
            raise InvalidRequest(
                f"At most {max_choices} completions per request (prompts × n).", "prompt"
            )
    stream = bool(params.get("stream"))
    wants_usage = bool((params.get("stream_options") or {}).get("include_usage"))
    if stream and kind in ("chat", "text"):
        params["stream_options"] = {"include_usage": True}  # we meter from it
    if kind == "responses" or (kind == "messages" and "openai" in target.providers):
        # LiteLLM bridges /v1/messages on an OpenAI model to the Responses API, which
        # keeps prompt and answer unless told not to; the kwarg reaches that request.
        params["store"] = False
    return ValidRequest(
        kind=kind,
        model=request.model,
        stream=stream,
        params=params,
        output_tokens=0 if requested is None else requested * choices,
        client_wants_usage=wants_usage,
    )


def _refusal(exc: ValidationError) -> InvalidRequest:
    error = exc.errors(include_url=False, include_input=False)[0]
    location = [str(part) for part in error["loc"]]
    param = location[0] if location else None
    if error["type"] == "extra_forbidden":
        why = REFUSED_BY_NAME.get(param or "")
        reason = f" ({why})" if why else ""
        return InvalidRequest(f"Unsupported parameter: {param!r} is not accepted{reason}.", param)
    if error["type"] == "missing":
        return InvalidRequest(f"Missing required parameter: {param!r}.", param)
    where = ".".join(location) or "body"
    return InvalidRequest(f"Invalid value for {where!r}: {error['msg']}.", param)
