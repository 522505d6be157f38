"""openai_chat.py: LiteLLM's switch (`CHAT_WITHOUT_OPENAI_SDK`, set by the gateway's
process at start) keeps chat on OpenAI deployments off the OpenAI SDK's path; without it
the SDK's path is taken (so the switch still does something)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway_plugins.litellm_bridge import Router
from gateway_plugins.litellm_bridge.openai_chat import CHAT_WITHOUT_OPENAI_SDK
from gateway_plugins.server import prepare_environment
from tests.fakes.upstream import FakeUpstream
from tests.gateway.litellm_pins.support import MESSAGES


async def test_openai_chat_goes_through_litellms_http_handler_not_the_sdk(
    router: Router, fresh_upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    from litellm.llms.openai.openai import OpenAIChatCompletion

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
