"""A fake LLM upstream that speaks the real wire formats of four providers.

``FakeUpstream`` is a loopback HTTP server (starlette + uvicorn, running in a
background thread with its own event loop) that answers like OpenAI, Anthropic,
Google AI Studio (Gemini) and OpenRouter do, closely enough that LiteLLM as a
client cannot tell the difference. Use it from sync tests, async tests (it
never touches the caller's loop) or hand ``env()`` to a separate LiteLLM proxy
process::

    with FakeUpstream() as upstream:
        os.environ.update(upstream.env())
        ...
        assert upstream.requests[-1]["provider"] == "anthropic"

Routes (base URLs as returned by ``env()``)::

    OPENAI_API_BASE     = {url}/v1      POST /v1/chat/completions, GET /v1/models
    ANTHROPIC_API_BASE  = {url}         POST /v1/messages (LiteLLM appends /v1/messages)
    GEMINI_API_BASE     = {url}/v1beta  POST /v1beta/models/{model}:generateContent
                                        POST /v1beta/models/{model}:streamGenerateContent?alt=sse
                                        GET  /v1beta/models
    OPENROUTER_API_BASE = {url}/api/v1  POST /api/v1/chat/completions, GET /api/v1/models

Token accounting is deterministic, identical for every provider:

* prompt tokens = whitespace-separated words in all message text (system prompt
  included) + 3 per message (the system prompt counts as one message; for
  Anthropic and Gemini each text block / part counts as one message, which undoes
  LiteLLM's merging of messages, see ``_segments``);
* completion tokens = words in ``reply_text`` + ``usage_extra["reasoning_tokens"]``.

``usage_extra = {"cached_tokens": N, "reasoning_tokens": M}`` is reported the way
each provider reports it: N of the prompt tokens were read from cache (OpenAI
``prompt_tokens_details.cached_tokens``, Anthropic ``cache_read_input_tokens`` with
``input_tokens`` = prompt - N, Gemini ``cachedContentTokenCount``) and M extra
output tokens were spent thinking (OpenAI
``completion_tokens_details.reasoning_tokens``, included in ``completion_tokens``;
Anthropic: included in ``output_tokens``; Gemini ``thoughtsTokenCount``, separate
from ``candidatesTokenCount``). So LiteLLM should always see prompt = the word
count formula and completion = reply words + M.

Response ids are constant across calls, as real providers' ids may repeat: code
under test must key on LiteLLM's own call id, never on these.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = ["DEFAULT_API_KEY", "DEFAULT_REPLY_TEXT", "FakeUpstream"]

Provider = Literal["openai", "anthropic", "gemini", "openrouter"]

DEFAULT_API_KEY = "fake-upstream-key"
DEFAULT_REPLY_TEXT = "Hello from the fake upstream."

# Constant ids in each provider's real shape (see module docstring).
OPENAI_ID = "chatcmpl-FakeUpstream0000000000000000001"
OPENROUTER_ID = "gen-1700000000-FakeUpstream000001"
ANTHROPIC_ID = "msg_01FakeUpstream00000000000001"
GEMINI_RESPONSE_ID = "FakeUpstreamResponse000001"
SYSTEM_FINGERPRINT = "fp_fakeupstream"

_PER_MESSAGE_TOKENS = 3


# --------------------------------------------------------------------------- token counting


def _words(text: str) -> int:
    return len(text.split())


def _text_of(content: Any) -> str:
    """All text in an OpenAI/Anthropic content value or a Gemini ``parts`` list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(_text_of(item) for item in content)
    if isinstance(content, dict):
        texts = []
        if isinstance(content.get("text"), str):
            texts.append(content["text"])
        # Anthropic tool_result blocks nest their content; Gemini Content nests parts.
        for key in ("content", "parts"):
            if key in content:
                texts.append(_text_of(content[key]))
        return " ".join(texts)
    return ""


def _count(texts: list[str]) -> int:
    return sum(_words(t) for t in texts) + _PER_MESSAGE_TOKENS * len(texts)


