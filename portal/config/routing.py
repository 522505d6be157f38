"""config.yaml's LiteLLM sections (`model_list`, `router_settings`, `litellm_settings`)
checked without importing LiteLLM (the import alone costs ~6 s of CPU).

What the Router accepts but gets wrong at run time, each named by its key:
- a fallback to (or from) a model group that `model_list` does not define: the Router
  never falls back, and the call ends in the first group's error;
- a fallback chain written as a string (`{a: b}`) or a mapping instead of a list;
- `os.environ/NAME` in `litellm_params` whose variable is unset or empty where the check
  runs: LiteLLM passes None on and the provider refuses every call (401 -> 500). Only
  `api_base` may stay unset (LiteLLM then uses the provider's own endpoint).

The gateway runs the same `section_problems` at start (`litellm_bridge.config_problems`);
tests/cli/test_config_check.py checks `router_parameters` against the imported Router.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "FALLBACK_KEYS",
    "LITELLM_SETTINGS_ALLOWED",
    "ROUTER_KEYS_OWNED",
    "TOP_LEVEL",
    "environment_problems",
    "fallback_problems",
    "router_parameters",
    "section_problems",
]

TOP_LEVEL = frozenset({"model_list", "router_settings", "litellm_settings", "workforce_gateway"})
# router_settings keys the gateway sets itself (an operator's value would undo a guarantee).
ROUTER_KEYS_OWNED = frozenset(
    {
        "allowed_fails_policy",
        "model_list",
        "fallback_on_unsupported_params",
        "enable_mid_stream_fallback_continuation",
    }
)
LITELLM_SETTINGS_ALLOWED = frozenset(
    {
        "drop_params",
        "modify_params",
        "turn_off_message_logging",
        "request_timeout",
        "num_retries",
        "max_budget",
        "set_verbose",
        "json_logs",
        "suppress_debug_info",
    }
)
FALLBACK_KEYS = ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks")
_ANY_GROUP = "*"  # LiteLLM's fallback for every group
_ENV_PREFIX = "os.environ/"
_OPTIONAL_ENV_PARAMS = frozenset({"api_base"})


def section_problems(raw: Mapping[str, Any]) -> list[str]:
    """What config.yaml's LiteLLM sections ask that the gateway cannot honour: keys it does
    not use, router_settings it owns itself or LiteLLM's Router does not take, and
    litellm_settings off the allow-list (a logging callback would receive prompt text)."""
    problems = [
        f"{key}: not used by this gateway (LiteLLM's proxy server is not run); remove it"
        for key in raw
        if key not in TOP_LEVEL
    ]
    router, settings = raw.get("router_settings") or {}, raw.get("litellm_settings") or {}
    if not isinstance(router, Mapping) or not isinstance(settings, Mapping):
        return [*problems, "router_settings and litellm_settings must be mappings"]
    accepted = router_parameters()
    for key in router:
        if key in ROUTER_KEYS_OWNED:
            problems.append(f"router_settings.{key}: set by the gateway, remove it")
        elif key not in accepted:
            problems.append(f"router_settings.{key}: not a litellm.Router setting")
    problems += [
        f"litellm_settings.{key}: not supported by the gateway"
        + (" (a logging callback would receive prompt text)" if "callback" in key else "")
        for key in settings
        if key not in LITELLM_SETTINGS_ALLOWED
    ]
    return problems


def fallback_problems(router: Any, model_names: set[str]) -> list[str]:
    """Each fallback list must be `[{group: [group, ...]}, ...]` over groups of model_list."""
    if not isinstance(router, Mapping):
        return []  # section_problems names it
    problems = []
    for key in FALLBACK_KEYS:
        chains = router.get(key)
        if chains is None:
            continue
        where = f"router_settings.{key}"
        if not isinstance(chains, list):
            problems.append(f"{where}: must be a list of {{model: [fallback, ...]}} entries")
            continue
        for index, chain in enumerate(chains):
            if not isinstance(chain, Mapping) or not chain:
                problems.append(f"{where}[{index}]: must be a mapping {{model: [fallback, ...]}}")
                continue
            for group, targets in chain.items():
                problems += _chain_problems(f"{where}[{index}]", group, targets, model_names)
    default = router.get("default_fallbacks")
    if default is not None:
        problems += _targets_problems("router_settings.default_fallbacks", default, model_names)
    return problems


def _chain_problems(where: str, group: Any, targets: Any, model_names: set[str]) -> list[str]:
    problems = []
    if group != _ANY_GROUP and group not in model_names:
        problems.append(
            f"{where}: falls back from {group!r}, which is not a model_name in model_list"
        )
    return problems + _targets_problems(f"{where}.{group}", targets, model_names)


def _targets_problems(where: str, targets: Any, model_names: set[str]) -> list[str]:
    if isinstance(targets, str):
        return [f"{where}: must be a list of model names ([{targets}]), not a string"]
    if not isinstance(targets, list) or not targets:
        return [f"{where}: must be a list of model names"]
    return [
        f"{where}: falls back to {target!r}, which is not a model_name in model_list"
        for target in targets
        if target not in model_names
    ]


def environment_problems(model_list: list[Any], env: Mapping[str, str] | None = None) -> list[str]:
    """`os.environ/NAME` references in litellm_params whose variable is unset or empty in
    `env` (default: the process environment, where LiteLLM reads them)."""
    env = os.environ if env is None else env
    problems = []
    for index, entry in enumerate(model_list):
        params = entry.get("litellm_params") if isinstance(entry, Mapping) else None
        if not isinstance(params, Mapping):
            continue
        for key, value in params.items():
            if not (isinstance(value, str) and value.startswith(_ENV_PREFIX)):
                continue
            variable = value.removeprefix(_ENV_PREFIX)
            if key not in _OPTIONAL_ENV_PARAMS and not env.get(variable):
                problems.append(
                    f"model_list[{index}] ({entry.get('model_name')!r}): litellm_params.{key}: "
                    f"{variable} is not set in this environment (os.environ/{variable})"
                )
    return problems


@functools.cache
def router_parameters() -> frozenset[str]:
    """The keyword arguments `litellm.Router(...)` takes, read from LiteLLM's source (~0.2 s)
    rather than by importing it (~6 s): `Router.__init__` up to 1.108, the module-level
    `_router_init` whose signature `Router.__init__` reports since 1.109. Private ones
    (a leading underscore) are not settings. `tests/cli/test_config_check.py` checks the
    result against the imported Router's signature."""
    spec = importlib.util.find_spec("litellm")  # finds the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("LiteLLM is not installed")
    source = Path(next(iter(spec.submodule_search_locations)), "router.py")
    tree = ast.parse(source.read_text(encoding="utf-8"))
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "Router":
            functions += [item for item in node.body if isinstance(item, ast.FunctionDef)]
    for function in functions:
        if function.name in ("_router_init", "__init__") and len(function.args.args) > 2:
            arguments = function.args
            names = {a.arg for a in (*arguments.args, *arguments.kwonlyargs)}
            return frozenset(name for name in names - {"self"} if not name.startswith("_"))
    raise RuntimeError(f"{source}: no Router.__init__ (LiteLLM changed; update this reader)")
