"""``FakeUpstream``: the server thread, test controls and the route table."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tests.fixtures.readiness import wait_until_ready

from . import anthropic, gemini
from .core import UpstreamCore
from .openai_chat import chat_completions, openai_models, openrouter_models
from .openai_completions import completions
from .openai_embeddings import embeddings
from .openai_responses import responses
from .wire import DEFAULT_API_KEY, DEFAULT_REPLY_TEXT


class FakeUpstream(UpstreamCore):
    """Loopback fake of the OpenAI, Anthropic, Gemini and OpenRouter HTTP APIs.

    Attributes that tests may set at any time (read on every request):
    ``reply_text``, ``usage_extra``, ``chunk_delay``, ``set_cookie`` (a ``Set-Cookie``
    value sent with every response, as api.openai.com's Cloudflare front sends
    ``__cf_bm``). ``requests`` records every request received (failed ones and
    ``GET .../models`` included; a LiteLLM proxy lists ``{OPENAI_API_BASE}/models`` at
    start) as ``{"provider", "path", "model", "stream", "body", "cookie", "port"}``
    (``cookie``: the request's ``Cookie`` header, or None; ``port``: the caller's TCP
    port, one per connection); ``calls_served`` counts generation calls
    (chat, messages, Gemini, completions, embeddings, responses) answered in full with
    HTTP 200 (a stream counts just before its last event is sent, so a stream the client
    abandons, or one cut or stalled by a fault, is not counted).

    Faults, armed at any time (see ``faults``): ``fail_next``, ``hang_next``,
    ``cut_stream_after``, ``stall_stream_after``; live counters ``streams_open`` and
    ``calls_hanging``. ``reset()`` restores every default and ends hangs and stalls.
    """

    def __init__(self, api_key: str = DEFAULT_API_KEY, *, host: str = "127.0.0.1") -> None:
        super().__init__(api_key, host)
        self._thread: threading.Thread | None = None
        self.app = Starlette(routes=self._routes(), middleware=[Middleware(_SetCookie, up=self)])

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
            self._loop = loop
            try:
                loop.run_until_complete(server.serve(sockets=[sock]))
            except BaseException as exc:  # surfaced by start()
                errors.append(exc)
            finally:
                self._loop = None
                self._release = None
                loop.close()
                sock.close()

        thread = threading.Thread(target=run, name=f"fake-upstream-{port}", daemon=True)
        thread.start()
        try:
            wait_until_ready(
                lambda: server.started,
                alive=lambda: not errors and thread.is_alive(),
                what="fake upstream",
                details=lambda: repr(errors),
            )
        except RuntimeError:
            server.should_exit = True
            thread.join(timeout=5)
            raise
        self._server, self._thread = server, thread
        self.url = f"http://{self.host}:{port}"
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._clear_faults()  # ends hangs and stalls, which would delay the shutdown
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

    def reset(self) -> None:
        """Forget requests and armed faults, restore the defaults, end hangs and stalls."""
        self._clear_faults()
        with self._lock:
            self.requests.clear()
            self.calls_served = 0
            self.reply_text = DEFAULT_REPLY_TEXT
            self.usage_extra = {}
            self.chunk_delay = 0.0
            self.set_cookie = None
            self.part_logprobs = True

    # ------------------------------------------------------------------ routes

    def _routes(self) -> list[Route]:
        def bind(handler: Callable[..., Awaitable[Response]], *args: Any) -> Any:
            async def endpoint(request: Request) -> Response:
                return await handler(self, *args, request)

            return endpoint

        post, get = ["POST"], ["GET"]
        routes = [
            Route("/v1/messages", bind(anthropic.messages), methods=post),
            Route("/v1/models", bind(openai_models), methods=get),
            Route("/api/v1/models", bind(openrouter_models), methods=get),
        ]
        for prefix, provider in (("/v1", "openai"), ("/api/v1", "openrouter")):
            routes += [
                Route(f"{prefix}/chat/completions", bind(chat_completions, provider), methods=post),
                Route(f"{prefix}/completions", bind(completions, provider), methods=post),
                Route(f"{prefix}/embeddings", bind(embeddings, provider), methods=post),
                Route(f"{prefix}/responses", bind(responses, provider), methods=post),
            ]
        return [
            *routes,
            Route("/{version}/models/{target:path}", bind(gemini.generate), methods=post),
            Route("/models/{target:path}", bind(gemini.generate), methods=post),
            Route("/{version}/models", bind(gemini.models), methods=get),
        ]


class _SetCookie:
    """Adds ``up.set_cookie`` (when set) to every response's headers, streams included."""

    def __init__(self, app: ASGIApp, up: UpstreamCore) -> None:
        self.app, self.up = app, up

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        cookie = self.up.set_cookie
        if cookie is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"set-cookie", cookie.encode())]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cookie)
