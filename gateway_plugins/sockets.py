"""Connections that send their request too slowly are closed (issue 19, point 6).

uvicorn closes an idle keep-alive connection after `timeout_keep_alive`, but has no
deadline on a request's headers: a connection that sends part of its headers (or nothing
at all) stays open for good, each one a socket and a file descriptor (1,000 such
sockets stayed open 70 s+). `HeaderDeadline` is uvicorn's own HTTP protocol with one: the
headers of each request must be complete within `timeouts.header_seconds` of the
connection opening or of the previous response ending, else the connection is closed
and logged (`HEADERS_TOO_SLOW_LOG`) and counted (`gateway_slow_clients_total`). What it
relies on in uvicorn (the four hooked methods, the constructor's arguments) is pinned by
`tests/gateway/test_uvicorn_reliance.py`.

The body is the app's: `validation.read_body` reads it under `timeouts.body_seconds`
and answers 408 with `Connection: close` when it passes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway_plugins import metrics

__all__ = ["HEADERS_TOO_SLOW_LOG", "HeaderDeadline"]

log = logging.getLogger(__name__)

HEADERS_TOO_SLOW_LOG = "closed a connection: request headers not complete within %ss"


class HeaderDeadline(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus a deadline on each request's headers."""

    def __init__(self, *args: Any, header_seconds: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_seconds = header_seconds
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_timer()  # the next request's headers, if any come

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_seconds, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        # An idle keep-alive connection is uvicorn's to close (`timeout_keep_alive`, sooner);
        # one whose request is being answered has its headers already.
        if self.cycle is not None and not self.cycle.response_complete:
            return
        log.info(HEADERS_TOO_SLOW_LOG, self.header_seconds)
        metrics.slow_client("headers")
        self.transport.close()
