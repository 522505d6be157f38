"""Pins of every LiteLLM behaviour the gateway relies on (gateway_plugins/litellm_bridge.py
names them). An upgrade of LiteLLM that changes one fails here, not in production.

In-process: a Router built by the bridge from config.yaml, against the fake upstream."""

from __future__ import annotations

import ast
import contextlib
import functools
import gc
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway_plugins import litellm_bridge
from gateway_plugins.litellm_bridge import Router
from gateway_plugins.metering import usage_cost_usd, usage_from
from portal.settings import PROJECT_ROOT
from tests.fakes.upstream import FakeUpstream
from tests.fixtures.gateway import eventually
from tests.gateway.support import gateway_config

MESSAGES = [{"role": "user", "content": "pin this behaviour down"}]


@contextlib.contextmanager
def _router_on(upstream: FakeUpstream) -> Iterator[Router]:
    """The gateway's Router from config.yaml, its providers pointed at the fake."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in upstream.env().items():
            patch.setenv(name, value)
        raw = gateway_config().raw
        litellm_bridge.apply_litellm_settings(raw.get("litellm_settings") or {})
        yield litellm_bridge.build_router(raw["model_list"], raw.get("router_settings") or {})


@pytest.fixture(scope="module")
async def router(upstream: FakeUpstream) -> AsyncIterator[Router]:
    with _router_on(upstream) as router:
        yield router
        await litellm_bridge.close_upstream_clients(router)


def test_only_the_bridge_imports_litellm() -> None:
    importers = []
    for path in sorted((PROJECT_ROOT / "gateway_plugins").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(name == "litellm" or name.startswith("litellm.") for name in names):
                importers.append(Path(path).name)
    # token_counting.py: the tokenizer selection billing relies on, kept beside its use
    # while litellm_bridge.py is being upgraded on another branch; it moves into the
    # bridge once that lands (the lead's call, issue 19.3).
    assert sorted(set(importers)) == ["litellm_bridge.py", "token_counting.py"]


def test_the_router_has_every_call_the_gateway_makes(router: Router) -> None:
    for method in litellm_bridge.ROUTER_METHODS.values():
        assert callable(getattr(router, method)), method


def test_message_logging_stays_off_and_callbacks_stay_empty() -> None:
    import litellm

    litellm_bridge.apply_litellm_settings({"turn_off_message_logging": False, "set_verbose": True})
    assert litellm.turn_off_message_logging is True
    assert litellm.set_verbose is False
    assert litellm.callbacks == litellm.success_callback == litellm.failure_callback == []


async def test_a_plain_response_names_its_deployment_and_its_usage_prices_as_litellm_would(
    router: Router, fresh_upstream: FakeUpstream
) -> None:
    """The gateway prices a plain answer from its reported usage; that is the price
    LiteLLM's own pricing of the whole response gives (cached input and reasoning too)."""
    import litellm

    fresh_upstream.usage_extra = {"cached_tokens": 3, "reasoning_tokens": 4}
    response = await router.acompletion(model="gpt-4.1-nano", messages=MESSAGES, max_tokens=20)
    model_id = litellm_bridge.model_id_of(response)
    assert model_id is not None
    assert litellm_bridge.group_of(router, model_id, "?") == "gpt-4.1-nano"
    data = litellm_bridge.to_jsonable(response)
    usage = usage_from(data["usage"])
    assert usage is not None and usage.prompt > 0 and usage.completion > 0
    assert (usage.cached, usage.reasoning) == (3, 4)
    assert "_hidden_params" not in data
    ours = usage_cost_usd(router, model_id, usage)
    litellms = Decimal(str(litellm.completion_cost(completion_response=response)))
    assert ours > 0
    assert abs(ours - litellms) <= litellms * Decimal("1e-9")


async def _chat_stream_with_usage(router: Router, model: str) -> tuple[Any, list[Any]]:
    """The Router's stream object and its chunks, usage asked for."""
    stream = await router.acompletion(
        model=model,
        messages=MESSAGES,
        max_tokens=200,
        stream=True,
        stream_options={"include_usage": True},
    )
    return stream, [chunk async for chunk in stream]


