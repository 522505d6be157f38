"""`gateway-admin config check` catches what config.yaml would break at run time: every
problem on its own line in one run (fallbacks to undefined models, chains written as
strings, provider keys unset where it runs, YAML syntax with line and column), through
the real CLI process. It reads LiteLLM's facts without importing LiteLLM; the last tests
keep those readings equal to LiteLLM's own answers."""

from __future__ import annotations

import inspect
from pathlib import Path

import litellm
import pytest
import yaml

from gateway_plugins import litellm_bridge
from portal.config import ConfigError, routing
from portal.credits.cost_map import (
    FAST_PROVIDERS,
    _cost_map,
    bundled_cost_map_entry,
    bundled_cost_map_price,
)
from portal.credits.pricing import load_priced_config
from portal.settings import PROJECT_ROOT
from tests.cli.conftest import Admin

KEYS = {
    name: "sk-test-not-a-real-key"
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "OPENROUTER_API_KEY")
}
UNSET = {"WFG_TEST_UNSET_KEY": ""}  # empty counts as unset, as LiteLLM then sends no key


def shipped_with(tmp_path: Path, **router_settings: object) -> Path:
    """The shipped config.yaml with router_settings changed as an operator would."""
    raw = yaml.safe_load((PROJECT_ROOT / "config.yaml").read_text())
    raw["router_settings"].update(router_settings)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_the_shipped_config_passes(offline_admin: Admin) -> None:
    result = offline_admin("config", "check", **KEYS)
    assert result.code == 0, result.stderr
    assert result.stdout == (
        f"{PROJECT_ROOT / 'config.yaml'}: ok (6 models: claude-haiku-4-5, gemini-2.5-flash, "
        "gpt-4.1-nano, gpt-4o-mini, openrouter-gpt-4o-mini, text-embedding-3-small)\n"
    )
    assert result.stderr == ""


def test_an_unset_provider_key_names_the_models_and_the_variable(offline_admin: Admin) -> None:
    result = offline_admin("config", "check", **{**KEYS, "ANTHROPIC_API_KEY": ""})
    assert result.code == 1 and result.stdout == ""
    assert result.stderr == (
        "gateway-admin: error: model_list[3] ('claude-haiku-4-5'): litellm_params.api_key: "
        "ANTHROPIC_API_KEY is not set in this environment (os.environ/ANTHROPIC_API_KEY)\n"
    )


def test_every_problem_is_reported_in_one_run(offline_admin: Admin, tmp_path: Path) -> None:
    path = shipped_with(
        tmp_path,
        fallbacks=[{"gpt-4.1-nano": ["gpt-4o-mini-typo"]}, {"gpt-4o-mini": "claude-haiku-4-5"}],
        context_window_fallbacks=[{"gpt-4.1-mini": ["gpt-4o-mini"]}],
        content_policy_fallbacks={"gpt-4o-mini": ["claude-haiku-4-5"]},
        retry_policy_typo=1,
    )
    raw = yaml.safe_load(path.read_text())
    raw["model_list"][1]["litellm_params"]["api_key"] = "os.environ/WFG_TEST_UNSET_KEY"
    raw["model_list"].append({"model_name": "orphan"})
    path.write_text(yaml.safe_dump(raw, sort_keys=False))

    result = offline_admin("config", "check", "--config", str(path), **KEYS, **UNSET)

    assert result.code == 1 and result.stdout == ""
    fallbacks, window = "router_settings.fallbacks", "router_settings.context_window_fallbacks"
    assert result.stderr.splitlines() == [
        f"gateway-admin: error: {line}"
        for line in (
            f"{fallbacks}[0].gpt-4.1-nano: falls back to 'gpt-4o-mini-typo', "
            "which is not a model_name in model_list",
            f"{fallbacks}[1].gpt-4o-mini: must be a list of model names ([claude-haiku-4-5]), "
            "not a string",
            f"{window}[0]: falls back from 'gpt-4.1-mini', which is not a model_name in model_list",
            "router_settings.content_policy_fallbacks: must be a list of "
            "{model: [fallback, ...]} entries",
            "model_list[6] ('orphan'): litellm_params.model is missing",
            "router_settings.retry_policy_typo: not a litellm.Router setting",
            "model_list[1] ('gpt-4o-mini'): litellm_params.api_key: WFG_TEST_UNSET_KEY "
            "is not set in this environment (os.environ/WFG_TEST_UNSET_KEY)",
        )
    ]


