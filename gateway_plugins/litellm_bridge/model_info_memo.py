"""Patch: the Responses-bridge check reads a model's cost-map row once, not on every call.

`litellm.main.completion` asks `responses_api_bridge_check` (twice per chat call) whether
a model must go through the Responses API; each time it looks the model up in LiteLLM's
cost map with `get_model_info_helper` (name variants, provider configs, the fill-in of
missing fields: ~0.1 ms), and reads one key of the answer (`mode`). The answer depends on
its arguments and on the cost map, which in the gateway is fixed once the Router is built
(`LITELLM_LOCAL_MODEL_COST_MAP`, deployments never upserted), so the bridge check gets a
remembered copy: one look-up per (model, provider, ...) and cost map. A changed cost map
(another dict, or keys added) starts the memory afresh; a look-up that raises is not
remembered. Only the bridge check's own reference is replaced; pricing and every other
caller still read the map each time. Figures: bench/RESULTS.md.
"""

from __future__ import annotations

from typing import Any

import litellm
from litellm.responses import bridge_check

__all__ = ["remember_model_info"]

_Key = tuple[Any, ...]
_LOOKUP = "get_model_info_helper"  # the bridge check's own (imported) reference


class _Remembered:
    """`get_model_info_helper`, remembered per argument tuple and cost map."""

    def __init__(self, lookup: Any) -> None:
        self.lookup = lookup
        self.rows: dict[_Key, dict[str, Any]] = {}
        self.cost_map: tuple[int, int] = (0, -1)

    def __call__(
        self,
        model: str,
        custom_llm_provider: str | None = None,
        api_base: str | None = None,
        api_key: str | None = None,
        *,
        catalog_only: bool = False,
        preserve_unset_costs: bool = False,
    ) -> Any:
        cost_map = (id(litellm.model_cost), len(litellm.model_cost))
        if cost_map != self.cost_map:
            self.rows.clear()
            self.cost_map = cost_map
        key = (model, custom_llm_provider, api_base, api_key, catalog_only, preserve_unset_costs)
        row = self.rows.get(key)
        if row is None:
            row = self.lookup(
                model,
                custom_llm_provider,
                api_base,
                api_key,
                catalog_only=catalog_only,
                preserve_unset_costs=preserve_unset_costs,
            )
            self.rows[key] = row
        return dict(row)  # the bridge check sets "mode" on its copy


def remember_model_info() -> None:
    current = getattr(bridge_check, _LOOKUP)
    if not isinstance(current, _Remembered):
        setattr(bridge_check, _LOOKUP, _Remembered(current))
