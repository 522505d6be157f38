"""Prices from LiteLLM's bundled cost map, read as JSON without importing LiteLLM.

`litellm.get_model_info` answers the same for the providers the gateway routes to, but
importing LiteLLM costs ~6 s of CPU: too much for `gateway-admin config check`. This
reader answers only where it provably agrees with LiteLLM (a test compares every entry of
these providers with `get_model_info`) and returns None otherwise, so the caller asks
LiteLLM itself. The gateway forces `LITELLM_LOCAL_MODEL_COST_MAP=True`: the bundled file
is the map it prices with.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

__all__ = ["FAST_PROVIDERS", "bundled_cost_map_entry", "bundled_cost_map_price"]

FAST_PROVIDERS = frozenset({"openai", "anthropic", "gemini", "openrouter"})
_PRICE_KEYS = ("input_cost_per_token", "output_cost_per_token")
_FILE = "model_prices_and_context_window_backup.json"


def bundled_cost_map_price(litellm_model: str) -> tuple[Decimal, Decimal] | None:
    """(input, output) US dollars per token for `provider/name`, where the provider is
    one of FAST_PROVIDERS and the map lists the model with both prices, not both zero;
    None means "ask LiteLLM" (not "unpriced")."""
    entry = bundled_cost_map_entry(litellm_model)
    if entry is None:
        return None
    return Decimal(str(entry[_PRICE_KEYS[0]])), Decimal(str(entry[_PRICE_KEYS[1]]))


def bundled_cost_map_entry(litellm_model: str) -> dict[str, Any] | None:
    """The map's whole entry for `provider/name` (its cache rates and limits too), under
    the same conditions as `bundled_cost_map_price`; None means "ask LiteLLM"."""
    provider, _, name = litellm_model.partition("/")
    if provider not in FAST_PROVIDERS or not name:
        return None
    costs = _cost_map()
    # LiteLLM's order: the whole name if listed (`gemini/...`), else the bare one (`gpt-4o`).
    entry = costs[litellm_model] if litellm_model in costs else costs.get(name)
    if not isinstance(entry, dict) or entry.get("litellm_provider") != provider:
        return None
    values = [entry.get(key) for key in _PRICE_KEYS]
    if all(isinstance(v, int | float) for v in values) and any(values):
        return entry
    return None


@functools.cache
def _cost_map() -> dict[str, Any]:
    spec = importlib.util.find_spec("litellm")  # finds the package without running it
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(next(iter(spec.submodule_search_locations)), _FILE)
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # LiteLLM moved it: every lookup falls back to LiteLLM itself
    return loaded if isinstance(loaded, dict) else {}
