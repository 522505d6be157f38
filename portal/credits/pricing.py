"""Per-token prices of each model group, from config.yaml `model_info` / `litellm_params`
price overrides or else LiteLLM's bundled cost map. A model with no price is never
served: the config check lists it and the gateway refuses it (ModelNotPriced).

`load_priced_config` is config.yaml as `portal.config` reads it plus its price books:
what the gateway and `gateway-admin config check` use (the portal needs no prices)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from portal.config import ConfigError, GatewayConfig, check_config
from portal.credits.cost_map import bundled_cost_map_entry

__all__ = ["ModelPrice", "PriceBook", "PricedConfig", "load_priced_config"]

_PRICE_KEYS = ("input_cost_per_token", "output_cost_per_token")


@dataclass(frozen=True)
class ModelPrice:
    input_per_token: Decimal  # US dollars
    output_per_token: Decimal
    # Prompt tokens read from / written to a prompt cache (None: at the input price, as
    # LiteLLM bills them when the map names no such rate or the price is configured).
    cached_input_per_token: Decimal | None = None
    cache_write_per_token: Decimal | None = None

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        return self.input_per_token * prompt_tokens + self.output_per_token * completion_tokens

    @property
    def cached_input_rate(self) -> Decimal:
        return _or(self.cached_input_per_token, self.input_per_token)

    @property
    def cache_write_rate(self) -> Decimal:
        return _or(self.cache_write_per_token, self.input_per_token)

    def dearest(self, other: ModelPrice) -> ModelPrice:
        """Each rate at the higher of the two prices."""
        return ModelPrice(
            max(self.input_per_token, other.input_per_token),
            max(self.output_per_token, other.output_per_token),
            max(self.cached_input_rate, other.cached_input_rate),
            max(self.cache_write_rate, other.cache_write_rate),
        )


def _or(rate: Decimal | None, default: Decimal) -> Decimal:
    return default if rate is None else rate


@dataclass(frozen=True)
class PriceBook:
    """Model group name -> the highest price among its deployments (reservations must
    cover whichever deployment the router picks)."""

    prices: dict[str, ModelPrice]
    unpriced: frozenset[str]

    @property
    def model_names(self) -> list[str]:
        return sorted({*self.prices, *self.unpriced})

    def price_of(self, model_group: str) -> ModelPrice | None:
        return self.prices.get(model_group)

    def knows(self, model_group: str) -> bool:
        return model_group in self.prices or model_group in self.unpriced

    def covering_fallbacks(self, fallbacks: dict[str, list[str]]) -> PriceBook:
        """A book in which each group costs the most of itself and every group the router
        may fall back to from it (transitively), so a reservation covers a fallback to a
        dearer model. Unpriced groups in a chain are skipped (the config check refuses them)."""
        covering: dict[str, ModelPrice] = {}
        for group, price in self.prices.items():
            seen, queue = {group}, list(fallbacks.get(group, []))
            while queue:
                other = queue.pop()
                if other in seen:
                    continue
                seen.add(other)
                queue.extend(fallbacks.get(other, []))
                if (alternative := self.prices.get(other)) is not None:
                    price = price.dearest(alternative)
            covering[group] = price
        return PriceBook(covering, self.unpriced)

    @classmethod
    def from_model_list(cls, model_list: list[Any]) -> tuple[PriceBook, list[str]]:
        prices: dict[str, ModelPrice] = {}
        unpriced: set[str] = set()
        problems: list[str] = []
        for index, entry in enumerate(model_list):
            where = f"model_list[{index}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("model_name"), str):
                problems.append(f"{where}: needs a model_name and litellm_params")
                continue
            name = entry["model_name"]
            params = entry.get("litellm_params") or {}
            litellm_model = params.get("model") if isinstance(params, dict) else None
            if not isinstance(litellm_model, str):
                problems.append(f"{where} ({name!r}): litellm_params.model is missing")
                continue
            try:
                price = _configured_price(entry, where) or _cost_map_price(litellm_model)
            except _BadPrice as exc:
                unpriced.add(name)
                problems.append(str(exc))
                continue
            if price is None:
                unpriced.add(name)
                problems.append(
                    f"{where} ({name!r}): no price for {litellm_model!r} in LiteLLM's cost map; "
                    "set model_info.input_cost_per_token and output_cost_per_token"
                )
                continue
            if name in prices:
                price = prices[name].dearest(price)
            prices[name] = price
        for name in unpriced:
            prices.pop(name, None)  # one unpriced deployment makes the group unpriced
        return cls(prices, frozenset(unpriced)), problems


class _BadPrice(ValueError):
    pass


def _configured_price(entry: dict[str, Any], where: str) -> ModelPrice | None:
    for section in ("model_info", "litellm_params"):
        source = entry.get(section)
        if isinstance(source, dict) and all(source.get(key) is not None for key in _PRICE_KEYS):
            price = ModelPrice(
                *(_dollars(source[key], f"{where}.{section}.{key}") for key in _PRICE_KEYS)
            )
            if not (price.input_per_token or price.output_per_token):
                raise _BadPrice(
                    f"{where}.{section}: both prices are 0; a model is never served free"
                )
            return price
    return None


def _dollars(value: Any, key: str) -> Decimal:
    """A configured per-token price: a finite, non-negative number of US dollars."""
    try:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise InvalidOperation
        price = Decimal(str(value).strip())
        if not price.is_finite() or price < 0:
            raise InvalidOperation
    except InvalidOperation:
        raise _BadPrice(f"{key}: must be a non-negative number of US dollars per token") from None
    return price


def _cost_map_price(litellm_model: str) -> ModelPrice | None:
    listed = bundled_cost_map_entry(litellm_model)
    if listed is not None:
        return _mapped_price(listed)
    import litellm  # heavy import (~6 s of CPU), only for what the bundled map cannot say

    try:
        info = litellm.get_model_info(model=litellm_model)
    except Exception:  # LiteLLM raises a plain Exception for unknown models
        return None
    values = [info.get(key) for key in _PRICE_KEYS]
    if any(value is None for value in values) or not any(values):
        return None
    return _mapped_price(info)


def _mapped_price(entry: Mapping[str, Any]) -> ModelPrice:
    """A cost-map entry's rates (LiteLLM's keys); cache rates it does not name are None."""

    def rate(key: str) -> Decimal | None:
        value = entry.get(key)
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
        return Decimal(str(value)) if ok else None

    return ModelPrice(
        Decimal(str(entry["input_cost_per_token"])),
        Decimal(str(entry["output_cost_per_token"])),
        rate("cache_read_input_token_cost"),
        rate("cache_creation_input_token_cost"),
    )


@dataclass(frozen=True)
class PricedConfig(GatewayConfig):
    prices: PriceBook
    """What each model group costs (debits when LiteLLM cannot price a call)."""
    reservation_prices: PriceBook
    """The same, raised to the dearest fallback of each group (reservations)."""

    @property
    def model_names(self) -> list[str]:
        return self.prices.model_names


def load_priced_config(path: Path, *, require_prices: bool = True) -> PricedConfig:
    """config.yaml validated, with its price books. With `require_prices`, any unpriced
    model is a problem too; ConfigError lists every problem at once."""
    config, problems = check_config(path)
    prices, price_problems = PriceBook.from_model_list(config.model_list)
    if require_prices:
        problems.extend(price_problems)
    if problems:
        raise ConfigError(problems)
    return PricedConfig(
        path=config.path,
        raw=config.raw,
        plugin=config.plugin,
        prices=prices,
        reservation_prices=prices.covering_fallbacks(config.fallbacks),
    )
