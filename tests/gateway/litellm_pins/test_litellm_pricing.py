"""litellm_pricing.py: LiteLLM still prices every response through the method the bridge
short-cuts (so the short cut keeps saving the work), and a stream's reported usage is
what the gateway prices instead."""

from __future__ import annotations

import pytest

from gateway_plugins import litellm_bridge
from gateway_plugins.litellm_bridge import Router, litellm_pricing
from gateway_plugins.metering import usage_cost_usd, usage_from
from tests.fakes.upstream import FakeUpstream
from tests.gateway.litellm_pins.support import MESSAGES


async def test_calls_are_priced_by_the_gateway_not_by_litellm(
    router: Router, fresh_upstream: FakeUpstream
) -> None:
    from litellm.litellm_core_utils.litellm_logging import Logging

    assert Logging.response_cost_calculator is litellm_pricing._no_response_cost
    seen: list[tuple[bool, object]] = []

    def counting(self: Logging, *args: object, **kwargs: object) -> object:
        price = litellm_pricing._no_response_cost(self, *args, **kwargs)
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
