"""A pure ASGI middleware: request id in, `x-request-id` out, and a timing hook.

Pure ASGI (not Starlette's BaseHTTPMiddleware) so streamed responses pass through
untouched and the context variables it sets are visible to the whole request."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from portal.observability import context

__all__ = ["RequestContextMiddleware", "RequestDone"]

REQUEST_ID_HEADER = b"x-request-id"

# (scope, status, seconds) once the response has been sent in full
RequestDone = Callable[[dict[str, Any], int, float], None]


class RequestContextMiddleware:
    def __init__(self, app: Any, on_done: RequestDone | None = None) -> None:
        self.app = app
        self.on_done = on_done

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = _header(scope, REQUEST_ID_HEADER)
        rid = context.new_request_id(offered)
        started = time.time()
        rid_token = context.request_id.set(rid)
        call_token = context.call_id.set(None)
        started_token = context.request_started.set(started)
        status = 500
        perf = time.perf_counter()

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [h for h in message.get("headers", []) if h[0] != REQUEST_ID_HEADER]
                headers.append((REQUEST_ID_HEADER, rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if self.on_done is not None:
                self.on_done(scope, status, time.perf_counter() - perf)
            context.request_id.reset(rid_token)
            context.call_id.reset(call_token)
            context.request_started.reset(started_token)


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    for key, value in headers:
        if key == name:
            try:
                return value.decode("latin-1")
            except UnicodeDecodeError:
                return None
    return None
