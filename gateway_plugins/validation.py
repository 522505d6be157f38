"""Step 2: validate the request body before anything is reserved.

One pydantic model per endpoint is its allow-list: a parameter not named here is refused
with 400 and an error naming it, so nothing can change where, as whom or at what price a
call is made (`api_base`, `api_key`, `*_cost_*`, `mock_response`, `litellm_*`,
`metadata`, `fallbacks`, …). Output sizes are strict integers within the model's limit
(`150000.0`, `"150000"` and `true` are refused); `n` is capped and multiplies the
reservation. `tests/gateway/test_validation.py` enumerates every field.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from portal.errors import GatewayError

__all__ = [
    "REQUEST_MODELS",
    "InvalidRequest",
    "ValidRequest",
    "parse_body",
    "read_body",
    "validate",
]

Number = Annotated[float, Field(strict=False)]
PositiveInt = Annotated[StrictInt, Field(ge=1)]
Short = Annotated[str, Field(max_length=256)]


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
}
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


async def read_body(chunks: AsyncIterator[bytes], declared: str | None, max_bytes: int) -> bytes:
    """The body, read no further than `max_bytes` (a huge upload is refused, not buffered)."""
    too_large = InvalidRequest(f"The request body is larger than {max_bytes} bytes.")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        parts.append(chunk)
    return b"".join(parts)


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body


def validate(
    kind: str,
    body: dict[str, Any],
    *,
    max_output_tokens: int,
    default_output_tokens: int,
    max_choices: int,
) -> ValidRequest:
    """The body as an allow-listed request, or InvalidRequest naming the first bad field."""
    try:
        request = REQUEST_MODELS[kind].model_validate(body)
    except ValidationError as exc:
        raise _refusal(exc) from None
    params = request.model_dump(exclude_unset=True)
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
    if kind == "responses":
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
        return InvalidRequest(f"Unsupported parameter: {param!r} is not accepted.", param)
    if error["type"] == "missing":
        return InvalidRequest(f"Missing required parameter: {param!r}.", param)
    where = ".".join(location) or "body"
    return InvalidRequest(f"Invalid value for {where!r}: {error['msg']}.", param)
