"""Plans and packs in config.yaml: validated by `gateway-admin config check`, which names
every bad key; the price a payment used maps back to what it buys."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from portal.cli.main import main
from portal.config import ConfigError, load_config
from portal.config.billing_settings import BillingSettings
from portal.settings import PROJECT_ROOT


def config_with_billing(tmp_path: Path, billing: object) -> Path:
    config = yaml.safe_load((PROJECT_ROOT / "config.yaml").read_text(encoding="utf-8"))
    config["workforce_gateway"]["billing"] = billing
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_a_good_catalog_loads_and_maps_prices(tmp_path: Path) -> None:
    path = config_with_billing(
        tmp_path,
        {
            "plans": {
                "pro": {"name": "Pro", "stripe_price_id": "price_P1", "credits_per_period": 50}
            },
            "packs": {"top-up": {"name": "Top up", "stripe_price_id": "price_T1", "credits": 2.5}},
        },
    )
    catalog = load_config(path).plugin.billing
    assert catalog.plans["pro"].credits_units == 50 * 10**9
    # a trial and a 100%-off period grant nothing unless the plan says so
    assert (
        catalog.plans["pro"].trial_credits_units,
        catalog.plans["pro"].free_period_credits_units,
    ) == (0, 0)
    assert catalog.packs["top-up"].credits_units == 2_500_000_000
    assert (catalog.plan_for_price("price_P1"), catalog.pack_for_price("price_T1")) == (
        "pro",
        "top-up",
    )
    assert catalog.plan_for_price("price_T1") is None


def test_the_shipped_config_has_an_empty_catalog() -> None:
    assert load_config(PROJECT_ROOT / "config.yaml").plugin.billing == BillingSettings()


@pytest.mark.parametrize(
    ("billing", "named"),
    [
        (
            {
                "plans": {
                    "pro": {"name": "Pro", "stripe_price_id": "prod_1", "credits_per_period": 5}
                }
            },
            "workforce_gateway.billing.plans.pro.stripe_price_id",
        ),
        (
            {
                "plans": {
                    "pro": {"name": "Pro", "stripe_price_id": "price_1", "credits_per_period": 0}
                }
            },
            "workforce_gateway.billing.plans.pro.credits_per_period",
        ),
        (
            {"packs": {"x": {"name": "X", "stripe_price_id": "price_1", "credit": 5}}},
            "workforce_gateway.billing.packs.x.credit",  # a typo is not ignored
        ),
        (
            {
                "packs": {
                    "x": {"name": "X", "stripe_price_id": "price_1", "credits": "0.0000000001"}
                }
            },
            "workforce_gateway.billing.packs.x.credits",
        ),
        (
            {"plan": {}},
            "workforce_gateway.billing.plan",
        ),
        (
            {
                "plans": {
                    "pro": {
                        "name": "Pro",
                        "stripe_price_id": "price_1",
                        "credits_per_period": 5,
                        "trial_credits": -1,
                    }
                }
            },
            "workforce_gateway.billing.plans.pro.trial_credits",
        ),
        (
            {
                "plans": {
                    "a": {"name": "A", "stripe_price_id": "price_1", "credits_per_period": 1}
                },
                "packs": {"b": {"name": "B", "stripe_price_id": "price_1", "credits": 1}},
            },
            "packs.b.stripe_price_id: price_1 is already used by plans.a",
        ),
        (
            {
                "plans": {
                    "free": {"name": "F", "stripe_price_id": "price_1", "credits_per_period": 1}
                }
            },
            "plans.free",
        ),
    ],
)
def test_config_check_names_the_bad_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], billing: object, named: str
) -> None:
    path = config_with_billing(tmp_path, billing)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert any(named in problem for problem in caught.value.problems), caught.value.problems

    assert main(["config", "check", "--config", str(path)]) == 1
    assert named in capsys.readouterr().err
