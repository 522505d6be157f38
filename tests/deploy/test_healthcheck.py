"""deploy/healthcheck.py, the image's HEALTHCHECK and compose's health checks: healthy
exactly when the service answers 200 on the asked path, on the port from the environment."""

from __future__ import annotations

import http.server
import runpy
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.deploy.artifacts import DEPLOY


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = {"/healthz": 200, "/readyz": 503}.get(self.path, 404)
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def service_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def probe() -> Any:
    return runpy.run_path(str(DEPLOY / "healthcheck.py"))["main"]


@pytest.mark.parametrize(
    ("service", "variable"), [("gateway", "GATEWAY_PORT"), ("portal", "PORTAL_PORT")]
)
def test_healthy_only_on_200_from_the_configured_port(
    probe: Any, service_port: int, service: str, variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, str(service_port))
    assert probe(["wfg-healthcheck", service, "/healthz"]) == 0
    assert probe(["wfg-healthcheck", service, "/readyz"]) == 1  # 503: not ready


def test_unhealthy_when_nothing_listens(probe: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = sock.getsockname()[1]
    monkeypatch.setenv("GATEWAY_PORT", str(free))
    assert probe(["wfg-healthcheck", "gateway", "/healthz"]) == 1


def test_refuses_unknown_services(probe: Any) -> None:
    assert probe(["wfg-healthcheck", "database", "/healthz"]) == 2
