"""pricing.py: a call's reported usage, priced with LiteLLM's cost map or the
deployment's configured price, as LiteLLM itself prices the response."""

from __future__ import annotations

from decimal import Decimal

from gateway_plugins import litellm_bridge
from gateway_plugins.litellm_bridge import Router
from gateway_plugins.metering import usage_cost_usd, usage_from
from tests.fakes.upstream import FakeUpstream
from tests.gateway.litellm_pins.support import MESSAGES, model_id
from tests.gateway.support import gateway_config


async def test_a_plain_answers_usage_prices_as_litellm_prices_the_answer(
    router: Router, fresh_upstream: FakeUpstream
) -> None:
    """Cached input and reasoning too."""
    import litellm

    fresh_upstream.usage_extra = {"cached_tokens": 3, "reasoning_tokens": 4}
    response = await router.acompletion(model="gpt-4.1-nano", messages=MESSAGES, max_tokens=20)
    usage = usage_from(litellm_bridge.to_jsonable(response)["usage"])
    assert usage is not None and usage.prompt > 0 and usage.completion > 0
    assert (usage.cached, usage.reasoning) == (3, 4)
    ours = usage_cost_usd(router, litellm_bridge.model_id_of(response), usage)
    litellms = Decimal(str(litellm.completion_cost(completion_response=response)))
    assert ours > 0
    assert abs(ours - litellms) <= litellms * Decimal("1e-9")


async def test_usage_is_priced_with_cached_input_cheaper(router: Router) -> None:
    nano = model_id(router, "gpt-4.1-nano")
    full = litellm_bridge.usage_cost(router, nano, prompt_tokens=1000, completion_tokens=100)
    cached = litellm_bridge.usage_cost(
        router, nano, prompt_tokens=1000, completion_tokens=100, cached_tokens=800
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
            model_id(router, group),
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


def test_the_price_book_s_rates_are_the_rates_calls_are_debited_at(router: Router) -> None:
    """What `/v1/models` lists (`catalog.pricing`, from the price book) is what LiteLLM
    charges for a million tokens of each kind, for every model config.yaml ships: input,
    cached input, cache writes, output."""
    million = 1_000_000
    book = gateway_config().prices
    for group in gateway_config().model_names:
        price = book.price_of(group)
        assert price is not None, group
        deployment = model_id(router, group)
        rates = {
            "input": (price.input_per_token, {"prompt_tokens": million}),
            "cached_input": (
                price.cached_input_rate,
                {"prompt_tokens": million, "cached_tokens": million},
            ),
            "cache_write": (
                price.cache_write_rate,
                {"prompt_tokens": million, "cache_creation_tokens": million},
            ),
            "output": (price.output_per_token, {"completion_tokens": million}),
        }
        for kind, (listed, tokens) in rates.items():
            debited = litellm_bridge.usage_cost(
                router,
                deployment,
                prompt_tokens=tokens.pop("prompt_tokens", 0),
                completion_tokens=tokens.pop("completion_tokens", 0),
                **tokens,
            )
            # LiteLLM multiplies floats: equal to a part in 10^9
            assert abs(listed * million - debited) <= debited * Decimal("1e-9"), (group, kind)