async def test_a_chat_stream_asked_for_usage_ends_with_it(
    router: Router, fresh_upstream: FakeUpstream
) -> None:
    stream, chunks = await _chat_stream_with_usage(router, "claude-haiku-4-5")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert any(c.choices and c.choices[0].finish_reason for c in chunks[:-1])
    model_id = stream._hidden_params["model_id"]
    assert litellm_bridge.group_of(router, model_id, "?") == "claude-haiku-4-5"


@pytest.mark.parametrize(
    ("words", "in_the_loops_thread"),
    [(5, True), (litellm_bridge.INLINE_CHUNK_BUILD_MAX_CHUNKS + 5, False)],
)
async def test_a_stream_is_built_once_and_a_short_one_in_the_loops_thread(
    router: Router,
    fresh_upstream: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
    words: int,
    in_the_loops_thread: bool,
) -> None:
    """LiteLLM builds the whole answer at a stream's end (`stream_chunk_builder`, through
    `streaming_handler.asyncify`) for the usage it sends last, and again for its logging;
    through the bridge it is built once, a short stream's in the loop's thread, a long
    one's in a worker thread, and the stream ends with the upstream's usage either way."""
    import threading

    import litellm

    litellm_bridge.build_each_stream_once()
    built_in: list[int] = []
    build = litellm.stream_chunk_builder

    def recorded(*args: Any, **kwargs: Any) -> Any:
        built_in.append(threading.get_ident())
        return build(*args, **kwargs)

    monkeypatch.setattr(litellm, "stream_chunk_builder", recorded)
    fresh_upstream.reply_text = " ".join(["word"] * words)
    _, chunks = await _chat_stream_with_usage(router, "gpt-4.1-nano")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == words
    assert len(built_in) == 1  # twice without the bridge
    assert (built_in[0] == threading.get_ident()) is in_the_loops_thread


async def test_an_anthropic_messages_stream_is_raw_sse_bytes(
    router: Router, fresh_upstream: FakeUpstream
) -> None:
    stream = await router.aanthropic_messages(
        model="claude-haiku-4-5", messages=MESSAGES, max_tokens=20, stream=True
    )
    items = [item async for item in stream]
    assert items and all(isinstance(item, bytes) for item in items)
    assert b"event: message_stop" in b"".join(items)


def _model_id(router: Router, group: str) -> str:
    return str(
        next(d["model_info"]["id"] for d in router.registry().all() if d["model_name"] == group)
    )


async def test_usage_is_priced_with_cached_input_cheaper(router: Router) -> None:
    model_id = _model_id(router, "gpt-4.1-nano")
    full = litellm_bridge.usage_cost(router, model_id, prompt_tokens=1000, completion_tokens=100)
    cached = litellm_bridge.usage_cost(
        router, model_id, prompt_tokens=1000, completion_tokens=100, cached_tokens=800
    )
    assert Decimal(0) < cached < full


def test_cache_reads_and_writes_are_priced_once_at_configured_and_mapped_prices(
    router: Router,
) -> None:
    """Prompt tokens include cache reads and writes. The OpenRouter deployment's price is
    configured without cache prices: every prompt token costs the input price, once (it
    was charged 1.6x for cached input). Anthropic's cost map prices reads below and writes
    above the input price."""

    def priced(group: str, cached: int = 0, written: int = 0) -> Decimal:
        return litellm_bridge.usage_cost(
            router,
            _model_id(router, group),
            prompt_tokens=100,
            completion_tokens=10,
            cached_tokens=cached,
            cache_creation_tokens=written,
        )

    configured = Decimal("0.00000015") * 100 + Decimal("0.0000006") * 10
    for cached, written in ((0, 0), (80, 0), (0, 50), (30, 20)):  # LiteLLM sums floats
        assert abs(priced("openrouter-gpt-4o-mini", cached, written) - configured) < Decimal(
            "1e-15"
        )
    assert priced("claude-haiku-4-5", cached=80) < priced("claude-haiku-4-5")
    assert priced("claude-haiku-4-5", written=50) > priced("claude-haiku-4-5")


