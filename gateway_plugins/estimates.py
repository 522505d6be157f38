"""Sizing a reservation before the call: input tokens + the output allowance, priced."""

from __future__ import annotations

import json
import logging
from typing import Any

import litellm

from portal.config.plugin_settings import PluginSettings
from portal.credits.pricing import ModelPrice
from portal.credits.units import usd_to_units

__all__ = ["output_allowance", "prompt_tokens", "reservation_units"]

log = logging.getLogger(__name__)


def prompt_tokens(data: dict[str, Any]) -> int:
    """Input tokens of a request, counted with LiteLLM's tokenizer (tiktoken, local)."""
    messages = data.get("messages")
    try:
        if isinstance(messages, list):
            return int(litellm.token_counter(messages=messages, tools=data.get("tools")))
        text = data.get("input", data.get("prompt"))
        if text is not None:
            return int(
                litellm.token_counter(text=text if isinstance(text, str) else json.dumps(text))
            )
    except Exception as exc:  # odd shapes: fall back to a generous size estimate
        log.debug("token count fell back to a size estimate (%s)", type(exc).__name__)
    return len(json.dumps(messages if messages is not None else data, default=str)) // 3 + 1


def output_allowance(data: dict[str, Any], settings: PluginSettings) -> int:
    for key in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = data.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return settings.credits.default_max_tokens


def reservation_units(
    price: ModelPrice, tokens_in: int, tokens_out: int, settings: PluginSettings
) -> int:
    cost = price.cost_usd(tokens_in, tokens_out)
    units = usd_to_units(
        cost, usd_per_credit=settings.credits.usd_per_credit, markup=settings.credits.markup
    )
    return max(units, 1)
