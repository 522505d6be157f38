"""Every LiteLLM detail the gateway relies on, one module per reliance.

LiteLLM is used as a library: one `litellm.Router`, built from config.yaml's `model_list`,
`router_settings` and `litellm_settings` (LiteLLM's own conventions), does provider
routing, fallbacks, retries, streaming and format translation; its cost map prices calls.
Nothing else in `gateway_plugins` imports LiteLLM. Each module says what it relies on and
why; `tests/gateway/litellm_pins/test_<module>.py` pins it, so an upgrade that changes one
fails loudly (`make litellm-check`).

- `router`        the Router, its calls, the cooldown policy, which deployment answered
- `settings`      config.yaml's LiteLLM sections: accepted, forced, applied
- `pricing`       a call's price from its reported usage
- `errors`        LiteLLM's exceptions as what the client sees
- `tokens`        prompt tokens and output (and context) limits before a call
- `clients`       LiteLLM's upstream clients, closed at shutdown
- `openai_chat`   chat on OpenAI deployments without the OpenAI SDK (an env switch)
- `kept_chunks`   the chunk objects a stream kept, emptied in slices once it ended

Patches of LiteLLM internals, installed by `settings.apply_litellm_settings` (and the
app's lifespan for `request_setup`); the speed ones can be left out for an A/B
(`gateway_plugins.bridge_switches`, bench/README.md), the figures are in bench/RESULTS.md:

- `success_logging`          LiteLLM's success logging skipped (speed)
- `litellm_pricing`          LiteLLM's own pricing of each response skipped (speed)
- `request_setup`            each call's request set-up in the loop's thread (speed)
- `stream_build`             each stream's answer built once (speed)
- `model_info_memo`          the Responses-bridge check's cost-map look-up remembered (speed)
- `router_bookkeeping`       the Router core's per-call work for features the gateway leaves
                             off (session re-pinning, service logs, usage-routing
                             reads) skipped (speed)
- `streamed_delta`           a stream's continuation bookkeeping reads each delta directly
                             (speed, per chunk)
- `sse_json`                 an OpenAI-format stream's lines decoded by orjson (speed, per
                             chunk)
- `stream_usage_scan`        the end-of-stream rebuild finds the usage reports without
                             probing every chunk (speed, per chunk)
- `cookies`                  upstream clients keep no cookie (a defect: shared clients)
- `text_completion_clients`  one client per key for text completions (a defect: a new
                             connection per call, sessions leaked)
- `gemini_finish`            a Gemini stream chunk says "finished" only when Gemini did
                             (a defect: a cut stream ended as `stop`)
- `own_errors`               an upstream 413/422 is the request's own error: no fallback,
                             no retry, no cooldown (as a 400)
- `stream_recovery`          no retry or fallback once part of a stream reached the client
                             (`stream_delivered`)
"""

from gateway_plugins.litellm_bridge.clients import close_upstream_clients
from gateway_plugins.litellm_bridge.errors import UpstreamFailure, upstream_failure
from gateway_plugins.litellm_bridge.kept_chunks import kept_chunks
from gateway_plugins.litellm_bridge.pricing import usage_cost
from gateway_plugins.litellm_bridge.request_setup import run_request_setup_inline
from gateway_plugins.litellm_bridge.router import (
    COOLDOWN_POLICY,
    ROUTER_METHODS,
    Router,
    build_router,
    deployment_of,
    group_of,
    model_id_of,
    to_jsonable,
)
from gateway_plugins.litellm_bridge.settings import apply_litellm_settings, config_problems
from gateway_plugins.litellm_bridge.stream_recovery import stream_delivered
from gateway_plugins.litellm_bridge.tokens import (
    count_output_tokens,
    count_prompt_tokens,
    input_limits,
    output_limits,
)

__all__ = [
    "COOLDOWN_POLICY",
    "ROUTER_METHODS",
    "Router",
    "UpstreamFailure",
    "apply_litellm_settings",
    "build_router",
    "close_upstream_clients",
    "config_problems",
    "count_output_tokens",
    "count_prompt_tokens",
    "deployment_of",
    "group_of",
    "input_limits",
    "kept_chunks",
    "model_id_of",
    "output_limits",
    "run_request_setup_inline",
    "stream_delivered",
    "to_jsonable",
    "upstream_failure",
    "usage_cost",
]
