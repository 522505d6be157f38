"""config.yaml's LiteLLM sections: what the gateway accepts, and what it forces.

Relied on: module-level settings (`litellm.<key> = value`, LiteLLM's convention for
`litellm_settings`); `turn_off_message_logging`, `suppress_debug_info` and `set_verbose`
keep content out of LiteLLM's own logging. After a failed attempt LiteLLM asks the
proxy's per-request callback controls about each failure callback; the first time, that
imports ~400 modules of its proxy server (1-2 s with the event loop blocked).
`global_disable_no_log_param = True` answers before that (no request can carry those
proxy headers here). `apply_litellm_settings` also installs the bridge's patches.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import litellm

from gateway_plugins.bridge_switches import without
from gateway_plugins.litellm_bridge.cookies import keep_no_upstream_cookies
from gateway_plugins.litellm_bridge.gemini_finish import finish_gemini_streams_as_sent
from gateway_plugins.litellm_bridge.litellm_pricing import skip_litellm_pricing
from gateway_plugins.litellm_bridge.model_info_memo import remember_model_info
from gateway_plugins.litellm_bridge.own_errors import treat_own_errors_as_400
from gateway_plugins.litellm_bridge.router_bookkeeping import skip_unused_router_bookkeeping
from gateway_plugins.litellm_bridge.sse_json import decode_sse_with_orjson
from gateway_plugins.litellm_bridge.stream_build import build_each_stream_once
from gateway_plugins.litellm_bridge.stream_recovery import (
    keep_delivered_streams_on_their_deployment,
)
from gateway_plugins.litellm_bridge.stream_usage_scan import find_stream_usage_directly
from gateway_plugins.litellm_bridge.streamed_delta import read_deltas_directly
from gateway_plugins.litellm_bridge.success_logging import skip_success_logging
from gateway_plugins.litellm_bridge.text_completion_clients import keep_text_completion_clients
from portal.config.routing import LITELLM_SETTINGS_ALLOWED, section_problems

__all__ = ["LITELLM_SETTINGS_ALLOWED", "apply_litellm_settings", "config_problems"]

# litellm_settings keys an operator may set (each applied as `litellm.<key> = value`) and
# the check of config.yaml's LiteLLM sections live in `portal.config.routing`, which the
# config check runs without importing LiteLLM; the gateway runs the same check at start.
config_problems = section_problems
# LiteLLM's repeated-chunk guard counts a stream that repeats a chunk as the deployment's
# failure: one user's streams could cool it down, or send others to the fallback. Off.
REPEATED_CHUNKS_ALLOWED = 2**62  # `REPEATED_STREAMING_CHUNK_LIMIT`: never reached
_FORCED_LITELLM_SETTINGS = {
    "turn_off_message_logging": True,
    "set_verbose": False,  # print()s request bodies
    "suppress_debug_info": True,
    "json_logs": False,  # formats exceptions around our log scrubbing
}


def apply_litellm_settings(settings: Mapping[str, Any]) -> None:
    """Module-level LiteLLM settings; ours win over the operator's where content is at
    stake. No callbacks; then the bridge's patches (each module says why)."""
    for key, value in {**settings, **_FORCED_LITELLM_SETTINGS}.items():
        if key in LITELLM_SETTINGS_ALLOWED:
            setattr(litellm, key, value)
    litellm.global_disable_no_log_param = True  # the first failure imports no proxy code
    litellm.REPEATED_STREAMING_CHUNK_LIMIT = REPEATED_CHUNKS_ALLOWED  # type: ignore[attr-defined]
    litellm.callbacks = []
    litellm.success_callback = []
    litellm.failure_callback = []
    litellm._async_success_callback = []
    litellm._async_failure_callback = []
    if not without("skip_success_logging"):
        skip_success_logging()
    if not without("skip_litellm_pricing"):
        skip_litellm_pricing()
    keep_no_upstream_cookies()
    keep_text_completion_clients()
    finish_gemini_streams_as_sent()
    treat_own_errors_as_400()
    keep_delivered_streams_on_their_deployment()
    if not without("build_each_stream_once"):
        build_each_stream_once()
    if not without("remember_model_info"):
        remember_model_info()
    if not without("skip_unused_router_bookkeeping"):
        skip_unused_router_bookkeeping()
    if not without("read_deltas_directly"):
        read_deltas_directly()
    if not without("decode_sse_with_orjson"):
        decode_sse_with_orjson()
    if not without("find_stream_usage_directly"):
        find_stream_usage_directly()
