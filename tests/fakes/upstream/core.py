"""State and request helpers shared by every provider module."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from .faults import FaultsMixin
from .tokens import LONG_REPLY, Usage, image_parts, long_reply, output_cap, split_reply, words
from .wire import DEFAULT_REPLY_TEXT, Provider

if TYPE_CHECKING:
    import uvicorn


class UpstreamCore(FaultsMixin):
    """What provider handlers use: settings, recording, usage and faults."""

    def __init__(self, api_key: str, host: str) -> None:
        self.api_key = api_key
        self.host = host
        self.url = ""
        self.requests: list[dict[str, Any]] = []
        self.calls_served = 0
        self.reply_text = DEFAULT_REPLY_TEXT
        self.usage_extra: dict[str, int] = {}
        self.chunk_delay = 0.0
        self.set_cookie: str | None = None  # a Set-Cookie value sent with every response
        # False: a Responses stream's `content_part.done` part carries no `logprobs`.
        self.part_logprobs = True
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._init_faults()

    def record(
        self, provider: Provider, request: Request, model: str, stream: bool, body: dict[str, Any]
    ) -> None:
        entry = {
            "provider": provider,
            "path": request.url.path,
            "model": model,
            "stream": stream,
            "body": body,
            "cookie": request.headers.get("cookie"),
            "port": request.client.port if request.client else None,  # the caller's side
        }
        with self._lock:
            self.requests.append(entry)

    def full_reply(self, body: dict[str, Any] | None) -> str:
        """``reply_text``, or N words when a chat prompt asks for them (``LONG_REPLY``): one
        fake serves short calls and long streams side by side (bench, fairness tests)."""
        asked = LONG_REPLY.search(str(body.get("messages", ""))) if body else None
        return self.reply_text if asked is None else long_reply(int(asked.group(1)))

    def reply_for(self, body: dict[str, Any] | None) -> str:
        """`full_reply`, cut at the request's output cap (in the fake's tokens: words), as
        a provider stops at ``max_tokens``."""
        reply = self.full_reply(body)
        cap = output_cap(body) if body is not None else None
        if cap is None or words(reply) <= cap:
            return reply
        return "".join(split_reply(reply)[:cap])

    def usage(
        self,
        prompt_tokens: int,
        *,
        choices: int = 1,
        body: dict[str, Any] | None = None,
        capped: bool = True,
    ) -> Usage:
        """Usage for a reply of ``reply_text`` per choice (cut at the request's output cap
        when ``body`` is given and ``capped``) plus the ``usage_extra`` tokens; with
        ``body``, ``usage_extra["image_tokens"]`` more prompt tokens per image part."""
        extra = self.usage_extra or {}
        if body is not None:
            prompt_tokens += image_parts(body) * int(extra.get("image_tokens", 0))
        reply = self.reply_for(body) if capped else self.full_reply(body)
        cached = min(int(extra.get("cached_tokens", 0)), prompt_tokens)
        write_1h = min(int(extra.get("cache_write_1h_tokens", 0)), prompt_tokens - cached)
        write_5m = min(
            int(extra.get("cache_write_5m_tokens", 0)), prompt_tokens - cached - write_1h
        )
        return Usage(
            prompt=prompt_tokens,
            completion=words(reply) * choices,
            cached=cached,
            reasoning=int(extra.get("reasoning_tokens", 0)),
            cache_write_5m=write_5m,
            cache_write_1h=write_1h,
        )

    async def pace(self) -> None:
        if self.chunk_delay:
            await asyncio.sleep(self.chunk_delay)

    @staticmethod
    async def json_body(request: Request) -> dict[str, Any] | None:
        # Read from `receive` itself, not `request.body()`: that wraps an async generator
        # in `aclosing`, and a handler whose task is dropped mid-read (the gateway cut the
        # connection) then fails in that generator's finalizer, an unraisable error that
        # fails whichever test happens to be running.
        chunks: list[bytes] = []
        while True:
            message = await request.receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        try:
            body = json.loads(b"".join(chunks) or b"{}")
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    @staticmethod
    def bearer(request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None