def _segments(content: Any) -> list[str]:
    """One text per message-equivalent in an Anthropic or Gemini content value.

    LiteLLM folds OpenAI messages together on the way to these providers (it merges
    consecutive same-role messages into one message of several blocks, and for
    Gemini models without system-message support it prepends the system prompt to
    the first user turn as an extra part). Counting each text block / part as one
    message keeps the token count equal to the OpenAI-side count of the caller's
    plain-string messages, whatever provider the call was routed to.
    """
    if isinstance(content, dict) and "parts" in content:
        content = content["parts"]
    if isinstance(content, list):
        texts = [_text_of(block) for block in content if _is_text_block(block)]
        return texts or [""]
    return [_text_of(content)]


def _is_text_block(block: Any) -> bool:
    if isinstance(block, str):
        return True
    if not isinstance(block, dict):
        return False
    return isinstance(block.get("text"), str) or block.get("type") == "tool_result"


def _openai_message_texts(body: dict[str, Any]) -> list[str]:
    return [_text_of(m.get("content")) for m in body.get("messages") or []]


def _anthropic_message_texts(body: dict[str, Any]) -> list[str]:
    texts = _segments(body["system"]) if body.get("system") else []
    for message in body.get("messages") or []:
        texts += _segments(message.get("content"))
    return texts


def _gemini_message_texts(body: dict[str, Any]) -> list[str]:
    system = body.get("systemInstruction") or body.get("system_instruction")
    texts = _segments(system) if system else []
    for content in body.get("contents") or []:
        texts += _segments(content)
    return texts


def _last_user_text(provider: Provider, body: dict[str, Any]) -> str:
    if provider == "gemini":
        users = [c for c in body.get("contents") or [] if c.get("role", "user") == "user"]
    else:
        users = [m for m in body.get("messages") or [] if m.get("role") == "user"]
    if not users:
        return ""
    return _text_of(users[-1].get("parts" if provider == "gemini" else "content"))


def _split_reply(text: str) -> list[str]:
    """Roughly one word per chunk; the chunks concatenate back to ``text`` exactly."""
    pieces = re.findall(r"\S+\s*", text)
    if not pieces:
        return [text]
    lead = text[: len(text) - len(text.lstrip())]
    pieces[0] = lead + pieces[0]
    return pieces


@dataclass(frozen=True)
class _Usage:
    prompt: int
    completion: int  # visible reply tokens
    cached: int
    reasoning: int

    @property
    def output(self) -> int:
        return self.completion + self.reasoning

    def openai(self, *, openrouter: bool = False) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt,
            "completion_tokens": self.output,
            "total_tokens": self.prompt + self.output,
            "prompt_tokens_details": {"cached_tokens": self.cached, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": self.reasoning,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        if openrouter:
            usage["completion_tokens_details"] = {"reasoning_tokens": self.reasoning}
            usage["prompt_tokens_details"] = {"cached_tokens": self.cached}
            usage["cost"] = 0
            usage["is_byok"] = False
        return usage

    def anthropic(self, *, output_tokens: int | None = None) -> dict[str, Any]:
        return {
            "input_tokens": self.prompt - self.cached,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": self.cached,
            "output_tokens": self.output if output_tokens is None else output_tokens,
            "service_tier": "standard",
        }

    def gemini(self, *, final: bool = True) -> dict[str, Any]:
        meta: dict[str, Any] = {"promptTokenCount": self.prompt}
        if final:
            meta["candidatesTokenCount"] = self.completion
        meta["totalTokenCount"] = self.prompt + (self.output if final else 0)
        if self.cached:
            meta["cachedContentTokenCount"] = self.cached
        if final and self.reasoning:
            meta["thoughtsTokenCount"] = self.reasoning
        meta["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": self.prompt}]
        if self.cached:
            meta["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": self.cached}]
        return meta


# --------------------------------------------------------------------------- error bodies

