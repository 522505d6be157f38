"""The one `litellm.Router`, and what an answer says about the deployment that gave it.

Relied on: `Router.acompletion / atext_completion / aembedding / aanthropic_messages /
aresponses` are the calls (`ROUTER_METHODS`); a stream is an async iterator of chunk
objects (chat, text, responses events) or of raw SSE bytes (Anthropic messages); an
answer (plain, or the stream object) carries `_hidden_params["model_id"]`, the deployment
that answered; exceptions carry `status_code`, and `Router(allowed_fails_policy=…)`
decides which errors may put a deployment into cooldown (`COOLDOWN_POLICY`);
`enable_mid_stream_fallback_continuation=False` keeps a chat stream that broke after text
from being continued on a fallback. A call can
still return None instead of raising (text completions and embeddings, on the OpenAI
SDK's path); the gateway answers that as a failed call (502).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from litellm.router import Router
from litellm.types.router import AllowedFailsPolicy

__all__ = [
    "COOLDOWN_POLICY",
    "ROUTER_METHODS",
    "Router",
    "build_router",
    "deployment_of",
    "group_of",
    "model_id_of",
    "to_jsonable",
]

ROUTER_METHODS = {
    "chat": "acompletion",
    "text": "atext_completion",
    "embeddings": "aembedding",
    "messages": "aanthropic_messages",
    "responses": "aresponses",
}

# A request's own mistakes (400, 404, 413, 422, content policy) must never cool a
# deployment down for everyone: allow "unlimited" such failures. 429, 5xx and timeouts
# keep LiteLLM's default (router_settings.allowed_fails, else LiteLLM's).
_NEVER = 1_000_000_000
COOLDOWN_POLICY = AllowedFailsPolicy(
    BadRequestErrorAllowedFails=_NEVER,
    NotFoundErrorAllowedFails=_NEVER,
    ContentPolicyViolationErrorAllowedFails=_NEVER,
    AuthenticationErrorAllowedFails=_NEVER,
)


# A request's own 400 (invalid, too long for the context window, refused by a content
# policy) is answered as is, never sent on to a fallback, so no second provider receives
# content the first refused: `fallback_on_unsupported_params=False` stops the generic
# fallback on a provider's plain 400; a context-window or content-policy 400 would still
# take the generic `fallbacks` unless its own list names targets, so those default to none
# (an operator may still name some in config.yaml).
_NO_FALLBACK_ON_OWN_400: dict[str, Any] = {
    "context_window_fallbacks": [{"*": []}],
    "content_policy_fallbacks": [{"*": []}],
}


def build_router(model_list: list[dict[str, Any]], router_settings: Mapping[str, Any]) -> Router:
    """One Router for the process. Each deployment gets `<model_name>#<index>` as id when
    it has none, so logs name deployments the operator recognises."""
    deployments = []
    for index, entry in enumerate(model_list):
        info = dict(entry.get("model_info") or {})
        info.setdefault("id", f"{entry['model_name']}#{index}")
        deployments.append({**entry, "model_info": info})
    router: Router = Router(
        model_list=deployments,
        **{**_NO_FALLBACK_ON_OWN_400, **router_settings},
        allowed_fails_policy=COOLDOWN_POLICY,
        fallback_on_unsupported_params=False,
        # A stream cut after some of it reached the client is never continued elsewhere
        # (`stream_recovery` holds that for every API; this is LiteLLM's own switch, chat).
        enable_mid_stream_fallback_continuation=False,
    )
    return router


def _deployment(router: Router, model_id: str) -> Any:
    return router.registry().deployment(model_id)


def deployment_of(router: Router, model_id: str | None) -> tuple[str, str | None]:
    """(litellm model, provider) of the deployment that answered."""
    deployment = _deployment(router, model_id) if model_id else None
    if deployment is None:
        return "", None
    params = deployment.litellm_params
    return str(params.model), getattr(params, "custom_llm_provider", None)


def group_of(router: Router, model_id: str | None, requested: str) -> str:
    """The model group of the deployment that answered (a fallback's, when one did)."""
    deployment = _deployment(router, model_id) if model_id else None
    return str(deployment.model_name) if deployment is not None else requested


def _hidden(response: Any) -> dict[str, Any]:
    if isinstance(response, dict):
        return response.get("_hidden_params") or {}
    return getattr(response, "_hidden_params", None) or {}


def model_id_of(response: Any) -> str | None:
    """The id of the deployment that answered (a plain response or a stream object)."""
    model_id = _hidden(response).get("model_id")
    return str(model_id) if model_id is not None else None


def to_jsonable(response: Any) -> Any:
    """A plain response as JSON data, without LiteLLM's private fields (`_hidden_params`
    names the operator's upstream)."""
    if isinstance(response, dict):
        return {k: v for k, v in response.items() if not k.startswith("_")}
    return response.model_dump(mode="json", exclude_none=True)
