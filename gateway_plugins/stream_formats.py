"""How each API's stream is read and written: Server-Sent Events in OpenAI chat/text,
Anthropic Messages and OpenAI Responses format.

A relay turns what LiteLLM yields into the bytes the client gets, and on the way notes
what the metering needs — the usage the upstream reported, the output text the upstream
sent (kept in memory only until the call is settled, so a call that ends without a usage
report is billed by the model's tokenizer; never stored or logged), whether the upstream
said it finished — and holds back the
stream's final event (`[DONE]`, `message_stop`, `response.completed`) until the call is
settled. The final usage event (the usage chunk, `message_delta`, `response.completed`) is
held too, and sent with the call's charge in its usage (`charges.with_cost`). A stream
that ends without its upstream finish gets an error event in its own format instead
(`error_frame`), never a made-up finish.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway_plugins.charges import with_cost
from gateway_plugins.errors import ErrorBody, anthropic_error_event, openai_stream_error
from gateway_plugins.metering import Usage, usage_from
from gateway_plugins.response_ids import with_public_response_id

__all__ = ["RELAYS", "Relay"]


class Relay:
    """Base: subclasses implement `feed` (one LiteLLM item → bytes to send now)."""

    def __init__(self, client_wants_usage: bool) -> None:
        self.client_wants_usage = client_wants_usage
        self.usage: Usage | None = None
        self.usage_final = False  # `usage` is the upstream's report for the whole call
        self.pieces: list[str] = []  # output text the upstream sent (reasoning, tool args)
        self.finished = False  # the upstream said the answer is complete
        self.upstream_error = False  # the upstream ended the stream with its own error event
        self.held: list[bytes] = []  # final frames, sent after settlement
        self.usage_event: dict[str, Any] | None = None  # the final usage event, held
        self.charged_units: int | None = None  # what settlement debited (set by it)

    def feed(self, item: Any) -> bytes | None:
        raise NotImplementedError

    def final_frames(self) -> list[bytes]:
        return [self.usage_frame(), *self.held]

    def usage_frame(self) -> bytes:
        """The held final usage event, its usage carrying the call's charge (b"": none)."""
        event = self.usage_event
        if event is None:
            return b""
        if self.charged_units is not None:
            with_cost(self._usage_of(event), self.charged_units)
        return self._usage_event_frame(event)

    def _usage_of(self, event: dict[str, Any]) -> Any:
        return event.get("usage")

    def _usage_event_frame(self, event: dict[str, Any]) -> bytes:
        return _data(orjson.dumps(event))

    def error_frame(self, body: ErrorBody) -> bytes:
        return openai_stream_error(body)


