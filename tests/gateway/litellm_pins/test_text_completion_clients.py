"""text_completion_clients.py: on a `text-completion-openai/…` deployment LiteLLM alone
builds a new SDK client for every call (a new connection each, as the fake's view of the
caller's port shows, and sessions it never closes: the defect); through the bridge,
LiteLLM asks the wrapped builder on every call, the calls share one client and its
connection, and closing the upstream clients closes its session."""

from __future__ import annotations

from typing import Any

import pytest

from gateway_plugins import litellm_bridge
from gateway_plugins.litellm_bridge import text_completion_clients
from tests.fakes.upstream import FakeUpstream
from tests.gateway.litellm_pins.support import open_sessions


@pytest.mark.parametrize("kept", [True, False], ids=["kept", "litellm-alone"])
async def test_text_completions_reuse_one_client_per_deployment(
    upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch, kept: bool
) -> None:
    from litellm.llms.openai.completion import handler

    text_completion_clients.keep_text_completion_clients()
    asked = 0
    built_by_litellm: list[Any] = []
    if kept:
        kept_client = handler.build_async_openai_client  # type: ignore[attr-defined]

        def counted(**options: Any) -> Any:
            nonlocal asked
            asked += 1
            return kept_client(**options)

        monkeypatch.setattr(handler, "build_async_openai_client", counted)
    else:

        def recorded(**options: Any) -> Any:
            built = text_completion_clients._build_text_completion_client(**options)
            built_by_litellm.append(built)
            return built

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
    before = open_sessions()
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
    assert asked == 4  # LiteLLM still asks for a client on every call
    assert len(ports) == 1
    opened = open_sessions() - before
    assert opened
    await litellm_bridge.close_upstream_clients(router)
    assert not (open_sessions() & opened)
