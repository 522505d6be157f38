"""What the pins share: the gateway's Router from config.yaml, pointed at the fake
upstream. In-process, so a pin can count calls of the LiteLLM code it relies on."""

from __future__ import annotations

import contextlib
import gc
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from gateway_plugins import litellm_bridge
from gateway_plugins.litellm_bridge import Router
from portal.settings import PROJECT_ROOT
from tests.fakes.upstream import FakeUpstream
from tests.gateway.support import gateway_config

MESSAGES = [{"role": "user", "content": "pin this behaviour down"}]


@contextlib.contextmanager
def router_on(
    upstream: FakeUpstream, router_settings: dict[str, Any] | None = None
) -> Iterator[Router]:
    """The gateway's Router (`router_settings`: config.yaml's, with these added)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in upstream.env().items():
            patch.setenv(name, value)
        raw = gateway_config().raw
        litellm_bridge.apply_litellm_settings(raw.get("litellm_settings") or {})
        settings = {**(raw.get("router_settings") or {}), **(router_settings or {})}
        yield litellm_bridge.build_router(raw["model_list"], settings)


def model_id(router: Router, group: str) -> str:
    return str(
        next(d["model_info"]["id"] for d in router.registry().all() if d["model_name"] == group)
    )


def deployment(name: str, **limits: int) -> dict[str, object]:
    params = {
        "model": "openai/gpt-4.1-nano",
        "api_base": "os.environ/OPENAI_API_BASE",
        "api_key": "os.environ/OPENAI_API_KEY",
    }
    return {"model_name": name, "litellm_params": {**params, **limits}}


async def chat_stream_with_usage(router: Router, model: str) -> tuple[Any, list[Any]]:
    """The Router's stream object and its chunks, usage asked for."""
    stream = await router.acompletion(
        model=model,
        messages=MESSAGES,
        max_tokens=200,
        stream=True,
        stream_options={"include_usage": True},
    )
    return stream, [chunk async for chunk in stream]


def open_sessions() -> set[int]:
    return {
        id(o) for o in gc.get_objects() if isinstance(o, aiohttp.ClientSession) and not o.closed
    }


def run_python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter from the project root: what LiteLLM does at import or
    on a first call, before anything else in this process loaded it."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
