"""Step 6: meter. What a call used (tokens, never text) and what it costs in credits.

Usage comes from the upstream's own report (a plain response's `usage`, a stream's final
usage chunk / `message_delta` / `response.completed`); the price from LiteLLM's cost map
or the deployment's configured price (`usage_cost_usd`: cached input, cache writes (at
the rate of their lifetime: Anthropic's 1-hour writes at 2x input, 5-minute ones at
1.25x) and reasoning priced as LiteLLM does; plain and streamed calls alike), or from the price book
when LiteLLM prices a call at 0 (a model is never served free).

A call the upstream worked on but that ended without its usage report (the client left
and the report never came within the read-on time, the upstream cut or stalled, a
deadline, a shutdown) is billed by `unreported_usage`: at least the prompt as counted
before the call, plus the output text the upstream sent counted with the model's
tokenizer (`token_counting.output_tokens`), or what the upstream reported if more.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from gateway_plugins import litellm_bridge
from portal.credits.pricing import PricedConfig
from portal.credits.units import usd_to_units
from portal.tokens.service import TokenIdentity
from portal.usage.models import CallStatus
from portal.usage.settlement import FinishedCall

__all__ = ["Usage", "finished_call", "unreported_usage", "usage_cost_usd", "usage_from"]


@dataclass
class Usage:
    prompt: int = 0
    completion: int = 0
    cached: int = 0
    cache_creation: int = 0  # prompt tokens written to a prompt cache, of them:
    cache_creation_1h: int = 0  # written to Anthropic's 1-hour cache (2x input, not 1.25x)
    reasoning: int = 0

    @property
    def total(self) -> int:
        return self.prompt + self.completion


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_from(report: Any) -> Usage | None:
    """An upstream usage report in any of the three shapes: OpenAI chat/embeddings
    (`prompt_tokens`), Anthropic (`input_tokens` without the cached part) and OpenAI
    Responses (`input_tokens` including it)."""
    if not isinstance(report, dict):
        return None
    if "prompt_tokens" in report:
        prompt_details = report.get("prompt_tokens_details") or {}
        completion_details = report.get("completion_tokens_details") or {}
        creation = _int(prompt_details.get("cache_write_tokens")) or _int(
            prompt_details.get("cache_creation_tokens")
        )  # LiteLLM's names for Anthropic's cache writes on chat completions
        return Usage(
            prompt=_int(report.get("prompt_tokens")),
            completion=_int(report.get("completion_tokens")),
            cached=_int(prompt_details.get("cached_tokens")),
            cache_creation=creation,
            cache_creation_1h=_one_hour(
                prompt_details.get("cache_creation_token_details"), creation
            ),
            reasoning=_int(completion_details.get("reasoning_tokens")),
        )
    if "input_tokens" in report or "output_tokens" in report:
        read = _int(report.get("cache_read_input_tokens"))
        creation = _int(report.get("cache_creation_input_tokens"))
        details = report.get("input_tokens_details") or {}
        output_details = report.get("output_tokens_details") or {}
        return Usage(
            prompt=_int(report.get("input_tokens")) + read + creation,
            completion=_int(report.get("output_tokens")),
            cached=read or _int(details.get("cached_tokens")),
            cache_creation=creation,
            cache_creation_1h=_one_hour(report.get("cache_creation"), creation),
            reasoning=_int(output_details.get("reasoning_tokens")),
        )
    return None


def _one_hour(split: Any, creation: int) -> int:
    """Of `creation` cache-write tokens, those Anthropic wrote to its 1-hour cache
    (`cache_creation.ephemeral_1h_input_tokens`; the rest are 5-minute writes)."""
    return (
        min(_int(split.get("ephemeral_1h_input_tokens")), creation)
        if isinstance(split, dict)
        else 0
    )


def unreported_usage(counted_prompt: int, reported: Usage | None, output_tokens: int) -> Usage:
    """The usage of a call without the upstream's final report: the larger of what the
    upstream reported so far and what the gateway counted, on each side."""
    partial = reported or Usage()
    return Usage(
        prompt=max(partial.prompt, counted_prompt),
        completion=max(partial.completion, output_tokens),
        cached=partial.cached,
        cache_creation=partial.cache_creation,
        cache_creation_1h=partial.cache_creation_1h,
        reasoning=partial.reasoning,
    )


def usage_cost_usd(router: litellm_bridge.Router, model_id: str | None, usage: Usage) -> Decimal:
    """US$ of reported usage at the answering deployment's price (0: LiteLLM cannot price
    it, and `finished_call` uses the price book)."""
    return litellm_bridge.usage_cost(
        router,
        model_id,
        prompt_tokens=usage.prompt,
        completion_tokens=usage.completion,
        cached_tokens=usage.cached,
        cache_creation_tokens=usage.cache_creation,
        cache_creation_1h_tokens=usage.cache_creation_1h,
        reasoning_tokens=usage.reasoning,
    )


def finished_call(
    config: PricedConfig,
    *,
    call_id: str,
    identity: TokenIdentity,
    model_group: str,
    usage: Usage,
    cost_usd: Decimal,
    started_at: datetime,
    ended_at: datetime,
    status: CallStatus = CallStatus.SUCCESS,
    http_status: int | None = 200,
    error_type: str | None = None,
) -> FinishedCall:
    """The call's usage row; the price book prices it when LiteLLM could not (cost 0)."""
    if cost_usd <= 0 and usage.total:
        price = config.prices.price_of(model_group)
        cost_usd = price.cost_usd(usage.prompt, usage.completion) if price else Decimal(0)
    credits = config.plugin.credits
    return FinishedCall(
        call_id=call_id,
        user_id=identity.user_id,
        token_id=identity.token_id,
        model=model_group[:200],
        status=status,
        started_at=started_at,
        ended_at=ended_at,
        prompt_tokens=usage.prompt,
        completion_tokens=usage.completion,
        cached_tokens=usage.cached,
        reasoning_tokens=usage.reasoning,
        upstream_cost_nano_usd=int(cost_usd * 1_000_000_000),
        credits=usd_to_units(
            cost_usd, usd_per_credit=credits.usd_per_credit, markup=credits.markup
        ),
        http_status=http_status,
        error_type=error_type,
    )
