"""`WFG_BRIDGE_WITHOUT`: the bench's A/B switch for the LiteLLM bridge's speed patches.

A comma-separated list of names from `SPEED_PATCHES`; each named patch is left out of
this process, so the A and the B of an A/B (bench/README.md) run the same commit. Read
once (`Settings.bridge_without`). For the bench only, never set in production: a patch
that fixes a defect (cookies, text-completion clients, closing clients) has no switch,
and an unknown name stops the start rather than measure nothing. Free of LiteLLM imports: `server`
reads it before LiteLLM is imported."""

from __future__ import annotations

import functools

from gateway_plugins.ab_switches import named
from portal.settings import get_settings

__all__ = ["SPEED_PATCHES", "VARIABLE", "without"]

VARIABLE = "WFG_BRIDGE_WITHOUT"
SPEED_PATCHES = frozenset(
    {
        "skip_success_logging",
        "skip_litellm_pricing",
        "run_request_setup_inline",
        "build_each_stream_once",
        "chat_without_openai_sdk",
        "remember_model_info",
        "skip_unused_router_bookkeeping",
        "read_deltas_directly",
        "decode_sse_with_orjson",
        "find_stream_usage_directly",
    }
)


@functools.cache
def _left_out() -> frozenset[str]:
    return named(VARIABLE, get_settings().bridge_without, SPEED_PATCHES)


def without(name: str) -> bool:
    """Whether this process leaves the speed patch `name` out (bench A/B only)."""
    assert name in SPEED_PATCHES, name
    return name in _left_out()
