"""Load config.yaml and validate our section and the model price book.

Errors name the offending key (`workforce_gateway.credits.markup: …`,
`model_list[3] (name 'x'): no price …`) so an operator can fix them without reading code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from portal.config.plugin_settings import PluginSettings
from portal.credits.pricing import PriceBook

__all__ = ["ConfigError", "GatewayConfig", "load_config", "load_plugin_settings"]

SECTION = "workforce_gateway"


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
    prices: PriceBook
    """What each model group costs (debits when LiteLLM cannot price a call)."""
    reservation_prices: PriceBook
    """The same, raised to the dearest fallback of each group (reservations)."""

    @property
    def model_names(self) -> list[str]:
        return self.prices.model_names


def load_config(path: Path, *, require_prices: bool = True) -> GatewayConfig:
    """Parse and validate. With `require_prices`, any unpriced model is an error."""
    raw = _read(path)
    plugin, problems = _plugin_settings(raw)
    model_list = raw.get("model_list")
    if not isinstance(model_list, list) or not model_list:
        problems.append("model_list: must list at least one model")
        model_list = []
    prices, price_problems = PriceBook.from_model_list(model_list)
    if require_prices:
        problems.extend(price_problems)
    if problems:
        raise ConfigError(problems)
    return GatewayConfig(
        path=path,
        raw=raw,
        plugin=plugin,
        prices=prices,
        reservation_prices=prices.covering_fallbacks(_fallbacks(raw)),
    )


def load_plugin_settings(path: Path) -> PluginSettings:
    """Only our `workforce_gateway:` section: for the portal, which needs no price book
    (building one imports LiteLLM)."""
    plugin, problems = _plugin_settings(_read(path))
    if problems:
        raise ConfigError(problems)
    return plugin


def _read(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML ({exc.__class__.__name__})"]) from None
    if not isinstance(raw, dict):
        raise ConfigError([f"{path}: the top level must be a mapping"])
    return raw


def _plugin_settings(raw: dict[str, Any]) -> tuple[PluginSettings, list[str]]:
    try:
        return PluginSettings.model_validate(raw.get(SECTION) or {}), []
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in (SECTION, *err['loc']))}: {err['msg']}"
            for err in exc.errors()
        ]
        return PluginSettings(), problems


def _fallbacks(raw: dict[str, Any]) -> dict[str, list[str]]:
    """`router_settings.fallbacks` (a list of {group: [fallback, …]}) as one mapping."""
    chains: dict[str, list[str]] = {}
    router = raw.get("router_settings")
    if not isinstance(router, dict):
        return chains
    for key in ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks"):
        for item in router.get(key) or []:
            if isinstance(item, dict):
                for group, targets in item.items():
                    if isinstance(targets, list):
                        chains.setdefault(str(group), []).extend(str(t) for t in targets)
    return chains
