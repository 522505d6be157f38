"""request_setup.py: LiteLLM hands the set-up of each of the five calls to the loop's
default executor in the shape the bridge recognises (so running it inline still saves
the hop); the bridge's executor runs it at once, and anything else still gets a thread."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from gateway_plugins import litellm_bridge
from gateway_plugins.litellm_bridge import Router, request_setup
from tests.fakes.upstream import FakeUpstream
from tests.gateway.litellm_pins.support import deployment


async def test_each_calls_request_setup_runs_inline_and_nothing_else_does(
    router: Router, fresh_upstream: FakeUpstream
) -> None:
    loop = asyncio.get_running_loop()
    previous = loop._default_executor  # type: ignore[attr-defined]
    assert litellm_bridge.run_request_setup_inline(loop, router)  # config.yaml's providers
    executor = loop._default_executor  # type: ignore[attr-defined]
    submit = executor.submit
    setups: list[tuple[str, bool]] = []

    def recording(fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future = submit(fn, *args, **kwargs)
        if request_setup._is_request_setup(fn):
            setups.append((fn.args[0].func.__name__, future.done()))
        return future

    executor.submit = recording
    messages = [{"role": "user", "content": "hello"}]
    try:
        await router.acompletion(model="gpt-4.1-nano", messages=messages, max_tokens=5)
        await router.atext_completion(model="gpt-4.1-nano", prompt="hello", max_tokens=5)
        await router.aembedding(model="gpt-4.1-nano", input="hello")
        await router.aanthropic_messages(model="claude-haiku-4-5", messages=messages, max_tokens=5)
        await router.aresponses(model="gpt-4.1-nano", input="hello", max_output_tokens=16)
        worker = await loop.run_in_executor(None, threading.get_ident)
    finally:
        loop.set_default_executor(previous or ThreadPoolExecutor())
        executor.shutdown(wait=False)
    assert {name for name, _ in setups} == {
        "completion",
        "text_completion",
        "embedding",
        "anthropic_messages_handler",
        "responses",
    }
    assert all(done for _, done in setups), setups
    assert worker != threading.get_ident()


async def test_a_request_setup_that_raises_raises_to_its_caller(router: Router) -> None:
    ran_in: list[int] = []

    def refusing_setup(**_: object) -> None:
        ran_in.append(threading.get_ident())
        raise ValueError("refused in set-up")

    loop = asyncio.get_running_loop()
    previous = loop._default_executor  # type: ignore[attr-defined]
    assert litellm_bridge.run_request_setup_inline(loop, router)
    setup = functools.partial(refusing_setup, model="m")
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(request_setup, "_SETUP_FUNCTIONS", frozenset({refusing_setup}))
            with pytest.raises(ValueError, match="refused in set-up"):
                await loop.run_in_executor(
                    None, functools.partial(contextvars.copy_context().run, setup)
                )
    finally:
        executor = loop._default_executor  # type: ignore[attr-defined]
        loop.set_default_executor(previous or ThreadPoolExecutor())
        executor.shutdown(wait=False)
    assert ran_in == [threading.get_ident()]


def test_request_setup_stays_in_threads_when_a_provider_may_do_io(
    upstream: FakeUpstream,
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in upstream.env().items():
            patch.setenv(name, value)
        vertex = {"model_name": "v", "litellm_params": {"model": "vertex_ai/gemini-2.5-flash"}}
        router = litellm_bridge.build_router([deployment("free"), vertex], {})
    loop = asyncio.new_event_loop()
    try:
        assert not litellm_bridge.run_request_setup_inline(loop, router)
        assert loop._default_executor is None  # type: ignore[attr-defined]
    finally:
        loop.close()
