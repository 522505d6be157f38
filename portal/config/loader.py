"""Read config.yaml (the one place that does) and validate what it says.

`read_config` is the only reader of the file; everything else goes through it:
`load_config` (the whole file: our section and the shape of `model_list`),
`load_plugin_settings` (our section only: the portal), `load_retention_settings`
(`retention:` only, so retention runs whatever else the file says). Prices are not read
here: `portal.credits.pricing.load_priced_config` builds the price books where they are
used (building them imports LiteLLM).

Errors name the offending key (`workforce_gateway.credits.markup: …`) so an operator can
fix them without reading code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from portal.config.plugin_settings import PluginSettings, RetentionSettings
from portal.config.routing import fallback_problems

__all__ = [
    "SECTION",
    "ConfigError",
    "GatewayConfig",
    "check_config",
    "load_config",
    "load_plugin_settings",
    "load_retention_settings",
    "read_config",
]

SECTION = "workforce_gateway"

_Model = TypeVar("_Model", bound=BaseModel)


class ConfigError(Exception):
    """config.yaml is unusable; `problems` lists every bad key found."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class GatewayConfig:
    path: Path
    raw: dict[str, Any]
    plugin: PluginSettings

    @property
    def model_list(self) -> list[Any]:
        model_list = self.raw.get("model_list")
        return model_list if isinstance(model_list, list) else []

    @property
    def model_names(self) -> list[str]:
        names = (entry.get("model_name") for entry in self.model_list if isinstance(entry, dict))
        return sorted({name for name in names if isinstance(name, str)})

    @property
    def fallbacks(self) -> dict[str, list[str]]:
        """`router_settings.fallbacks` (and the context-window and content-policy ones),
        each a list of {group: [fallback, …]}, as one mapping."""
        chains: dict[str, list[str]] = {}
        router = self.raw.get("router_settings")
        if not isinstance(router, dict):
            return chains
        for key in ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks"):
            for item in router.get(key) or []:
                if isinstance(item, dict):
                    for group, targets in item.items():
                        if isinstance(targets, list):
                            chains.setdefault(str(group), []).extend(str(t) for t in targets)
        return chains


def read_config(path: Path) -> dict[str, Any]:
    """The file as a mapping; ConfigError when it is missing, not YAML, or not a mapping."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: unreadable ({type(exc).__name__})"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML{_where(exc)}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError([f"{path}: the top level must be a mapping"])
    return raw


def _where(exc: yaml.YAMLError) -> str:
    """` at line L, column C: <what PyYAML found>` (1-based, as editors count), and where
    the construct it was reading began when PyYAML says so."""
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return f" ({exc.__class__.__name__})"
    mark, start = exc.problem_mark, exc.context_mark
    text = f" at line {mark.line + 1}, column {mark.column + 1}: {exc.problem or 'syntax error'}"
    if exc.context and start is not None:
        text += f" ({exc.context} at line {start.line + 1}, column {start.column + 1})"
    return text


def check_config(path: Path) -> tuple[GatewayConfig, list[str]]:
    """The file and every problem found in it (ConfigError only if it cannot be read):
    our section, the presence of `model_list`, and fallbacks to groups it defines."""
    raw = read_config(path)
    plugin, problems = _validated(PluginSettings, raw.get(SECTION), (SECTION,))
    model_list = raw.get("model_list")
    if not isinstance(model_list, list) or not model_list:
        problems.append("model_list: must list at least one model")
    config = GatewayConfig(path=path, raw=raw, plugin=plugin)
    problems += fallback_problems(raw.get("router_settings"), set(config.model_names))
    return config, problems


def load_config(path: Path) -> GatewayConfig:
    """Parse and validate; ConfigError lists every problem."""
    config, problems = check_config(path)
    if problems:
        raise ConfigError(problems)
    return config


def load_plugin_settings(path: Path) -> PluginSettings:
    """Only our `workforce_gateway:` section: for the portal, which needs no routing."""
    plugin, problems = _validated(PluginSettings, read_config(path).get(SECTION), (SECTION,))
    if problems:
        raise ConfigError(problems)
    return plugin


def load_retention_settings(path: Path) -> RetentionSettings:
    """Only `workforce_gateway.retention:`: retention must run whatever else the file says."""
    section = read_config(path).get(SECTION)
    retention = section.get("retention") if isinstance(section, dict) else None
    settings, problems = _validated(RetentionSettings, retention, (SECTION, "retention"))
    if problems:
        raise ConfigError(problems)
    return settings


def _validated(
    model: type[_Model], section: Any, where: tuple[str, ...]
) -> tuple[_Model, list[str]]:
    try:
        return model.model_validate(section or {}), []
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in (*where, *err['loc']))}: {err['msg']}"
            for err in exc.errors()
        ]
        return model(), problems
