"""deploy/compose.yaml: valid against the Compose Specification's JSON schema (offline:
the copy vendored by check-jsonschema) and true to the app's contracts."""

from __future__ import annotations

import copy
import json
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
import pytest

from tests.deploy.artifacts import (
    GATEWAY_PORT,
    PORTAL_PORT,
    READINESS_PATH,
    ROOT,
    app_services,
    compose,
)


def compose_schema() -> dict[str, Any]:
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    return json.loads(vendored.read_text(encoding="utf-8"))


@cache
def validator() -> jsonschema.protocols.Validator:
    schema = compose_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_compose_file_is_valid_compose_spec() -> None:
    errors = sorted(validator().iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_schema_validation_catches_a_misspelt_or_mistyped_key() -> None:
    misspelt = copy.deepcopy(compose())
    misspelt["services"]["gateway"]["helthcheck"] = misspelt["services"]["gateway"].pop(
        "healthcheck"
    )
    mistyped = copy.deepcopy(compose())
    mistyped["services"]["migrate"]["depends_on"]["postgres"]["condition"] = "finished"
    for broken in (misspelt, mistyped):
        assert list(validator().iter_errors(broken))


def test_stack_has_the_services_an_operator_needs() -> None:
    services = compose()["services"]
    assert {"gateway", "portal", "migrate", "postgres", "redis", "retention"} <= services.keys()
    assert set(app_services()) == {"gateway", "portal", "migrate", "retention"}


def test_services_start_only_after_migrations_succeeded() -> None:
    services = compose()["services"]
    migrate = services["migrate"]
    assert migrate["command"] == ["gateway-admin", "db", "upgrade"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("gateway", "portal"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"][0] == "CMD"


@pytest.mark.parametrize(("service", "port"), [("gateway", GATEWAY_PORT), ("portal", PORTAL_PORT)])
def test_services_listen_where_ports_and_health_checks_look(service: str, port: int) -> None:
    svc = compose()["services"][service]
    env = svc["environment"]
    assert svc["command"] == ["gateway-admin", "serve", service]
    assert env[f"{service.upper()}_PORT"] == str(port)
    # the default 127.0.0.1 would be unreachable from the published port
    assert env[f"{service.upper()}_HOST"] == "0.0.0.0"
    assert [p.rsplit(":", 1)[-1] for p in svc["ports"]] == [str(port)]
    assert svc["healthcheck"]["test"] == [
        "CMD",
        "python",
        "/usr/local/bin/wfg-healthcheck",
        service,
        READINESS_PATH,
    ]
    assert svc["restart"] == "unless-stopped"


def test_published_ports_stay_on_loopback_behind_a_tls_proxy() -> None:
    for name in ("gateway", "portal"):
        for mapping in compose()["services"][name]["ports"]:
            assert mapping.startswith("127.0.0.1:"), f"{name} publishes {mapping} openly"


def test_gateway_gets_time_to_finish_in_flight_calls() -> None:
    gateway = compose()["services"]["gateway"]
    graceful = int(gateway["environment"]["GATEWAY_GRACEFUL_SECONDS"])
    grace = int(gateway["stop_grace_period"].removesuffix("s"))
    assert grace >= graceful + 10


def test_app_containers_share_postgres_and_redis_and_mount_config_read_only() -> None:
    for name, svc in app_services().items():
        env = svc["environment"]
        assert env["DATABASE_URL"].startswith("postgresql://"), name
        assert "@postgres:5432/" in env["DATABASE_URL"], name
        assert env["REDIS_URL"] == "redis://redis:6379/0", name
        assert env["WFG_ENV"] == "production", name
        config = [v for v in svc["volumes"] if isinstance(v, dict)]
        assert len(config) == 1
        assert config[0]["target"] == env["WFG_CONFIG"]
        assert config[0]["read_only"] is True
        assert (ROOT / "deploy" / config[0]["source"]).resolve() == ROOT / "config.yaml"
        assert svc["env_file"] == "../.env"
        assert svc["read_only"] is True
        assert svc["cap_drop"] == ["ALL"]


def test_the_usage_spool_survives_a_gateway_restart() -> None:
    gateway = compose()["services"]["gateway"]
    var_dir = gateway["environment"]["WFG_VAR_DIR"]
    named = [v for v in gateway["volumes"] if isinstance(v, str) and v.endswith(f":{var_dir}")]
    assert named and named[0].split(":")[0] in compose()["volumes"]


def test_retention_is_a_one_shot_behind_a_profile() -> None:
    retention = compose()["services"]["retention"]
    assert retention["profiles"] == ["retention"]
    assert retention["command"] == ["gateway-admin", "retention", "run"]
    assert retention["restart"] == "no"


def test_database_password_is_never_written_in_the_file() -> None:
    postgres = compose()["services"]["postgres"]
    assert postgres["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    for svc in app_services().values():
        assert "${POSTGRES_PASSWORD:?" in svc["environment"]["DATABASE_URL"]