async def test_success_logging_is_skipped_where_litellm_calls_it(
    router: Router, fresh_upstream: FakeUpstream
) -> None:
    """LiteLLM still runs its success logging through the methods the bridge replaces (so
    replacing them keeps saving the work): after a plain call it asks whether to schedule
    the handler (the bridge says no), a stream calls the handler itself."""
    from litellm.litellm_core_utils.litellm_logging import Logging

    assert Logging.async_success_handler is litellm_bridge._no_async_success_log
    assert Logging.success_handler is litellm_bridge._no_success_log
    assert Logging.claim_async_success_log is litellm_bridge._never_schedule
    asked: list[bool] = []
    handled: list[bool] = []

    async def counting(self: Logging, *args: object, **kwargs: object) -> None:
        handled.append(True)

    def asking(self: Logging) -> bool:
        answer = litellm_bridge._never_schedule(self)
        asked.append(answer)
        return answer

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Logging, "async_success_handler", counting)
        patch.setattr(Logging, "claim_async_success_log", asking)
        await router.acompletion(model="gpt-4.1-nano", messages=MESSAGES, max_tokens=9)
        assert asked == [False]  # asked once, told no
        stream = await router.acompletion(
            model="gpt-4.1-nano", messages=MESSAGES, max_tokens=9, stream=True
        )
        _ = [chunk async for chunk in stream]
        # LiteLLM runs a stream's log as a task; fails if it no longer calls this method
        await eventually(lambda: handled, seconds=60, what="LiteLLM's stream log")


async def test_calls_are_priced_by_the_gateway_not_by_litellm(
    router: Router, fresh_upstream: FakeUpstream
) -> None:
    """LiteLLM still prices every response through the method the bridge short-cuts (so
    the short cut keeps saving the work), and a stream's reported usage is what the
    gateway prices."""
    from litellm.litellm_core_utils.litellm_logging import Logging

    assert Logging.response_cost_calculator is litellm_bridge._no_response_cost
    seen: list[tuple[bool, object]] = []

    def counting(self: Logging, *args: object, **kwargs: object) -> object:
        price = litellm_bridge._no_response_cost(self, *args, **kwargs)
        seen.append((self.stream is True, price))
        return price

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Logging, "response_cost_calculator", counting)
        stream = await router.acompletion(
            model="gpt-4.1-nano",
            messages=MESSAGES,
            max_tokens=9,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        streamed = len(seen)
        await router.acompletion(model="gpt-4.1-nano", messages=MESSAGES, max_tokens=9)
    assert streamed and all(is_stream for is_stream, _ in seen[:streamed])
    assert seen[streamed:] and not any(is_stream for is_stream, _ in seen[streamed:])
    assert all(price is None for _, price in seen)
    usage = usage_from(chunks[-1].usage.model_dump())
    assert usage is not None and usage.completion > 0
    model_id = litellm_bridge.model_id_of(stream)
    assert usage_cost_usd(router, model_id, usage) > 0


def _deployment(name: str, **limits: int) -> dict[str, object]:
    params = {
        "model": "openai/gpt-4.1-nano",
        "api_base": "os.environ/OPENAI_API_BASE",
        "api_key": "os.environ/OPENAI_API_KEY",
    }
    return {"model_name": name, "litellm_params": {**params, **limits}}


def test_litellm_access_log_filters_are_gone_and_ours_drops_query_values() -> None:
    """LiteLLM adds its access-log filters at import; the bridge removes them. What keeps a
    token sent as `?key=` out of the access log is ours (`logging_config`'s QueryRedactor;
    end to end: tests/gateway/test_routes.py)."""
    import logging

    from litellm import _logging

    from portal.observability.logging import QueryRedactor, logging_config

    access = logging.getLogger("uvicorn.access")
    access.addFilter(_logging._access_log_filter)  # as LiteLLM's import leaves it
    access.addFilter(_logging._access_log_path_filter)
    litellm_bridge.drop_litellm_access_log_filters()
    litellm_filters = (_logging.AccessLogRedactionFilter, _logging.AccessLogPathFilter)
    assert not [f for f in access.filters if isinstance(f, litellm_filters)]

    config = logging_config("info", "text")
    (name,) = config["loggers"]["uvicorn.access"]["filters"]
    assert config["filters"][name]["()"].endswith(".QueryRedactor")
    target = "/v1beta/models/x:generateContent?key=wfg_secret&alt=sse"
    args = ("127.0.0.1:1", "POST", target, "1.1", 404)
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, "", 1, '%s - "%s %s" %s %d', args, None
    )
    assert QueryRedactor().filter(record)
    assert "wfg_secret" not in record.getMessage()
    assert "/v1beta/models/x:generateContent?key=" in record.getMessage()