def _data(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


class ChatRelay(Relay):
    """`/v1/chat/completions` and `/v1/completions`: `data: {chunk}` … `data: [DONE]`.

    Each chunk is read as the JSON-ready dict the client gets: LiteLLM's chunk objects
    keep their fields as pydantic extras, where every attribute read (and every miss:
    `usage`, `text`, `reasoning_content` are absent from most chunks) cost microseconds,
    several times a chunk; one dump per chunk is cheaper and counts what is sent."""

    def feed(self, chunk: Any) -> bytes | None:
        data = (
            chunk if isinstance(chunk, dict) else chunk.model_dump(mode="json", exclude_none=True)
        )
        usage = data.get("usage")
        if usage is not None:
            self.usage = usage_from(usage)
            self.usage_final = self.usage is not None
            if self.client_wants_usage:
                self.usage_event = data
            return None
        for choice in data.get("choices") or ():
            if choice.get("finish_reason"):
                self.finished = True
            _choice_texts(choice, self.pieces)
        return _data(self._encode(data))

    def _encode(self, data: dict[str, Any]) -> bytes:
        return orjson.dumps(data)

    def final_frames(self) -> list[bytes]:
        return [self.usage_frame(), *self.held, b"data: [DONE]\n\n"]


class TextRelay(ChatRelay):
    """`/v1/completions`: as chat, but every choice carries `text` (a string, `""` in the
    finishing chunk, as OpenAI sends it); LiteLLM's chunk has `None` there, which
    `exclude_none` drops and clients that join the texts would trip over."""

    def _encode(self, data: dict[str, Any]) -> bytes:
        for choice in data.get("choices") or ():
            choice.setdefault("text", "")
        return orjson.dumps(data)


def _as_dict(chunk: Any) -> dict[str, Any]:
    if isinstance(chunk, dict):
        return chunk
    return chunk.model_dump(mode="json", exclude_none=True)  # type: ignore[no-any-return]


def _choice_texts(choice: dict[str, Any], pieces: list[str]) -> None:
    """Output text in one choice of a chunk (text, content, reasoning, tool arguments),
    appended to `pieces`: what a stream without a usage report is billed by."""
    text = choice.get("text")  # text completions
    if isinstance(text, str) and text:
        pieces.append(text)
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        return
    for field in ("content", "reasoning_content"):
        value = delta.get(field)
        if isinstance(value, str) and value:
            pieces.append(value)
    for tool_call in delta.get("tool_calls") or ():
        function = tool_call.get("function") if isinstance(tool_call, dict) else None
        arguments = function.get("arguments") if isinstance(function, dict) else None
        if isinstance(arguments, str) and arguments:
            pieces.append(arguments)


class MessagesRelay(Relay):
    """`/v1/messages`: Anthropic's named events; LiteLLM yields raw SSE bytes (split at
    any point) or, when it translated another provider, event dicts."""

    def __init__(self, client_wants_usage: bool) -> None:
        super().__init__(client_wants_usage)
        self._buffer = b""

    def feed(self, item: Any) -> bytes | None:
        if isinstance(item, dict):
            item = b"event: " + str(item.get("type")).encode() + b"\n" + _data(orjson.dumps(item))
        if isinstance(item, str):
            item = item.encode()
        self._buffer += item
        out = []
        while b"\n\n" in self._buffer:
            frame, self._buffer = self._buffer.split(b"\n\n", 1)
            if frame.strip() and (kept := self._frame(frame + b"\n\n")) is not None:
                out.append(kept)
        return b"".join(out) or None

    def _frame(self, frame: bytes) -> bytes | None:
        event = _event_data(frame)
        kind = event.get("type")
        if kind == "message_start":
            self.usage = usage_from((event.get("message") or {}).get("usage")) or Usage()
        elif kind == "content_block_delta":
            delta = event.get("delta") or {}
            for field in ("text", "partial_json", "thinking"):
                value = delta.get(field)
                if isinstance(value, str) and value:
                    self.pieces.append(value)
        elif kind == "message_delta":
            reported = usage_from(event.get("usage"))
            if reported is not None:
                base = self.usage or Usage()
                self.usage = Usage(
                    prompt=reported.prompt or base.prompt,
                    completion=reported.completion,
                    cached=reported.cached or base.cached,
                    cache_creation=reported.cache_creation or base.cache_creation,
                    cache_creation_1h=reported.cache_creation_1h or base.cache_creation_1h,
                    reasoning=reported.reasoning,
                )
                self.usage_final = True
                if isinstance(event.get("usage"), dict):
                    self.usage_event = event  # sent after settlement, with the charge
                    return None
        elif kind == "message_stop":
            self.finished = True
            self.held.append(frame)
            return None
        elif kind == "error":
            self.upstream_error = True
        return frame

    def error_frame(self, body: ErrorBody) -> bytes:
        return b"" if self.upstream_error else anthropic_error_event(body)

    def _usage_event_frame(self, event: dict[str, Any]) -> bytes:
        return b"event: message_delta\n" + _data(orjson.dumps(event))


def _event_data(frame: bytes) -> dict[str, Any]:
    for line in frame.split(b"\n"):
        if line.startswith(b"data:"):
            try:
                data = orjson.loads(line[5:])
            except orjson.JSONDecodeError:
                return {}
            return data if isinstance(data, dict) else {}
    return {}


_RESPONSES_TEXT_DELTAS = frozenset(
    {
        "response.output_text.delta",
        "response.reasoning_text.delta",
        "response.reasoning_summary_text.delta",
        "response.function_call_arguments.delta",
        "response.refusal.delta",
    }
)
_RESPONSES_ENDS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def _dumped(value: Any) -> Any:
    return value.model_dump() if hasattr(value, "model_dump") else value


class ResponsesRelay(Relay):
    """`/v1/responses`: typed events `event: <type>` / `data: {…}`."""

    def __init__(self, client_wants_usage: bool) -> None:
        super().__init__(client_wants_usage)
        self.sequence = 0

    def feed(self, event: Any) -> bytes | None:
        kind = getattr(event, "type", "")
        kind = str(getattr(kind, "value", kind))  # LiteLLM uses a str Enum for some
        self.sequence = max(self.sequence, int(getattr(event, "sequence_number", 0) or 0))
        with_public_response_id(getattr(event, "response", None))
        payload = event.model_dump_json().encode()
        frame = b"event: " + kind.encode() + b"\n" + _data(payload)
        if kind in _RESPONSES_TEXT_DELTAS:
            delta = getattr(event, "delta", "")
            if isinstance(delta, str) and delta:
                self.pieces.append(delta)
        elif kind in _RESPONSES_ENDS:
            # completed, or incomplete (max_output_tokens reached, a content filter): the
            # API's own end, billed from the usage it reports; failed: the upstream's own
            # error event, relayed, and billed from its usage too when it has one.
            response = getattr(event, "response", None)
            usage = getattr(response, "usage", None)
            if usage is not None:
                self.usage = usage_from(_dumped(usage))
                self.usage_final = self.usage is not None
            if kind == "response.failed":
                self.upstream_error = True
                return frame
            self.finished = True
            self.usage_event = orjson.loads(payload)  # sent after settlement, with the charge
            return None
        elif kind == "error":
            self.upstream_error = True
        return frame

    def error_frame(self, body: ErrorBody) -> bytes:
        if self.upstream_error:
            return b""
        payload = {
            "type": "error",
            "code": body.code,
            "message": body.message,
            "param": None,
            "sequence_number": self.sequence + 1,
        }
        return b"event: error\n" + _data(orjson.dumps(payload))

    def _usage_of(self, event: dict[str, Any]) -> Any:
        response = event.get("response")
        return response.get("usage") if isinstance(response, dict) else None

    def _usage_event_frame(self, event: dict[str, Any]) -> bytes:
        return b"event: " + str(event.get("type")).encode() + b"\n" + _data(orjson.dumps(event))


RELAYS: dict[str, type[Relay]] = {
    "chat": ChatRelay,
    "text": TextRelay,
    "messages": MessagesRelay,
    "responses": ResponsesRelay,
}
