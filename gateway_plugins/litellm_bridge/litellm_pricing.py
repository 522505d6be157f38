"""Patch: LiteLLM's own pricing of each response, skipped.

`Logging.response_cost_calculator` prices a response for LiteLLM's logging and
`_hidden_params["response_cost"]`: once per plain answer, three times per stream. The
gateway prices every call from the usage the upstream reported (`pricing.usage_cost`)
and never reads LiteLLM's figure, so it returns None. Figures: bench/RESULTS.md.
"""

from __future__ import annotations

from typing import Any

from litellm.litellm_core_utils.litellm_logging import Logging as CallLogging

__all__ = ["skip_litellm_pricing"]


def _no_response_cost(self: CallLogging, *args: Any, **kwargs: Any) -> float | None:
    return None


def skip_litellm_pricing() -> None:
    CallLogging.response_cost_calculator = _no_response_cost  # type: ignore[method-assign]
