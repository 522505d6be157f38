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

The hold is priced at the dearest deployment the call may reach (its fallbacks included)
only when the balance allows it; otherwise it is priced for the requested model group
alone and the call goes without fallback (`NO_FALLBACK`), rather than being refused. A
refusal (402) names the balance, the amount needed and what to do.

The same statement counts the hold on the calling token's spending limit
(`portal.tokens.spending`): the token's row is read and moved in it, so the limit costs
no round trip of its own and a limit changed in the portal applies to the next call
(nothing caches it). A call the limit does not allow gets 402 `token_limit_reached` with
the limit, what is used and when it resets; with fallbacks it is first retried priced
without them, as for the balance.

Overspend bound: docs/security.md ("Reservations and the overspend bound") states it as
a formula. In short: the output cap sent upstream is the output reserved, the prompt's
text is counted in full and each image at its ceiling (`input_bounds`), so a call's cost
exceeds its hold only by the tokenizer's error on the prompt (covered by
`input_estimate_factor`) — k calls in flight can overspend by at most
k × (max(0, true − factor × counted prompt tokens) × input price + 1 unit).
"""

from __future__ import annotations

import math
from typing import Any

from gateway_plugins.runtime import GatewayRuntime
from portal.config.plugin_settings import PluginSettings
from portal.credits import ledger, reservations
from portal.credits.pricing import ModelPrice
from portal.credits.units import format_units, usd_to_units
from portal.errors import InsufficientCredits, TokenLimitReached

__all__ = ["NO_FALLBACK", "estimate_units", "hold", "reserve"]

# LiteLLM detail (kept here, beside the one use; litellm_bridge is being upgraded
# separately): the Router's per-call switch that skips `fallbacks` for this call
# (`litellm.router_utils.fallback_event_handlers.fallbacks_disabled_for_request`).
NO_FALLBACK: dict[str, Any] = {"disable_fallbacks": True}


def estimate_units(
    settings: PluginSettings, price: ModelPrice, prompt_tokens: int, output_tokens: int
) -> int:
    credits = settings.credits
    padded_prompt = math.ceil(prompt_tokens * credits.input_estimate_factor)
    cost = price.cost_usd(padded_prompt, output_tokens)
    units = usd_to_units(cost, usd_per_credit=credits.usd_per_credit, markup=credits.markup)
    return max(units, 1)


async def reserve(
    runtime: GatewayRuntime, user_id: str, call_id: str, units: int, token_id: str | None = None
) -> None:
    """Hold `units` for the call (counted on token `token_id`'s limit), or raise
    InsufficientCredits or TokenLimitReached (402)."""
    database = runtime.database
    if database.sends_by_driver:
        async with database.per_call() as driver:
            if await reservations.hold_on_driver(
                driver,
                user_id=user_id,
                call_id=call_id,
                amount=units,
                ttl_seconds=runtime.deadline_seconds,
                token_id=token_id,
            ):
                return
    async with database.core_transaction() as connection:
        await reservations.reserve(
            connection,
            user_id=user_id,
            call_id=call_id,
            amount=units,
            ttl_seconds=runtime.deadline_seconds,
            token_id=token_id,
        )


async def hold(
    runtime: GatewayRuntime,
    user_id: str,
    call_id: str,
    *,
    with_fallbacks: int,
    primary_only: int,
    token_id: str | None = None,
) -> tuple[int, bool]:
    """Hold `with_fallbacks` units, or else `primary_only` (the call then goes without
    fallback); (units held, fallbacks allowed). InsufficientCredits (402) with the
    balance, the amount needed and what to do when neither fits; TokenLimitReached when
    the token's limit is what refused."""
    try:
        await reserve(runtime, user_id, call_id, with_fallbacks, token_id)
        return with_fallbacks, True
    except TokenLimitReached:
        if primary_only >= with_fallbacks:
            raise
    except InsufficientCredits:
        if primary_only >= with_fallbacks:
            raise await _refusal(runtime, user_id, with_fallbacks) from None
    try:
        await reserve(runtime, user_id, call_id, primary_only, token_id)
    except TokenLimitReached:
        raise
    except InsufficientCredits:
        raise await _refusal(runtime, user_id, primary_only) from None
    return primary_only, False


async def _refusal(runtime: GatewayRuntime, user_id: str, needed: int) -> InsufficientCredits:
    """The 402: what is available, what this call needs, and what the caller can do."""
    try:
        async with runtime.database.session() as session:
            balance, reserved = await ledger.balance_and_reserved(session, user_id)
        available = (
            f"Your balance is {format_units(balance)} credits"
            + (f", {format_units(reserved)} of them held by calls in flight" if reserved else "")
            + "; "
        )
    except Exception:  # the refusal stands without the figures
        available = ""
    settings = runtime.settings
    if settings.stripe_secret_key:
        remedy = f"top up at {settings.portal_public_url.rstrip('/')}/billing"
    else:
        remedy = "ask the operator of this gateway for credits (billing is off)"
    return InsufficientCredits(
        f"Insufficient credits. {available}this request needs {format_units(needed)} credits "
        "held (its prompt plus max_tokens of output at the model's price). "
        f"Lower max_tokens, or {remedy}."
    )
