"""What a call was charged, as the client reads it in the answer itself.

The debit is known at settlement, which happens before the answer's last byte: every
answer's `usage` object gains `cost` (credits, a decimal string as `/v1/credits` writes
them) and `cost_units` (the ledger units debited), plain answers a `x-credits-charged`
header, and a stream's final usage event (OpenAI's usage chunk, Anthropic's
`message_delta`, the Responses API's `response.completed`) the same two fields. The
figures are the call's usage row's `credits`: what `GET /v1/calls/{id}` shows later.
"""

from __future__ import annotations

from typing import Any

from portal.credits.units import format_units

__all__ = ["COST_HEADER", "cost_header", "with_cost"]

COST_HEADER = "x-credits-charged"


def with_cost(usage: Any, units: int) -> None:
    """Add the charge to a usage object (a JSON dict), in place; anything else is left."""
    if isinstance(usage, dict):
        usage["cost"] = format_units(units)
        usage["cost_units"] = units


def cost_header(units: int) -> dict[str, str]:
    return {COST_HEADER: format_units(units)}
