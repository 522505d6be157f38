"""Step 4: reserve. Where a call's credits are held before it starts.

The estimate is the prompt's tokens (LiteLLM's tokenizer × `input_estimate_factor`,
because for non-OpenAI providers it only approximates) plus the output allowance
(`max_tokens` or `default_max_tokens`, × `n`), priced at the dearest deployment the model
group may fall back to, with the markup. The hold is one conditional UPDATE in the
database (`portal.credits.reservations`), atomic across instances; it expires with the
request deadline, so a process that dies frees its holds by itself. It is sent by the
driver itself (`hold_on_driver`: one statement in autocommit on PostgreSQL, two in one
transaction on SQLite); a refusal takes the full path in a transaction (`reserve`: frees
the user's expired holds and tries again, or 402).

Overspend bound: a user's balance can fall below zero by at most the sum, over the calls
they have in flight at once, of each call's under-estimate. With `max_tokens` honoured
the output side is exact, so the bound is k × (true prompt tokens − estimated prompt
tokens) × input price for k calls in flight (k ≤ the plan's `max_parallel_requests`).
"""

from __future__ import annotations

import math

from gateway_plugins.runtime import GatewayRuntime
from portal.config.plugin_settings import PluginSettings
from portal.credits import reservations
from portal.credits.pricing import ModelPrice
from portal.credits.units import usd_to_units

__all__ = ["estimate_units", "reserve"]


def estimate_units(
    settings: PluginSettings, price: ModelPrice, prompt_tokens: int, output_tokens: int
) -> int:
    credits = settings.credits
    padded_prompt = math.ceil(prompt_tokens * credits.input_estimate_factor)
    cost = price.cost_usd(padded_prompt, output_tokens)
    units = usd_to_units(cost, usd_per_credit=credits.usd_per_credit, markup=credits.markup)
    return max(units, 1)


async def reserve(runtime: GatewayRuntime, user_id: str, call_id: str, units: int) -> None:
    """Hold `units` for the call, or raise InsufficientCredits (402)."""
    database = runtime.database
    if database.sends_by_driver:
        async with database.per_call() as driver:
            if await reservations.hold_on_driver(
                driver,
                user_id=user_id,
                call_id=call_id,
                amount=units,
                ttl_seconds=runtime.deadline_seconds,
            ):
                return
    async with database.core_transaction() as connection:
        await reservations.reserve(
            connection,
            user_id=user_id,
            call_id=call_id,
            amount=units,
            ttl_seconds=runtime.deadline_seconds,
        )
