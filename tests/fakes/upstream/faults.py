"""Faults a test can arm at any time: errors, hung requests, cut and stalled streams.

Every generation call (any provider, any endpoint) passes ``admit``: first a pending
``hang_next`` is taken, else a pending ``hold_next`` (the call waits for
``release_held()``, then is answered normally, usage included), else a pending
``fail_next``. A call that then streams with
HTTP 200 takes the next pending stream fault (``cut_stream_after`` /
``stall_stream_after``, one FIFO queue); plain calls never take one.

A stream fault fires once ``chunks`` content frames (frames carrying reply text) were
sent, right before the next content frame, or before the closing frames when the reply
has fewer chunks; the frames before the text (role delta, ``message_start``,
``response.created`` ...) always go out. Nothing after that point is sent: no finish
reason, no usage, no ``[DONE]`` / ``message_stop`` / ``response.completed``.

Dropping a connection closes its socket in the middle of the chunked HTTP response,
so the client's read fails (httpx: ``RemoteProtocolError: peer closed connection
without sending complete message body``) and ``calls_served`` is not incremented.
Waiting faults (hang, stall) end when the client disconnects, or when ``reset()`` or
``stop()`` is called, which drops their connections; they never block the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from .wire import (
    SSE_HEADERS,
    SSE_MEDIA_TYPE,
    Frame,
    Kind,
    Provider,
    default_failure_message,
    error_response,
)

if TYPE_CHECKING:
    import uvicorn


class ConnectionDropped(Exception):
    """Raised only when the connection to drop cannot be found (uvicorn then closes it)."""


@dataclass(frozen=True)
class _StreamFault:
    kind: Literal["cut", "stall", "end"]
    chunks: int


class FaultsMixin:
    """Fault controls and the stream/hang machinery of ``FakeUpstream``."""

    _lock: threading.Lock
    _server: uvicorn.Server | None
    _loop: asyncio.AbstractEventLoop | None
    calls_served: int

    def _init_faults(self) -> None:
        self._failures: list[tuple[int, str | None]] = []
        self._hangs = 0
        self._holds = 0
        self._calls_held = 0
        self._held: asyncio.Event | None = None  # server loop only; set by release_held()
        self._stream_faults: list[_StreamFault] = []
        self._generation = 0  # bumped by reset(): waits armed before it end at once
        self._release: asyncio.Event | None = None  # server loop only
        self._streams_open = 0
        self._calls_hanging = 0

    # ------------------------------------------------------------------ public controls

    def fail_next(self, status: int = 400, message: str | None = None, count: int = 1) -> None:
        """Answer the next ``count`` generation calls (any provider/endpoint) with an error.

        The body is that provider's real error JSON. With ``message=None`` the
        error text quotes the request's last user message, as real 400s often do.
        """
        with self._lock:
            self._failures.extend([(status, message)] * count)

    def hang_next(self, count: int = 1) -> None:
        """Accept the next ``count`` generation calls and never send response headers.

        Each hangs until the client gives up (disconnects) or ``reset()``/``stop()``,
        which drop the connection without a response. For first-byte timeouts.
        """
        with self._lock:
            self._hangs += count

    def hold_next(self, count: int = 1) -> None:
        """Hold the next ``count`` generation calls until ``release_held()``, then answer
        them as usual (a slow upstream whose timing the test controls). A held call whose
        client disconnects first is dropped, as a hang is."""
        with self._lock:
            self._holds += count

    def release_held(self) -> None:
        """Let every held call (and any held later) be answered (any thread)."""
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._open_hold)

    def _open_hold(self) -> None:
        if self._held is None:
            self._held = asyncio.Event()
        self._held.set()

    @property
    def calls_held(self) -> int:
        """Requests currently held by ``hold_next``."""
        with self._lock:
            return self._calls_held

    def cut_stream_after(self, chunks: int, count: int = 1) -> None:
        """Drop the connection of the next ``count`` streams after ``chunks`` text chunks."""
        self._arm_stream("cut", chunks, count)

    def end_stream_after(self, chunks: int, count: int = 1) -> None:
        """Answer the next ``count`` streams with a close-delimited body (no
        ``Content-Length``, no chunked encoding, ``Connection: close``) that ends after
        ``chunks`` text chunks: the connection is closed cleanly, so the client sees an
        ordinary end of body, with no finish reason, usage or end event before it."""
        self._arm_stream("end", chunks, count)

    def stall_stream_after(self, chunks: int, count: int = 1) -> None:
        """Send ``chunks`` text chunks of the next ``count`` streams, then nothing more.

        The stream stays open (``streams_open``) until the client disconnects, or
        ``reset()``/``stop()``, which drop its connection.
        """
        self._arm_stream("stall", chunks, count)

    @property
    def streams_open(self) -> int:
        """Streamed responses whose body is being sent right now (stalled ones included)."""
        with self._lock:
            return self._streams_open

    @property
    def calls_hanging(self) -> int:
        """Requests currently held by ``hang_next``."""
        with self._lock:
            return self._calls_hanging

    # ------------------------------------------------------------------ plumbing

    def _arm_stream(self, kind: Literal["cut", "stall", "end"], chunks: int, count: int) -> None:
        if chunks < 0:
            raise ValueError("chunks must be >= 0")
        with self._lock:
            self._stream_faults.extend([_StreamFault(kind, chunks)] * count)

    def _clear_faults(self) -> None:
        """Forget armed faults and end every hang/stall in progress (any thread)."""
        with self._lock:
            self._failures.clear()
            self._hangs = 0
            self._holds = 0
            self._stream_faults.clear()
            self._generation += 1
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(self._swap_release)

    def _swap_release(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.set()  # calls held before a reset are answered
        old, self._release = self._release, None
        if old is not None:
            old.set()

    async def _released(self, generation: int) -> None:
        """Return once reset()/stop() happened after ``generation`` was read."""
        if generation != self._generation:
            return
        if self._release is None:
            self._release = asyncio.Event()
        await self._release.wait()

    def served(self) -> None:
        with self._lock:
            self.calls_served += 1

    async def admit(self, provider: Provider, request: Request, quoted: str) -> Response | None:
        """Apply ``hang_next`` or ``fail_next``; None when the call should be answered.

        ``quoted`` is the user text a default ``fail_next`` message quotes.
        """
        with self._lock:
            hang = self._hangs > 0
            if hang:
                self._hangs -= 1
                self._calls_hanging += 1
            hold = not hang and self._holds > 0
            if hold:
                self._holds -= 1
                self._calls_held += 1
            generation = self._generation
            failure = None if hang or hold or not self._failures else self._failures.pop(0)
        if hold:
            try:
                if not await self._hold(request):
                    return Response(status_code=499)  # the client left while held
            finally:
                with self._lock:
                    self._calls_held -= 1
            return None
        if hang:
            try:
                await self._hang(request, generation)
            finally:
                with self._lock:
                    self._calls_hanging -= 1
            return Response(status_code=499)  # never delivered: the client is gone
        if failure is None:
            return None
        status, message = failure
        if message is None:
            message = default_failure_message(status, quoted)
        return error_response(provider, status, message)

    async def _hold(self, request: Request) -> bool:
        """Wait for ``release_held()``; False if the client disconnected first."""
        if self._held is None:
            self._held = asyncio.Event()
        disconnect = asyncio.ensure_future(_disconnected(request))
        released = asyncio.ensure_future(self._held.wait())
        try:
            await asyncio.wait({disconnect, released}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            disconnect.cancel()
            released.cancel()
        return released.done() and not released.cancelled()

    async def _hang(self, request: Request, generation: int) -> None:
        disconnect = asyncio.ensure_future(_disconnected(request))
        released = asyncio.ensure_future(self._released(generation))
        try:
            await asyncio.wait({disconnect, released}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            released.cancel()
        if disconnect.done():
            return
        if not self._drop_connection(request):
            disconnect.cancel()
            raise ConnectionDropped("reset() while hanging")
        await disconnect

    def stream(
        self,
        request: Request,
        frames: AsyncIterator[Frame],
        *,
        media_type: str = SSE_MEDIA_TYPE,
        headers: dict[str, str] | None = None,
    ) -> StreamingResponse:
        """A 200 streamed response of ``frames``, subject to the next stream fault."""
        with self._lock:
            fault = self._stream_faults.pop(0) if self._stream_faults else None
            generation = self._generation
        body = self._serve(request, frames, fault, generation)
        if fault is not None and fault.kind == "end":
            return _CloseDelimited(self, request, body, media_type)  # type: ignore[return-value]
        return StreamingResponse(body, media_type=media_type, headers=headers or SSE_HEADERS)

    async def _serve(
        self,
        request: Request,
        frames: AsyncIterator[Frame],
        fault: _StreamFault | None,
        generation: int,
    ) -> AsyncIterator[bytes]:
        with self._lock:
            self._streams_open += 1
        try:
            sent = 0
            async for kind, data in frames:
                closing = kind is Kind.TAIL or kind is Kind.LAST
                if fault is not None and (
                    closing or (kind is Kind.CONTENT and sent >= fault.chunks)
                ):
                    if fault.kind == "end":
                        return  # `_CloseDelimited` closes the connection cleanly
                    if fault.kind == "stall":
                        # Cancelled by Starlette when the client disconnects.
                        await self._released(generation)
                    await self._drop(request)
                    return
                if kind is Kind.CONTENT:
                    sent += 1
                elif kind is Kind.LAST:
                    self.served()
                yield data
        finally:
            with self._lock:
                self._streams_open -= 1
            aclose = getattr(frames, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _drop(self, request: Request) -> None:
        if not self._drop_connection(request):
            raise ConnectionDropped("stream cut")
        # uvicorn notices the closed socket and Starlette's disconnect listener
        # cancels this stream; a clean return then needs no error log.
        await asyncio.sleep(5)
        raise ConnectionDropped("stream cut, but the client did not disconnect")

    def _drop_connection(self, request: Request) -> bool:
        """Close the socket of ``request``'s connection; False if it cannot be found."""
        transport = self._transport_of(request)
        if transport is None:
            return False
        transport.close()
        return True

    def _transport_of(self, request: Request) -> asyncio.Transport | None:
        server, client = self._server, request.scope.get("client")
        if server is None or not client:
            return None
        for connection in list(server.server_state.connections):
            if getattr(connection, "client", None) == tuple(client):
                transport = getattr(connection, "transport", None)
                return transport if isinstance(transport, asyncio.Transport) else None
        return None


class _CloseDelimited:
    """A 200 response written straight to the socket, its body delimited by the
    connection's close (HTTP/1.1 allows it with ``Connection: close``), as some proxies
    and servers send event streams; uvicorn itself always uses chunked encoding."""

    def __init__(
        self, up: FaultsMixin, request: Request, body: AsyncIterator[bytes], media_type: str
    ) -> None:
        self.up, self.request, self.body, self.media_type = up, request, body, media_type

    async def __call__(self, scope: object, receive: object, send: object) -> None:
        transport = self.up._transport_of(self.request)
        if transport is None:
            raise ConnectionDropped("no connection to answer on")
        transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: " + self.media_type.encode() + b"\r\n"
            b"cache-control: no-cache\r\nconnection: close\r\n\r\n"
        )
        async for data in self.body:
            transport.write(data)
        transport.close()  # after the buffered bytes are written: a clean end of body
        await _disconnected(self.request)


async def _disconnected(request: Request) -> None:
    """Return when the client closes the connection (the request body was already read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
