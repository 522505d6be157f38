"""A call's price from the usage the upstream reported, with LiteLLM's cost map.

Relied on: `cost_per_token(model=, custom_llm_provider=, usage_object=)` prices usage
(cached input, cache writes and reasoning tokens as LiteLLM prices them), or the
deployment's configured per-token prices. Plain and streamed calls are priced alike.
"""

from __future__ import annotations

import functools
import logging
from decimal import Decimal
from typing import Any

import litellm

from gateway_plugins.litellm_bridge.router import Router, _deployment, deployment_of

__all__ = ["usage_cost"]

log = logging.getLogger(__name__)


def usage_cost(
    router: Router,
    model_id: str | None,
    *,
    prompt_tokens: int,
    completion_tokens: int,
    cached_tokens: int = 0,
    cache_creation_tokens: int = 0,
    reasoning_tokens: int = 0,
    cache_creation_1h_tokens: int = 0,
) -> Decimal:
    """US$ of a call's reported usage at the answering deployment's price (LiteLLM's cost
    map or the deployment's configured price), cached input and reasoning priced as LiteLLM
    does; 0 when LiteLLM cannot price it (the caller then uses the price book)."""
    model, provider = deployment_of(router, model_id)
    if not model:
        return Decimal(0)
    # OpenAI's shape: prompt_tokens include the cached and cache-write ones. (Anthropic's
    # fields, `cache_read_input_tokens` & co., make LiteLLM add them to the prompt again
    # when the deployment's price is configured: cached input charged twice.)
    usage = litellm.Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
        prompt_tokens_details={
            "cached_tokens": cached_tokens,
            "cache_write_tokens": cache_creation_tokens,
            "cache_creation_token_details": {  # Anthropic's 1-hour writes: their own rate
                "ephemeral_5m_input_tokens": cache_creation_tokens - cache_creation_1h_tokens,
                "ephemeral_1h_input_tokens": cache_creation_1h_tokens,
            },
        },
        completion_tokens_details={"reasoning_tokens": reasoning_tokens},
    )
    try:
        prompt_cost, completion_cost = litellm.cost_per_token(
            model=model,
            custom_llm_provider=provider,
            usage_object=usage,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            custom_cost_per_token=_custom_price(router, model_id),
        )
    except Exception as exc:  # unknown to the cost map: the caller uses our price book
        log.debug("stream cost fell back to the price book (%s)", type(exc).__name__)
        return Decimal(0)
    return Decimal(str(prompt_cost)) + Decimal(str(completion_cost))


@functools.lru_cache(maxsize=1024)
def _custom_price(router: Router, model_id: str | None) -> Any:
    """The deployment's configured per-token prices, if any (a Router's deployments never
    change: read once per deployment)."""
    deployment = _deployment(router, model_id) if model_id else None
    if deployment is None:
        return None
    for source in (deployment.model_info or {}, deployment.litellm_params.model_dump()):
        prices = {k: source.get(k) for k in ("input_cost_per_token", "output_cost_per_token")}
        if all(value is not None for value in prices.values()):
            return prices
    return None