_OPENAI_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}
_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_GEMINI_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def _error_response(provider: Provider, status: int, message: str) -> JSONResponse:
    headers: dict[str, str] = {}
    if provider == "openai":
        err_type, code = _OPENAI_ERROR_TYPES.get(
            status, ("server_error" if status >= 500 else "invalid_request_error", None)
        )
        body: dict[str, Any] = {
            "error": {"message": message, "type": err_type, "param": None, "code": code}
        }
        headers["x-request-id"] = "req_fakeupstream000000000000000001"
    elif provider == "openrouter":
        body = {"error": {"message": message, "code": status, "metadata": {}}}
        if status != 401:
            body["user_id"] = "user_fakeupstream"
    elif provider == "anthropic":
        err_type = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
        body = {
            "type": "error",
            "error": {"type": err_type, "message": message},
            "request_id": "req_011FakeUpstream0000000001",
        }
        headers["request-id"] = "req_011FakeUpstream0000000001"
        if status in (429, 529):
            headers["retry-after"] = "1"  # LiteLLM does not retry Anthropic calls itself
    else:
        body = {
            "error": {
                "code": status,
                "message": message,
                "status": _GEMINI_STATUSES.get(status, "INTERNAL" if status >= 500 else "UNKNOWN"),
            }
        }
    return JSONResponse(body, status_code=status, headers=headers)


def _default_failure_message(status: int, quoted: str) -> str:
    if status == 429:
        return f"Rate limit reached while processing request starting {quoted!r}. Try again later."
    if status >= 500:
        return f"The server had an error while processing the request {quoted!r}."
    return f"Invalid request: the content {quoted!r} could not be processed."


def _unauthorized(provider: Provider, key: str | None) -> JSONResponse:
    shown = f"{key[:3]}***{key[-4:]}" if key and len(key) > 8 else "***"
    message = {
        "openai": f"Incorrect API key provided: {shown}. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        "openrouter": "No auth credentials found" if not key else "User not found.",
        "anthropic": "invalid x-api-key",
        "gemini": "API key not valid. Please pass a valid API key.",
    }[provider]
    return _error_response(provider, 401, message)


# --------------------------------------------------------------------------- SSE helpers


