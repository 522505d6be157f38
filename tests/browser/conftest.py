"""A real portal (uvicorn, in a thread) on the gateway's database, and Debian's chromium."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from portal.settings import PROJECT_ROOT, Settings
from portal.web.app import create_app
from tests.fixtures.gateway import RunningGateway, free_port
from tests.fixtures.readiness import wait_until_ready

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = PROJECT_ROOT / "test-artifacts" / "screenshots"


@dataclass
class RunningPortal:
    url: str
    settings: Settings


@pytest.fixture
def portal(gateway: RunningGateway, database_url: str, tmp_path: Path) -> Iterator[RunningPortal]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings.from_env(
        {
            "WFG_DATABASE_URL": database_url,
            "WFG_VAR_DIR": str(tmp_path / "var"),
            "PORTAL_PUBLIC_URL": url,
            "GATEWAY_PUBLIC_URL": gateway.url,
        }
    )
    app = create_app(settings, background_jobs=False)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until_ready(lambda: server.started, alive=thread.is_alive, what="the portal")
    assert httpx.get(f"{url}/healthz", timeout=60).status_code == 200
    yield RunningPortal(url, settings)
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} not found: apt-get install chromium (CI's .ci/run does)"
        if os.environ.get("WFG_REQUIRE_SERVICES") == "1":
            pytest.fail(message + " (WFG_REQUIRE_SERVICES=1)")
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture
async def chromium(chromium_path: Path) -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(chromium_path), args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


async def wait_for(predicate, *, seconds: float = 60.0, interval: float = 0.1):
    """Poll an async predicate until it returns something truthy."""
    deadline = time.monotonic() + seconds
    while True:
        value = await predicate()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(interval)
