"""What `GET /v1/models` says about each model: its price, context length and output cap,
built once at start from what the gateway bills and enforces.

- `pricing`: credits per million input, cached input, cache-write and output tokens, after
  `credits.markup` and `credits.usd_per_credit`, as decimal strings (`format_units`, as
  `/v1/credits` writes credits). The rates are the price book's (`portal.credits.pricing`:
  config.yaml's price, else LiteLLM's cost map; a group at its dearest deployment), the
  rates a call is debited at. Cache rates the map does not name are the input rate, as
  LiteLLM bills them. Anthropic's 1-hour cache writes cost 2x input (docs/billing.md).
  `null` for a model with no price (it is refused).
- `context_length`: the smallest `max_input_tokens` among the group's deployments
  (config.yaml `model_info`, else LiteLLM's map); `null` when neither says.
- `max_output_tokens`: the largest `max_tokens` the gateway accepts for the model (its
  deployments' smallest output limit, capped by `limits.max_request_tokens`); `null` for
  embedding models.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from gateway_plugins import litellm_bridge
from gateway_plugins.runtime import GatewayRuntime
from portal.config.plugin_settings import CreditSettings
from portal.credits.pricing import ModelPrice
from portal.credits.units import format_units, usd_to_units

__all__ = ["model_cards", "pricing"]

_PER_MILLION = Decimal(1_000_000)


def model_cards(runtime: GatewayRuntime) -> dict[str, dict[str, Any]]:
    """Model group → its `/v1/models` entry, for every model the gateway lists."""
    config = runtime.config
    contexts = litellm_bridge.input_limits(config.raw["model_list"])
    cards = {}
    for name in config.model_names:
        price = config.prices.price_of(name)
        target = runtime.targets.get(name)
        embedding = target is not None and target.embedding
        cards[name] = {
            "id": name,
            "object": "model",
            "created": 0,
            "owned_by": "workforce-gateway",
            "pricing": pricing(price, config.plugin.credits) if price else None,
            "context_length": contexts.get(name),
            "max_output_tokens": None if embedding else runtime.max_output_tokens(name),
        }
    return cards


def pricing(price: ModelPrice, credits: CreditSettings) -> dict[str, str]:
    """Credits per million tokens of each kind, after markup."""

    def per_million(usd_per_token: Decimal) -> str:
        units = usd_to_units(
            usd_per_token * _PER_MILLION,
            usd_per_credit=credits.usd_per_credit,
            markup=credits.markup,
        )
        return format_units(units)

    return {
        "input": per_million(price.input_per_token),
        "cached_input": per_million(price.cached_input_rate),
        "cache_write": per_million(price.cache_write_rate),
        "output": per_million(price.output_per_token),
    }
