"""config.yaml: the price book (LiteLLM's cost map, `model_info` overrides, the dearest
deployment of a group), unpriced models, and errors that name the bad key."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import litellm
import pytest
import yaml

from portal.config import ConfigError
from portal.credits.pricing import load_priced_config
from portal.credits.units import usd_to_units
from portal.settings import PROJECT_ROOT

NANO = "openai/gpt-4.1-nano"


def cost_map(model: str) -> tuple[Decimal, Decimal]:
    info = litellm.get_model_info(model=model)
    return Decimal(str(info["input_cost_per_token"])), Decimal(str(info["output_cost_per_token"]))


def write(tmp_path: Path, config: dict[str, Any] | str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    return path


def deployment(name: str, model: str, **model_info: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"model_name": name, "litellm_params": {"model": model}}
    if model_info:
        entry["model_info"] = model_info
    return entry


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_priced_config(path)
    assert str(caught.value) == "; ".join(caught.value.problems)
    return caught.value.problems


def test_shipped_config_prices_every_model_from_the_cost_map_or_overrides() -> None:
    config = load_priced_config(PROJECT_ROOT / "config.yaml")
    assert config.prices.unpriced == frozenset()
    assert {"gpt-4.1-nano", "claude-haiku-4-5", "gemini-2.5-flash"} <= set(config.model_names)
    nano = config.prices.price_of("gpt-4.1-nano")
    assert nano is not None
    assert (nano.input_per_token, nano.output_per_token) == cost_map(NANO)
    # OpenRouter models are not in the cost map: their price comes from config.yaml.
    router = config.prices.price_of("openrouter-gpt-4o-mini")
    assert router is not None
    assert router.input_per_token == Decimal("0.00000015")
    assert config.plugin.credits.markup == Decimal("1.0")


def test_a_short_call_on_the_cheapest_model_costs_what_the_cost_map_says(tmp_path: Path) -> None:
    """~US$0.00004 for a short chat call: the debit is within 1% of the exact price."""
    from tests.gateway.support import chat_model_names

    config = load_priced_config(PROJECT_ROOT / "config.yaml")
    prices = [config.prices.price_of(name) for name in chat_model_names()]
    cheapest = min((p for p in prices if p is not None), key=lambda p: p.cost_usd(200, 50))
    cost = cheapest.cost_usd(200, 50)
    assert Decimal("0.00001") < cost < Decimal("0.0001")
    credits = config.plugin.credits
    units = usd_to_units(cost, usd_per_credit=credits.usd_per_credit, markup=credits.markup)
    exact = cost * credits.markup / credits.usd_per_credit * 10**9
    assert abs(units - exact) <= exact / 100


def test_model_info_overrides_the_cost_map(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "model_list": [
                deployment("nano", NANO, input_cost_per_token=2e-6, output_cost_per_token="3e-6"),
                {
                    "model_name": "params",
                    "litellm_params": {
                        "model": NANO,
                        "input_cost_per_token": 5e-7,
                        "output_cost_per_token": 6e-7,
                    },
                },
            ]
        },
    )
    prices = load_priced_config(path).prices
    nano = prices.price_of("nano")
    assert nano is not None
    assert (nano.input_per_token, nano.output_per_token) == (Decimal("2e-6"), Decimal("3e-6"))
    params = prices.price_of("params")
    assert params is not None
    assert (params.input_per_token, params.output_per_token) == (Decimal("5e-7"), Decimal("6e-7"))


def test_a_group_costs_its_dearest_deployment(tmp_path: Path) -> None:
    """The router may pick any deployment: reserve and price at the highest of each rate."""
    path = write(
        tmp_path,
        {
            "model_list": [
                deployment("pool", NANO),
                deployment("pool", "openai/x", input_cost_per_token=1e-9, output_cost_per_token=1),
                deployment("pool", "openai/y", input_cost_per_token=1, output_cost_per_token=1e-9),
            ]
        },
    )
    pool = load_priced_config(path).prices.price_of("pool")
    assert pool is not None
    assert (pool.input_per_token, pool.output_per_token) == (Decimal(1), Decimal(1))
    path = write(tmp_path, {"model_list": [deployment("pool", NANO), deployment("pool", NANO)]})
    pool = load_priced_config(path).prices.price_of("pool")
    assert pool is not None
    assert (pool.input_per_token, pool.output_per_token) == cost_map(NANO)


def test_unpriced_models_are_named_and_never_priced(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "model_list": [
                deployment("nano", NANO),
                deployment("mystery", "openrouter/acme/unknown-model-zz"),
                deployment("half", NANO),
                deployment("half", "openai/no-such-model-zz"),
            ]
        },
    )
    problems = problems_of(path)
    assert len(problems) == 2
    assert problems[0].startswith("model_list[1] ('mystery'): no price")
    assert "openrouter/acme/unknown-model-zz" in problems[0]
    assert problems[1].startswith("model_list[3] ('half')")
    # Without require_prices the gateway still starts, and refuses exactly those groups.
    prices = load_priced_config(path, require_prices=False).prices
    assert prices.unpriced == {"mystery", "half"}
    assert prices.price_of("mystery") is None
    assert prices.price_of("half") is None  # one unpriced deployment unprices the group
    assert prices.price_of("nano") is not None
    assert prices.model_names == ["half", "mystery", "nano"]


@pytest.mark.parametrize(
    ("model_info", "problem"),
    [
        ({"input_cost_per_token": "abc", "output_cost_per_token": 1e-6},
         "model_list[0].model_info.input_cost_per_token: must be a non-negative number"),
        ({"input_cost_per_token": 1e-6, "output_cost_per_token": -1e-6},
         "model_list[0].model_info.output_cost_per_token: must be a non-negative number"),
        ({"input_cost_per_token": float("nan"), "output_cost_per_token": 1e-6},
         "model_list[0].model_info.input_cost_per_token: must be a non-negative number"),
        ({"input_cost_per_token": True, "output_cost_per_token": 1e-6},
         "model_list[0].model_info.input_cost_per_token: must be a non-negative number"),
        ({"input_cost_per_token": 0, "output_cost_per_token": 0},
         "model_list[0].model_info: both prices are 0; a model is never served free"),
    ],
)  # fmt: skip
def test_bad_configured_prices_name_the_key(
    tmp_path: Path, model_info: dict[str, Any], problem: str
) -> None:
    path = write(tmp_path, {"model_list": [deployment("m", "openai/custom-zz", **model_info)]})
    problems = problems_of(path)
    assert len(problems) == 1
    assert problems[0].startswith(problem)
    assert load_priced_config(path, require_prices=False).prices.price_of("m") is None


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ({"credits": {"markupp": 2}}, "workforce_gateway.credits.markupp: Extra inputs"),
        ({"colour": "blue"}, "workforce_gateway.colour: Extra inputs"),
        ({"limits": {"max_request_tokens": 0}}, "workforce_gateway.limits.max_request_tokens: "),
        ({"credits": {"markup": "lots"}}, "workforce_gateway.credits.markup: "),
        ({"credits": {"usd_per_credit": 0}}, "workforce_gateway.credits.usd_per_credit: "),
        (["not", "a", "mapping"], "workforce_gateway: "),
    ],
)
def test_bad_plugin_settings_name_the_key(tmp_path: Path, section: Any, problem: str) -> None:
    model = deployment("m", "openai/custom-zz", input_cost_per_token=1, output_cost_per_token=1)
    path = write(tmp_path, {"model_list": [model], "workforce_gateway": section})
    problems = problems_of(path)
    assert len(problems) == 1
    assert problems[0].startswith(problem)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "model_list": [deployment("m", "openai/custom-zz", input_cost_per_token="x")],
            "workforce_gateway": {"credits": {"markupp": 2}, "limitz": {}},
        },
    )
    problems = problems_of(path)
    assert [p.split(":")[0] for p in problems] == [
        "workforce_gateway.credits.markupp",
        "workforce_gateway.limitz",
        "model_list[0] ('m')",
    ]


def test_plugin_settings_are_exact_decimals(tmp_path: Path) -> None:
    model = deployment("m", "openai/custom-zz", input_cost_per_token=1, output_cost_per_token=1)
    path = write(
        tmp_path,
        {"model_list": [model], "workforce_gateway": {"credits": {"markup": 1.1}}},
    )
    assert load_priced_config(path).plugin.credits.markup == Decimal("1.1")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("model_list: [\n  - model_name: x\n", "not valid YAML"),
        ("- just\n- a list\n", "the top level must be a mapping"),
        ("workforce_gateway: {}\n", "model_list: must list at least one model"),
        ("model_list: []\n", "model_list: must list at least one model"),
        (
            "model_list:\n  - model_name: x\n",
            "model_list[0] ('x'): litellm_params.model is missing",
        ),
        (
            "model_list:\n  - litellm_params: {model: openai/x}\n",
            "model_list[0]: needs a model_name",
        ),
    ],
)
def test_unusable_files_get_clear_errors(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text)
    problems = problems_of(path)
    assert any(problem in p for p in problems), problems
    assert all("Traceback" not in p for p in problems)


def test_missing_file(tmp_path: Path) -> None:
    assert problems_of(tmp_path / "nope.yaml") == [f"{tmp_path / 'nope.yaml'}: file not found"]


def test_reservations_cover_the_dearest_model_a_group_may_fall_back_to(tmp_path: Path) -> None:
    cheap = deployment("cheap", "x/cheap", input_cost_per_token=1e-7, output_cost_per_token=4e-7)
    mid = deployment("mid", "x/mid", input_cost_per_token=1e-6, output_cost_per_token=2e-6)
    dear = deployment("dear", "x/dear", input_cost_per_token=5e-7, output_cost_per_token=9e-6)
    path = write(
        tmp_path,
        {
            "model_list": [cheap, mid, dear],
            # cheap -> mid -> dear (transitively), and a cycle back that must not loop
            "router_settings": {"fallbacks": [{"cheap": ["mid"]}, {"mid": ["dear", "cheap"]}]},
        },
    )
    config = load_priced_config(path)
    covering = config.reservation_prices.price_of("cheap")
    assert covering is not None
    assert (covering.input_per_token, covering.output_per_token) == (
        Decimal("0.000001"),  # mid's input price
        Decimal("0.000009"),  # dear's output price
    )
    # what a call is debited when LiteLLM cannot price it stays the group's own price
    assert config.prices.price_of("cheap").output_per_token == Decimal("4E-7")
    # a group with no fallbacks reserves at its own price
    assert config.reservation_prices.price_of("dear") == config.prices.price_of("dear")


def test_the_portal_reads_our_section_alone_and_bad_keys_are_named(tmp_path: Path) -> None:
    from portal.config import load_plugin_settings

    # no model_list at all: the portal needs no price book
    good = write(tmp_path, {"workforce_gateway": {"credits": {"low_balance_credits": "2.5"}}})
    assert load_plugin_settings(good).credits.low_balance_credits == Decimal("2.5")
    bad = write(tmp_path, {"workforce_gateway": {"billing": {"plans": {"pro": {"nme": "x"}}}}})
    with pytest.raises(ConfigError) as caught:
        load_plugin_settings(bad)
    assert any(p.startswith("workforce_gateway.billing.plans.pro") for p in caught.value.problems)