async def test_openai_chat_goes_through_litellms_http_handler_not_the_sdk(
    router: Router, fresh_upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LiteLLM's switch (`CHAT_WITHOUT_OPENAI_SDK`, set by the gateway's process at start)
    keeps chat on OpenAI deployments off the OpenAI SDK's path; without it the SDK's path
    is taken."""
    from litellm.llms.openai.openai import OpenAIChatCompletion

    from gateway_plugins.server import CHAT_WITHOUT_OPENAI_SDK, prepare_environment

    sdk_calls: list[str] = []
    through_sdk = OpenAIChatCompletion.acompletion

    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        sdk_calls.append("chat")
        return await through_sdk(self, *args, **kwargs)

    monkeypatch.setattr(OpenAIChatCompletion, "acompletion", counted)
    switch, on = CHAT_WITHOUT_OPENAI_SDK
    environment: dict[str, str] = {}
    prepare_environment(environment)
    assert environment[switch] == on
    monkeypatch.setenv(switch, on)
    for expected in ([], ["chat"]):
        answer = await router.acompletion(model="gpt-4.1-nano", messages=MESSAGES, max_tokens=20)
        assert answer.choices[0].message.content and sdk_calls == expected
        monkeypatch.delenv(switch, raising=False)


async def _cookies_sent(client: Any) -> list[str | None]:
    """The Cookie header of two requests on `client`, to a server that sets one."""
    import httpx

    sent: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers.get("cookie"))
        return httpx.Response(200, headers={"set-cookie": "__cf_bm=a; Path=/"}, json={})

    client._transport = httpx.MockTransport(answer)
    for _ in range(2):
        await client.get("http://upstream.test/v1/models")
    await client.aclose()
    return sent


async def test_the_upstream_clients_litellm_builds_keep_no_cookie() -> None:
    """LiteLLM's factory for the OpenAI SDK's httpx clients keeps cookies (why the bridge
    patches it); through the bridge, its clients and LiteLLM's own store nothing and parse
    nothing, via httpx's `_cookies`. End to end, every route:
    tests/gateway/test_upstream_cookies_e2e.py."""
    from litellm.llms.custom_httpx.http_handler import AsyncHTTPHandler
    from litellm.llms.openai.common_utils import BaseOpenAILLM

    litellm_bridge.keep_no_upstream_cookies()
    assert await _cookies_sent(litellm_bridge._build_openai_http_client()) == [None, "__cf_bm=a"]
    assert await _cookies_sent(BaseOpenAILLM._get_async_http_client()) == [None, None]
    own = AsyncHTTPHandler().client
    assert isinstance(own.cookies, litellm_bridge._NoCookies)  # parses no answer's cookies
    assert await _cookies_sent(own) == [None, None]


async def test_each_calls_request_setup_runs_inline_and_nothing_else_does(
    router: Router, fresh_upstream: FakeUpstream
) -> None:
    """LiteLLM hands the set-up of each of the five calls to the loop's default executor in
    the shape the bridge recognises; the bridge's executor runs it at once (its future is
    done when `submit` returns), and anything else still gets a worker thread."""
    import asyncio
    import threading
    from concurrent.futures import Future, ThreadPoolExecutor

    loop = asyncio.get_running_loop()
    previous = loop._default_executor  # type: ignore[attr-defined]
    assert litellm_bridge.run_request_setup_inline(loop, router)  # config.yaml's providers
    executor = loop._default_executor  # type: ignore[attr-defined]
    submit = executor.submit
    setups: list[tuple[str, bool]] = []

    def recording(fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future = submit(fn, *args, **kwargs)
        if litellm_bridge._is_request_setup(fn):
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
    import asyncio
    import contextvars
    import threading
    from concurrent.futures import ThreadPoolExecutor

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
            patch.setattr(litellm_bridge, "_SETUP_FUNCTIONS", frozenset({refusing_setup}))
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
    import asyncio

    with pytest.MonkeyPatch.context() as patch:
        for name, value in upstream.env().items():
            patch.setenv(name, value)
        vertex = {"model_name": "v", "litellm_params": {"model": "vertex_ai/gemini-2.5-flash"}}
        router = litellm_bridge.build_router([_deployment("free"), vertex], {})
    loop = asyncio.new_event_loop()
    try:
        assert not litellm_bridge.run_request_setup_inline(loop, router)
        assert loop._default_executor is None  # type: ignore[attr-defined]
    finally:
        loop.close()


_FIRST_FAILURE = """
import asyncio, os, sys
import gateway_plugins.app  # what the gateway process has imported when it serves
from gateway_plugins import litellm_bridge
from tests.fakes.upstream import FakeUpstream
from tests.gateway.support import gateway_config

