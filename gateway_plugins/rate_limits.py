"""Per-user rate limits by plan: requests and tokens per minute, calls in flight.

Enforced by LiteLLM's own limiter (`litellm/proxy/hooks/parallel_request_limiter_v3.py`),
which the proxy always loads; we only tell it the limits, through the `UserAPIKeyAuth`
that `custom_auth` returns (`limit_fields`):

- `user_rpm_limit` / `user_tpm_limit` are counted per `user_id` (its "user" window);
- `max_parallel_requests` is counted per `api_key`, so `api_key` carries a per-user
  scope (`rate_limit_scope`) rather than the token hash: all of a user's tokens share
  one in-flight gauge, as they share one RPM/TPM window.

With `REDIS_URL` set, LiteLLM builds its coordination Redis from the environment and
every counter is a Lua script there, atomic across instances and workers
(`require_shared_limiter` refuses to start if that did not happen). Without Redis the
counters are per process, which is why `gateway-admin config check` refuses
`GATEWAY_WORKERS` > 1 without it. A refusal is LiteLLM's `ProxyRateLimitError`: HTTP 429
with an OpenAI-style body and `Retry-After`. TPM is counted from actual usage after each
call (`LITELLM_TPM_TOKEN_RESERVATION_ENABLED=false`, set by the server): a second
tokenizer pass per request would cost more than the burst it prevents, and credits,
not TPM, bound what a user can spend.
"""

from __future__ import annotations

import logging

import litellm
from litellm.integrations.custom_logger import CustomLogger

from portal.config.plugin_settings import PlanLimits

__all__ = [
    "limit_fields",
    "rate_limit_scope",
    "require_shared_limiter",
    "run_limiter_before_reservation",
]

log = logging.getLogger(__name__)

LIMITER_HOOK = "parallel_request_limiter"


def rate_limit_scope(user_id: str) -> str:
    return f"wfg-user:{user_id}"


def limit_fields(limits: PlanLimits) -> dict[str, int | None]:
    """`UserAPIKeyAuth` fields that make LiteLLM's limiter apply a plan's limits."""
    return {
        "user_rpm_limit": limits.rpm,
        "user_tpm_limit": limits.tpm,
        "max_parallel_requests": limits.max_parallel_requests,
    }


def _limiter() -> CustomLogger | None:
    from litellm.proxy.proxy_server import proxy_logging_obj

    return proxy_logging_obj.get_proxy_hook(LIMITER_HOOK)


def run_limiter_before_reservation(meter_class_name: str = "CreditMeter") -> None:
    """Pre-call hooks run in `litellm.callbacks` order, and the proxy appends its limiter
    after the callbacks from config.yaml. Move it ahead of our credit meter, so a
    rate-limited request is refused before it holds credits or touches the database.

    The meter is found by class name: LiteLLM may load config.yaml's callback modules
    from their files, making objects other than the ones `import` gives us."""
    limiter = _limiter()
    callbacks = litellm.callbacks
    meters = [c for c in callbacks if type(c).__name__ == meter_class_name]
    if limiter is None or limiter not in callbacks or not meters:
        return
    first_meter = callbacks.index(meters[0])
    if callbacks.index(limiter) > first_meter:
        callbacks.remove(limiter)
        callbacks.insert(first_meter, limiter)


def require_shared_limiter(redis_url: str | None) -> None:
    """With REDIS_URL set, LiteLLM's limiter must count in Redis, or every instance would
    grant a user the full limit. LiteLLM falls back to memory (with a warning) when
    Redis does not answer at start; we refuse to start instead."""
    if not redis_url:
        return
    # The limiter registers its Lua scripts when built, only if Redis was attached then.
    if getattr(_limiter(), "batch_rate_limiter_script", None) is None:
        raise RuntimeError(
            "REDIS_URL is set but LiteLLM's rate limiter is not using Redis "
            "(unreachable at start?); refusing to run with per-instance limits"
        )