def test_a_yaml_syntax_error_says_where(offline_admin: Admin, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "model_list:\n"
        "  - model_name: gpt-4o-mini\n"
        "    litellm_params:\n"
        "      model: openai/gpt-4o-mini\n"
        '      api_key: "os.environ/OPENAI_API_KEY\n'
    )
    tab = tmp_path / "tab.yaml"
    tab.write_text("model_list:\n  - model_name: a\n\tlitellm_params: {}\n")
    quote, tabbed = offline_admin.many(
        ("config", "check", "--config", str(path)), ("config", "check", "--config", str(tab))
    )
    assert quote.failed() == (
        f"gateway-admin: error: {path}: not valid YAML at line 6, column 1: found unexpected "
        "end of stream (while scanning a quoted scalar at line 5, column 16)"
    )
    assert tabbed.failed() == (
        f"gateway-admin: error: {tab}: not valid YAML at line 3, column 1: "
        "found character '\\t' that cannot start any token"
    )


def test_serve_refuses_a_broken_fallback_before_starting(
    offline_admin: Admin, tmp_path: Path
) -> None:
    path = shipped_with(tmp_path, fallbacks=[{"gpt-4o-mini": ["gpt-4o-mini-typo"]}])
    result = offline_admin("serve", "gateway", WFG_CONFIG=str(path), GATEWAY_PORT="1", **KEYS)
    assert result.code == 1
    assert "falls back to 'gpt-4o-mini-typo'" in result.stderr
    assert "starting on" not in result.stdout


# --- what the check reads without importing LiteLLM equals what LiteLLM says ---


def test_the_router_settings_read_from_source_are_the_routers() -> None:
    signature = set(inspect.signature(litellm_bridge.Router.__init__).parameters) - {"self"}
    assert routing.router_parameters() == signature


CACHE_AND_LIMIT_KEYS = (
    "cache_read_input_token_cost",
    "cache_creation_input_token_cost",
    "max_input_tokens",
    "max_output_tokens",
)


@pytest.mark.parametrize("provider", sorted(FAST_PROVIDERS))
def test_bundled_prices_equal_litellms(provider: str) -> None:
    names = {
        f"{provider}/{key.removeprefix(provider + '/')}"
        for key, entry in _cost_map().items()
        if isinstance(entry, dict) and entry.get("litellm_provider") == provider
    }
    for model in sorted(names):
        listed = bundled_cost_map_price(model)
        if listed is None:
            continue  # left to LiteLLM itself
        info = litellm.get_model_info(model=model)
        assert listed == tuple(
            type(listed[0])(str(info[key]))
            for key in ("input_cost_per_token", "output_cost_per_token")
        ), model
        entry = bundled_cost_map_entry(model)  # the cache rates and limits /v1/models shows
        assert entry is not None
        for key in CACHE_AND_LIMIT_KEYS:
            assert entry.get(key) == info.get(key), (model, key)


def test_the_shipped_models_are_priced_without_litellm() -> None:
    for model in ("openai/gpt-4.1-nano", "anthropic/claude-haiku-4-5", "gemini/gemini-2.5-flash"):
        assert bundled_cost_map_price(model) is not None, model


def test_the_gateways_start_refuses_a_fallback_to_an_undefined_model(tmp_path: Path) -> None:
    """What `gateway_plugins.runtime.open_runtime` loads before it builds the Router."""
    path = shipped_with(tmp_path, fallbacks=[{"gpt-4o-mini": ["gpt-4o-mini-typo"]}])
    with pytest.raises(ConfigError) as refused:
        load_priced_config(path, require_prices=False)
    assert refused.value.problems == [
        "router_settings.fallbacks[0].gpt-4o-mini: falls back to 'gpt-4o-mini-typo', "
        "which is not a model_name in model_list"
    ]