def _sse_data(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


def _sse_event(event: str, payload: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


# --------------------------------------------------------------------------- the server


class FakeUpstream:
    """Loopback fake of the OpenAI, Anthropic, Gemini and OpenRouter HTTP APIs.

    Attributes that tests may set at any time (read on every request):
    ``reply_text``, ``usage_extra``, ``chunk_delay``. ``requests`` records every
    request received (failed ones and ``GET .../models`` included; a LiteLLM proxy
    lists ``{OPENAI_API_BASE}/models`` at start); ``calls_served`` counts completion
    calls answered in full with HTTP 200 (a stream counts once its last event is
    sent, so a stream the client abandons is not counted).
    """

    def __init__(self, api_key: str = DEFAULT_API_KEY, *, host: str = "127.0.0.1") -> None:
        self.api_key = api_key
        self.host = host
        self.url = ""
        self.requests: list[dict[str, Any]] = []
        self.calls_served = 0
        self.reply_text = DEFAULT_REPLY_TEXT
        self.usage_extra: dict[str, int] = {}
        self.chunk_delay = 0.0
        self._failures: list[tuple[int, str | None]] = []
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = Starlette(routes=self._routes())

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeUpstream:
        if self._thread is not None:
            return self
        # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets whose protocol
        # is TCP, and without it every request on a kept-alive connection waits ~40 ms.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(server.serve(sockets=[sock]))
            except BaseException as exc:  # surfaced by start()
                errors.append(exc)
            finally:
                loop.close()
                sock.close()

        thread = threading.Thread(target=run, name=f"fake-upstream-{port}", daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if errors or not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                thread.join(timeout=5)
                raise RuntimeError(f"fake upstream failed to start: {errors!r}")
            time.sleep(0.005)
        self._server, self._thread = server, thread
        self.url = f"http://{self.host}:{port}"
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ test controls

    def env(self) -> dict[str, str]:
        """Environment variables that point LiteLLM 1.108.5 at this server."""
        if not self.url:
            raise RuntimeError("FakeUpstream.env() called before start()")
        return {
            "OPENAI_API_BASE": f"{self.url}/v1",
            "ANTHROPIC_API_BASE": self.url,
            "GEMINI_API_BASE": f"{self.url}/v1beta",
            "OPENROUTER_API_BASE": f"{self.url}/api/v1",
            "OPENAI_API_KEY": self.api_key,
            "ANTHROPIC_API_KEY": self.api_key,
            "GEMINI_API_KEY": self.api_key,
            "OPENROUTER_API_KEY": self.api_key,
        }

    def fail_next(self, status: int = 400, message: str | None = None, count: int = 1) -> None:
        """Answer the next ``count`` completion calls (any provider) with an error.

        The body is that provider's real error JSON. With ``message=None`` the
        error text quotes the request's last user message, as real 400s often do.
        """
        with self._lock:
            self._failures.extend([(status, message)] * count)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._failures.clear()
            self.calls_served = 0
            self.reply_text = DEFAULT_REPLY_TEXT
            self.usage_extra = {}
            self.chunk_delay = 0.0

    # ------------------------------------------------------------------ plumbing

    def _routes(self) -> list[Route]:
        return [
            Route("/v1/chat/completions", self._openai_chat, methods=["POST"]),
            Route("/v1/models", self._openai_models, methods=["GET"]),
            Route("/v1/messages", self._anthropic_messages, methods=["POST"]),
            Route("/api/v1/chat/completions", self._openrouter_chat, methods=["POST"]),
            Route("/api/v1/models", self._openrouter_models, methods=["GET"]),
            Route("/{version}/models/{target:path}", self._gemini, methods=["POST"]),
            Route("/models/{target:path}", self._gemini, methods=["POST"]),
            Route("/{version}/models", self._gemini_models, methods=["GET"]),
        ]

    def _record(
        self, provider: Provider, request: Request, model: str, stream: bool, body: dict[str, Any]
    ) -> None:
        entry = {
            "provider": provider,
            "path": request.url.path,
            "model": model,
            "stream": stream,
            "body": body,
        }
        with self._lock:
            self.requests.append(entry)

    def _take_failure(self) -> tuple[int, str | None] | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    def _usage(self, prompt_tokens: int) -> _Usage:
        extra = self.usage_extra or {}
        return _Usage(
            prompt=prompt_tokens,
            completion=_words(self.reply_text),
            cached=min(int(extra.get("cached_tokens", 0)), prompt_tokens),
            reasoning=int(extra.get("reasoning_tokens", 0)),
        )

    def _served(self) -> None:
        with self._lock:
            self.calls_served += 1

    async def _pace(self) -> None:
        if self.chunk_delay:
            await asyncio.sleep(self.chunk_delay)

    @staticmethod
    async def _json_body(request: Request) -> dict[str, Any] | None:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _failure_response(self, provider: Provider, body: dict[str, Any]) -> JSONResponse | None:
        failure = self._take_failure()
        if failure is None:
            return None
        status, message = failure
        if message is None:
            message = _default_failure_message(status, _last_user_text(provider, body))
        return _error_response(provider, status, message)

    @staticmethod
    def _bearer(request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    # ------------------------------------------------------------------ OpenAI / OpenRouter

    async def _openai_chat(self, request: Request) -> Response:
        return await self._chat_completions("openai", request)

    async def _openrouter_chat(self, request: Request) -> Response:
        return await self._chat_completions("openrouter", request)

    async def _chat_completions(self, provider: Provider, request: Request) -> Response:
        body = await self._json_body(request)
        if body is None:
            return _error_response(provider, 400, "We could not parse the JSON body.")
        model = str(body.get("model", ""))
        stream = bool(body.get("stream", False))
        self._record(provider, request, model, stream, body)
        key = self._bearer(request)
        if key != self.api_key:
            return _unauthorized(provider, key)
        if not body.get("messages"):
            return _error_response(provider, 400, "'messages' is a required property")
        if failed := self._failure_response(provider, body):
            return failed
        usage = self._usage(_count(_openai_message_texts(body)))
        openrouter = provider == "openrouter"
        reply = self.reply_text
        created = int(time.time())
        base: dict[str, Any] = {"id": OPENROUTER_ID if openrouter else OPENAI_ID}
        if openrouter:
            base["provider"] = "OpenAI"
        base["model"] = model

        if not stream:
            self._served()
            message: dict[str, Any] = {"role": "assistant", "content": reply}
            choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": "stop"}
            if openrouter:
                message["refusal"] = None
                message["reasoning"] = None
                choice["logprobs"] = None
                choice["native_finish_reason"] = "stop"
            else:
                message["refusal"] = None
                message["annotations"] = []
                choice["logprobs"] = None
            payload = {
                **base,
                "object": "chat.completion",
                "created": created,
                "choices": [choice],
                "usage": usage.openai(openrouter=openrouter),
                "system_fingerprint": SYSTEM_FINGERPRINT,
            }
            if not openrouter:
                payload["service_tier"] = "default"
            return JSONResponse(payload, headers={"openai-processing-ms": "1"})

        include_usage = openrouter or bool((body.get("stream_options") or {}).get("include_usage"))

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

        async def events() -> AsyncIterator[bytes]:
            if openrouter:
                # Real OpenRouter sends SSE comments while the provider warms up.
                yield b": OPENROUTER PROCESSING\n\n"
            first_delta = {"role": "assistant", "content": ""}
            if not openrouter:
                first_delta["refusal"] = None
            yield _sse_data(chunk(first_delta, None))
            for piece in _split_reply(reply):
                await self._pace()
                yield _sse_data(chunk({"content": piece}, None))
            await self._pace()
            final = chunk({} if not openrouter else {"role": "assistant", "content": ""}, "stop")
            if openrouter:
                final["usage"] = usage.openai(openrouter=True)
            yield _sse_data(final)
            if include_usage and not openrouter:
                usage_chunk = chunk({}, None)
                usage_chunk["choices"] = []
                usage_chunk["usage"] = usage.openai()
                yield _sse_data(usage_chunk)
            self._served()
            yield _sse_data("[DONE]")

        return StreamingResponse(
            events(), media_type="text/event-stream; charset=utf-8", headers=_SSE_HEADERS
        )

    def _models_list(self, provider: Provider, ids: list[str]) -> dict[str, Any]:
        if provider == "openrouter":
            return {"data": [{"id": i, "name": i, "context_length": 128000} for i in ids]}
        return {
            "object": "list",
            "data": [
                {"id": i, "object": "model", "created": 1700000000, "owned_by": "system"}
                for i in ids
            ],
        }

    async def _openai_models(self, request: Request) -> Response:
        self._record("openai", request, "", False, {})
        key = self._bearer(request)
        if key != self.api_key:
            return _unauthorized("openai", key)
        return JSONResponse(self._models_list("openai", ["gpt-4o-mini", "gpt-4o", "o3-mini"]))

    async def _openrouter_models(self, request: Request) -> Response:
        self._record("openrouter", request, "", False, {})
        return JSONResponse(
            self._models_list("openrouter", ["openai/gpt-4o-mini", "anthropic/claude-3.5-haiku"])
        )

    # ------------------------------------------------------------------ Anthropic

    async def _anthropic_messages(self, request: Request) -> Response:
        body = await self._json_body(request)
        if body is None:
            return _error_response("anthropic", 400, "messages: invalid JSON body")
        model = str(body.get("model", ""))
        stream = bool(body.get("stream", False))
        self._record("anthropic", request, model, stream, body)
        key = request.headers.get("x-api-key")
        if key != self.api_key:
            return _unauthorized("anthropic", key)
        if not request.headers.get("anthropic-version"):
            return _error_response("anthropic", 400, "anthropic-version: header is required")
        if not body.get("messages"):
            return _error_response("anthropic", 400, "messages: Field required")
        if "max_tokens" not in body:
            return _error_response("anthropic", 400, "max_tokens: Field required")
        if failed := self._failure_response("anthropic", body):
            return failed
        usage = self._usage(_count(_anthropic_message_texts(body)))
        reply = self.reply_text
        message: dict[str, Any] = {
            "id": ANTHROPIC_ID,
            "type": "message",
            "role": "assistant",
            "model": model,
        }
        if not stream:
            self._served()
            return JSONResponse(
                {
                    **message,
                    "content": [{"type": "text", "text": reply}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": usage.anthropic(),
                },
                headers={"request-id": "req_011FakeUpstream0000000001"},
            )

        async def events() -> AsyncIterator[bytes]:
            start = {
                **message,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": usage.anthropic(output_tokens=1),
            }
            yield _sse_event("message_start", {"type": "message_start", "message": start})
            yield _sse_event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            )
            yield _sse_event("ping", {"type": "ping"})
            for piece in _split_reply(reply):
                await self._pace()
                yield _sse_event(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": piece},
                    },
                )
            yield _sse_event("content_block_stop", {"type": "content_block_stop", "index": 0})
            await self._pace()
            yield _sse_event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": usage.output},
                },
            )
            self._served()
            yield _sse_event("message_stop", {"type": "message_stop"})

        return StreamingResponse(
            events(),
            media_type="text/event-stream; charset=utf-8",
            headers={**_SSE_HEADERS, "request-id": "req_011FakeUpstream0000000001"},
        )

    # ------------------------------------------------------------------ Gemini

    async def _gemini(self, request: Request) -> Response:
        target = request.path_params["target"]
        model, _, method = target.partition(":")
        body = await self._json_body(request)
        if body is None:
            return _error_response("gemini", 400, "Invalid JSON payload received.")
        stream = method == "streamGenerateContent"
        self._record("gemini", request, model, stream, body)
        key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
        if key != self.api_key:
            return _unauthorized("gemini", key)
        if method not in ("generateContent", "streamGenerateContent"):
            return _error_response("gemini", 404, f"Method not found: {method!r}.")
        if not body.get("contents"):
            return _error_response(
                "gemini", 400, "* GenerateContentRequest.contents: contents is not specified"
            )
        if failed := self._failure_response("gemini", body):
            return failed
        usage = self._usage(_count(_gemini_message_texts(body)))
        reply = self.reply_text

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
            self._served()
            return JSONResponse(response(reply, final=True))

        if request.query_params.get("alt") != "sse":
            # Without alt=sse Gemini streams one JSON array; LiteLLM always asks for SSE.
            self._served()
            pieces = _split_reply(reply)
            items = [response(p, final=i == len(pieces) - 1) for i, p in enumerate(pieces)]
            return JSONResponse(items)

        async def events() -> AsyncIterator[bytes]:
            pieces = _split_reply(reply)
            for i, piece in enumerate(pieces):
                if i:
                    await self._pace()
                yield _sse_data(response(piece, final=i == len(pieces) - 1)).replace(
                    b"\n\n", b"\r\n\r\n"
                )
            self._served()

        return StreamingResponse(events(), media_type="text/event-stream", headers=_SSE_HEADERS)

    async def _gemini_models(self, request: Request) -> Response:
        self._record("gemini", request, "", False, {})
        key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
        if key != self.api_key:
            return _unauthorized("gemini", key)
        models = [
            {
                "name": f"models/{m}",
                "displayName": m,
                "supportedGenerationMethods": ["generateContent", "countTokens"],
            }
            for m in ("gemini-2.0-flash", "gemini-2.5-flash")
        ]
        return JSONResponse({"models": models})


def _main() -> None:  # pragma: no cover - manual use
    """Run standalone: ``python -m tests.fakes.upstream`` prints the env as JSON."""
    upstream = FakeUpstream().start()
    print(json.dumps(upstream.env(), indent=2), flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
    upstream.stop()


if __name__ == "__main__":  # pragma: no cover
    _main()
