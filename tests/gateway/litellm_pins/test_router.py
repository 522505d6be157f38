"""router.py: the Router's calls, what an answer says about its deployment, and the
cooldown policy."""

from __future__ import annotations

from gateway_plugins import litellm_bridge
from gateway_plugins.litellm_bridge import Router
from tests.fakes.upstream import FakeUpstream
from tests.gateway.litellm_pins.support import MESSAGES, chat_stream_with_usage


def test_the_router_has_every_call_the_gateway_makes(router: Router) -> None:
    for method in litellm_bridge.ROUTER_METHODS.values():
        assert callable(getattr(router, method)), method


async def test_a_plain_answer_names_its_deployment_and_hides_litellms_fields(
    router: Router, fresh_upstream: FakeUpstream
) -> None:
    response = await router.acompletion(model="gpt-4.1-nano", messages=MESSAGES, max_tokens=20)
    model_id = litellm_bridge.model_id_of(response)
    assert model_id is not None
    assert litellm_bridge.group_of(router, model_id, "?") == "gpt-4.1-nano"
    data = litellm_bridge.to_jsonable(response)
    assert data["choices"][0]["message"]["content"]
    assert "_hidden_params" not in data


async def test_a_chat_stream_names_its_deployment_and_ends_with_usage_when_asked(
    router: Router, fresh_upstream: FakeUpstream
) -> None:
    stream, chunks = await chat_stream_with_usage(router, "claude-haiku-4-5")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert any(c.choices and c.choices[0].finish_reason for c in chunks[:-1])
    model_id = litellm_bridge.model_id_of(stream)
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


def test_a_request_error_never_cools_a_deployment_down() -> None:
    policy = litellm_bridge.COOLDOWN_POLICY
    assert policy.BadRequestErrorAllowedFails == policy.NotFoundErrorAllowedFails
    assert policy.NotFoundErrorAllowedFails is not None and policy.NotFoundErrorAllowedFails > 10**6
    assert policy.RateLimitErrorAllowedFails is None  # 429s keep LiteLLM's cooldown
    assert policy.InternalServerErrorAllowedFails is None