upstream = FakeUpstream().start()
os.environ.update(upstream.env())
raw = gateway_config().raw
litellm_bridge.apply_litellm_settings(raw.get("litellm_settings") or {})
router = litellm_bridge.build_router(raw["model_list"], {"num_retries": 0})

async def main():
    await router.acompletion(model="gpt-4.1-nano", messages=[{"role": "user", "content": "a"}])
    before = set(sys.modules)
    upstream.fail_next(500)
    try:
        await router.acompletion(model="gpt-4.1-nano", messages=[{"role": "user", "content": "b"}])
    except Exception as exc:
        print("failed with", getattr(exc, "status_code", None))
    await asyncio.sleep(0.5)  # LiteLLM's failure logging runs as tasks
    print("new modules:", *sorted(set(sys.modules) - before))
    await litellm_bridge.close_upstream_clients(router)

asyncio.run(main())
upstream.stop()
"""


def test_the_first_failed_call_imports_nothing() -> None:
    """LiteLLM's failure logging imports ~400 modules of its proxy server the first time
    it runs unless `global_disable_no_log_param` is set: seconds with the event loop
    blocked, in the middle of serving. In a fresh process with the gateway's imports, so
    nothing else imported them yet."""
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run(
        [sys.executable, "-c", _FIRST_FAILURE],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "failed with 500" in done.stdout
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("new modules:")]
    imported = line.split()[2:]
    # two small ones of its guardrail check are fine; its proxy server (~400) is not
    assert len(imported) <= 5, imported


def test_a_request_error_never_cools_a_deployment_down() -> None:
    policy = litellm_bridge.COOLDOWN_POLICY
    assert policy.BadRequestErrorAllowedFails == policy.NotFoundErrorAllowedFails
    assert policy.NotFoundErrorAllowedFails is not None and policy.NotFoundErrorAllowedFails > 10**6
    assert policy.RateLimitErrorAllowedFails is None  # 429s keep LiteLLM's cooldown
    assert policy.InternalServerErrorAllowedFails is None


def test_config_sections_litellm_cannot_honour_are_named() -> None:
    problems = litellm_bridge.config_problems(
        {
            "model_list": [],
            "general_settings": {"custom_auth": "x"},
            "router_settings": {"no_such_setting": 1, "allowed_fails_policy": {}},
            "litellm_settings": {"success_callback": ["langfuse"], "drop_params": True},
        }
    )
    assert problems == [
        "general_settings: not used by this gateway (LiteLLM's proxy server is not run); remove it",
        "router_settings.no_such_setting: not a litellm.Router setting",
        "router_settings.allowed_fails_policy: set by the gateway, remove it",
        "litellm_settings.success_callback: not supported by the gateway "
        "(a logging callback would receive prompt text)",
    ]
    assert litellm_bridge.config_problems(gateway_config().raw) == []


@pytest.mark.parametrize(
    ("status", "client_sees"), [(400, 400), (404, 404), (429, 429), (500, 500), (503, 503)]
)
def test_upstream_errors_map_to_statuses_without_upstream_text(
    status: int, client_sees: int
) -> None:
    import litellm

    error = litellm.APIError(
        status_code=status, message="secret upstream detail", llm_provider="openai", model="m"
    )
    failure = litellm_bridge.upstream_failure(error)
    assert failure.status == client_sees
    if status >= 500 or status == 404:
        assert "secret upstream detail" not in failure.message


@pytest.mark.parametrize("kept", [True, False], ids=["kept", "litellm-alone"])
async def test_text_completions_reuse_one_client_per_deployment(
    upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch, kept: bool
) -> None:
    """A `text-completion-openai/…` deployment: LiteLLM alone builds a new SDK client for
    every call (a new connection each, as the fake's view of the caller's port shows);
    through the bridge, calls share one client and its connection, and closing the
    upstream clients closes its session."""
    from litellm.llms.openai.completion import handler

    litellm_bridge.keep_text_completion_clients()
    built_by_litellm: list[Any] = []
    if not kept:

        def recorded(**options: Any) -> Any:
            built_by_litellm.append(litellm_bridge._build_text_completion_client(**options))
            return built_by_litellm[-1]

        monkeypatch.setattr(handler, "build_async_openai_client", recorded)
    router = litellm_bridge.build_router(
        [
            {
                "model_name": "instruct",
                "litellm_params": {
                    "model": "text-completion-openai/gpt-3.5-turbo-instruct",
                    "api_base": f"{upstream.url}/v1",
                    "api_key": upstream.api_key,
                },
            }
        ],
        {},
    )
    upstream.reset()
    before = _open_sessions()
    for stream in (False, True, False, True):
        answer = await router.atext_completion(
            model="instruct", prompt="pin this", max_tokens=9, stream=stream
        )
        if stream:
            async for _ in answer:
                pass
    ports = {request["port"] for request in upstream.requests if request["body"]}
    assert len(upstream.requests) == 4
    if not kept:
        assert len(ports) == len(built_by_litellm) == 4
        for client in built_by_litellm:  # LiteLLM never closes them
            await client.close()
        return
    assert len(ports) == 1
    opened = _open_sessions() - before
    assert opened
    await litellm_bridge.close_upstream_clients(router)
    assert not (_open_sessions() & opened)


def _open_sessions() -> set[int]:
    return {
        id(o) for o in gc.get_objects() if isinstance(o, aiohttp.ClientSession) and not o.closed
    }


async def test_closing_the_upstream_clients_leaves_no_session_open(upstream: FakeUpstream) -> None:
    """The gateway closes LiteLLM's upstream clients at shutdown; what it closes must be
    every aiohttp session its calls opened (the Router's own clients and LiteLLM's)."""
    with _router_on(upstream) as router:
        before = _open_sessions()
        for model in ("gpt-4.1-nano", "claude-haiku-4-5"):
            await router.acompletion(model=model, messages=MESSAGES, max_tokens=9)
            stream = await router.acompletion(
                model=model, messages=MESSAGES, max_tokens=9, stream=True
            )
            async for _ in stream:
                pass
        opened = _open_sessions() - before
        assert opened, "the calls opened no aiohttp session: this test no longer tests anything"
        await litellm_bridge.close_upstream_clients(router)
        assert not (_open_sessions() & opened)
