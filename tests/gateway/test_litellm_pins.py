"""Pins of every LiteLLM behaviour the gateway relies on (gateway_plugins/litellm_bridge.py
names them). An upgrade of LiteLLM that changes one fails here, not in production.

In-process: a Router built by the bridge from config.yaml, against the fake upstream."""

from __future__ import annotations

import ast
import contextlib
import gc
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest

from gateway_plugins import litellm_bridge
from gateway_plugins.litellm_bridge import Router
from gateway_plugins.metering import usage_from
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
    assert sorted(set(importers)) == ["litellm_bridge.py"]


def test_the_router_has_every_call_the_gateway_makes(router: Router) -> None:
    for method in litellm_bridge.ROUTER_METHODS.values():
        assert callable(getattr(router, method)), method


def test_message_logging_stays_off_and_callbacks_stay_empty() -> None:
    import litellm

    litellm_bridge.apply_litellm_settings({"turn_off_message_logging": False, "set_verbose": True})
    assert litellm.turn_off_message_logging is True
    assert litellm.set_verbose is False
    assert litellm.callbacks == litellm.success_callback == litellm.failure_callback == []


async def test_a_plain_response_carries_its_cost_and_deployment(
    router: Router, fresh_upstream: FakeUpstream
) -> None:
    response = await router.acompletion(model="gpt-4.1-nano", messages=MESSAGES, max_tokens=20)
    cost, model_id = litellm_bridge.plain_response_cost(response)
    assert cost > 0
    assert model_id is not None
    assert litellm_bridge.group_of(router, model_id, "?") == "gpt-4.1-nano"
    data = litellm_bridge.to_jsonable(response)
    usage = usage_from(data["usage"])
    assert usage is not None and usage.prompt > 0 and usage.completion > 0
    assert "_hidden_params" not in data


async def test_a_chat_stream_asked_for_usage_ends_with_it(
    router: Router, fresh_upstream: FakeUpstream
) -> None:
    stream = await router.acompletion(
        model="claude-haiku-4-5",
        messages=MESSAGES,
        max_tokens=20,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert any(c.choices and c.choices[0].finish_reason for c in chunks[:-1])
    model_id = stream._hidden_params["model_id"]
    assert litellm_bridge.group_of(router, model_id, "?") == "claude-haiku-4-5"


async def test_an_anthropic_messages_stream_is_raw_sse_bytes(
    router: Router, fresh_upstream: FakeUpstream
) -> None:
    stream = await router.aanthropic_messages(
        model="claude-haiku-4-5", messages=MESSAGES, max_tokens=20, stream=True
    )
    items = [item async for item in stream]
    assert items and all(isinstance(item, bytes) for item in items)
    assert b"event: message_stop" in b"".join(items)


async def test_stream_usage_is_priced_with_cached_input_cheaper(router: Router) -> None:
    model_id = next(
        d["model_info"]["id"] for d in router.model_list if d["model_name"] == "gpt-4.1-nano"
    )
    full = litellm_bridge.stream_usage_cost(
        router, model_id, prompt_tokens=1000, completion_tokens=100
    )
    cached = litellm_bridge.stream_usage_cost(
        router, model_id, prompt_tokens=1000, completion_tokens=100, cached_tokens=800
    )
    assert Decimal(0) < cached < full


async def test_success_logging_is_skipped_where_litellm_calls_it(
    router: Router, fresh_upstream: FakeUpstream
) -> None:
    """LiteLLM still runs its success logging through the two methods the bridge replaces
    (so replacing them keeps saving the work), and the answers stay priced without it."""
    from litellm.litellm_core_utils.litellm_logging import Logging

    assert Logging.async_success_handler is litellm_bridge._no_async_success_log
    assert Logging.success_handler is litellm_bridge._no_success_log
    seen: list[str] = []

    async def counting(self: Logging, *args: object, **kwargs: object) -> None:
        seen.append("async")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Logging, "async_success_handler", counting)
        response = await router.acompletion(model="gpt-4.1-nano", messages=MESSAGES, max_tokens=9)
        stream = await router.acompletion(
            model="gpt-4.1-nano", messages=MESSAGES, max_tokens=9, stream=True
        )
        _ = [chunk async for chunk in stream]
        # LiteLLM schedules the logs as tasks; fails if it no longer calls this method
        await eventually(lambda: len(seen) >= 2, seconds=60, what="LiteLLM's success logs")
    assert litellm_bridge.plain_response_cost(response)[0] > 0


async def test_streams_are_priced_by_the_gateway_not_by_litellm(
    router: Router, fresh_upstream: FakeUpstream
) -> None:
    """LiteLLM still prices a stream through the method the bridge short-cuts for streams
    (so the short cut keeps saving the work); a plain answer keeps LiteLLM's price, and a
    stream's reported usage is what the gateway prices."""
    from litellm.litellm_core_utils.litellm_logging import Logging

    assert Logging.response_cost_calculator is litellm_bridge._response_cost_unless_streamed
    seen: list[tuple[bool, object]] = []

    def counting(self: Logging, *args: object, **kwargs: object) -> object:
        price = litellm_bridge._response_cost_unless_streamed(self, *args, **kwargs)
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
        streamed = list(seen)
        response = await router.acompletion(model="gpt-4.1-nano", messages=MESSAGES, max_tokens=9)
    assert streamed and all(is_stream and price is None for is_stream, price in streamed)
    assert seen[len(streamed) :] and all(not is_stream for is_stream, _ in seen[len(streamed) :])
    assert litellm_bridge.plain_response_cost(response)[0] > 0
    usage = usage_from(chunks[-1].usage.model_dump())
    assert usage is not None and usage.completion > 0
    model_id = stream._hidden_params["model_id"]
    price = litellm_bridge.stream_usage_cost(
        router, model_id, prompt_tokens=usage.prompt, completion_tokens=usage.completion
    )
    assert price > 0


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
