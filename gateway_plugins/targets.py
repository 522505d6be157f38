"""What a model group's call may reach, read once from config.yaml: the providers of its
deployments and of every fallback group (a request's content rules depend on them,
`content_rules`), and whether it is an embedding model.

A deployment is an embedding model when its `model_info.mode` is `embedding` (LiteLLM's
own convention for the field); `/v1/embeddings` serves only those, and the generation
endpoints never do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Target", "targets_of"]

_FALLBACK_KEYS = ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks")


@dataclass(frozen=True)
class Target:
    providers: frozenset[str] = frozenset()
    """Providers of the group's deployments and of its fallback groups."""
    embedding: bool = False
    own: frozenset[str] = frozenset()
    """Providers of the group's own deployments (a call sent without fallbacks)."""


def _provider(entry: Mapping[str, Any]) -> str:
    params = entry.get("litellm_params") or {}
    named = params.get("custom_llm_provider")
    if isinstance(named, str) and named:
        return named
    model = str(params.get("model", ""))
    return model.split("/", 1)[0] if "/" in model else "openai"


def _fallbacks(router_settings: Mapping[str, Any]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for key in _FALLBACK_KEYS:
        for rule in router_settings.get(key) or ():
            if isinstance(rule, Mapping):
                for group, others in rule.items():
                    found.setdefault(str(group), []).extend(str(o) for o in others or ())
    default = [str(o) for o in router_settings.get("default_fallbacks") or ()]
    if default:
        found["*"] = default
    return found


def targets_of(raw: Mapping[str, Any]) -> dict[str, Target]:
    """Model group → its Target, from config.yaml's `model_list` and `router_settings`."""
    own: dict[str, set[str]] = {}
    embedding: dict[str, bool] = {}
    for entry in raw.get("model_list") or ():
        group = str(entry["model_name"])
        own.setdefault(group, set()).add(_provider(entry))
        mode = (entry.get("model_info") or {}).get("mode")
        embedding[group] = embedding.get(group, True) and mode == "embedding"
    fallbacks = _fallbacks(raw.get("router_settings") or {})
    targets = {}
    for group, providers in own.items():
        reach = set(providers)
        for other in [*fallbacks.get(group, ()), *fallbacks.get("*", ())]:
            reach |= own.get(other, set())
        targets[group] = Target(frozenset(reach), embedding[group], frozenset(providers))
    return targets
