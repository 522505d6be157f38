"""What `gateway_plugins.sockets.HeaderDeadline` relies on in uvicorn, checked in-process
so an upgrade that moves it fails here, by name, before the end-to-end slow-client test
(`test_slow_clients_e2e.py`) fails with a timeout.

`HeaderDeadline` subclasses uvicorn's httptools protocol and hooks four of its methods
(`connection_made`, `on_headers_complete`, `on_response_complete`, `connection_lost`),
reads `self.cycle.response_complete`, `self.transport` and `self.loop`, and is handed to
`uvicorn.run(http=...)` as a partial taking uvicorn's own constructor arguments."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import AsyncIterator

import pytest
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from gateway_plugins.sockets import HeaderDeadline

HOOKED = ("connection_made", "on_headers_complete", "on_response_complete", "connection_lost")


def test_the_hooked_methods_are_uvicorns_own() -> None:
    for name in HOOKED:
        assert name in vars(HttpToolsProtocol), f"uvicorn's HttpToolsProtocol lost {name}"
    parameters = list(inspect.signature(HttpToolsProtocol.__init__).parameters)
    assert parameters[1:4] == ["config", "server_state", "app_state"], parameters


async def _app(scope: dict[str, object], receive: object, send: object) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, int]]:
    config = Config(_app, log_level="warning")
    config.load()
    protocol = functools.partial(
        HeaderDeadline,
        config=config,
        server_state=ServerState(),
        app_state={},
        header_seconds=0.3,
    )
    loop = asyncio.get_running_loop()
    listening = await loop.create_server(protocol, "127.0.0.1", 0)
    host, port = listening.sockets[0].getsockname()[:2]
    yield host, port
    listening.close()


async def test_a_whole_request_is_answered_and_partial_headers_are_cut(
    server: tuple[str, int],
) -> None:
    reader, writer = await asyncio.open_connection(*server)
    writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    answer = await reader.readuntil(b"ok")
    assert answer.startswith(b"HTTP/1.1 200")
    writer.close()
    await writer.wait_closed()

    reader, writer = await asyncio.open_connection(*server)
    writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n")  # never ends its headers
    assert await asyncio.wait_for(reader.read(), timeout=60) == b""  # closed by the deadline
    writer.close()
    await writer.wait_closed()
