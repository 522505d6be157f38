"""One settings object (issue 10, point 6): read from the environment and `.env` (the
environment wins), every variable name and default kept, bad values refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from portal.settings import (
    ENV_FILE_VARIABLE,
    PROJECT_ROOT,
    InvalidSettings,
    Settings,
    environment_variables,
    get_settings,
)

# The contract operators' scripts rely on: with nothing set, these values.
DEFAULTS = {
    "var_dir": PROJECT_ROOT / "var",
    "database_url": f"sqlite:///{PROJECT_ROOT / 'var' / 'workforce.db'}",
    "redis_url": None,
    "config_path": PROJECT_ROOT / "config.yaml",
    "environment": "development",
    "gateway_host": "127.0.0.1",
    "gateway_port": 4000,
    "gateway_workers": 1,
    "portal_host": "127.0.0.1",
    "portal_port": 8080,
    "portal_workers": 1,
    "forwarded_allow_ips": "127.0.0.1,::1",
    "gateway_public_url": "http://localhost:4000",
    "portal_public_url": "http://localhost:8080",
    "smtp_url": None,
    "mail_from": "WorkForce Gateway <no-reply@localhost>",
    "stripe_secret_key": None,
    "stripe_webhook_secret": None,
    "stripe_api_base": None,
    "log_level": "info",
    "log_format": "text",
    "litellm_log_level": "WARNING",
    "metrics_token": None,
    "auth_cache_ttl_seconds": 30,
    "gateway_graceful_seconds": 30,
    "gateway_drain_seconds": 20,
    "fast_paths_off": "",
    "bridge_without": "",
    "fairness_off": "",
}


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No variable of ours set, `.env` read, the working directory an empty temp dir."""
    for name in environment_variables():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(ENV_FILE_VARIABLE, raising=False)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_every_default_is_kept() -> None:
    settings = Settings.from_env({})
    assert {field: getattr(settings, field) for field in DEFAULTS} == DEFAULTS
    assert set(DEFAULTS) == set(Settings.model_fields), "add the new field to DEFAULTS"


def test_defaults_follow_the_values_they_derive_from() -> None:
    settings = Settings.from_env(
        {"WFG_VAR_DIR": "/srv/wfg", "GATEWAY_PORT": "4100", "PORTAL_PORT": "8100"}
        | {"WFG_ENV": "production", "DATABASE_URL": ""}  # empty means unset
    )
    assert settings.database_url == "sqlite:////srv/wfg/workforce.db"
    assert settings.gateway_public_url == "http://localhost:4100"
    assert settings.portal_public_url == "http://localhost:8100"
    assert settings.log_format == "json" and settings.is_production
    assert settings.spool_dir == Path("/srv/wfg/spool")


def test_wfg_database_url_wins_over_database_url() -> None:
    both = {"DATABASE_URL": "postgresql://a/db", "WFG_DATABASE_URL": "postgresql://b/db"}
    assert Settings.from_env(both).database_url == "postgresql://b/db"
    assert Settings.from_env({"DATABASE_URL": "postgresql://a/db"}).database_url.endswith("a/db")


def test_a_mapping_is_all_from_env_reads(clean_environment: pytest.MonkeyPatch) -> None:
    Path(".env").write_text("GATEWAY_PORT=4444\n")
    clean_environment.setenv("PORTAL_PORT", "8888")
    settings = Settings.from_env({})
    assert (settings.gateway_port, settings.portal_port) == (4000, 8080)


def test_dotenv_in_the_working_directory_is_read(
    clean_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    Path(".env").write_text(
        "# a newcomer's .env\nWFG_VAR_DIR=./state\nMETRICS_TOKEN=from-the-file-0123456789\n"
        "REDIS_URL=\nOPENAI_API_KEY=sk-not-ours\n"
    )
    settings = Settings.from_env()
    assert settings.var_dir == Path("state")
    assert settings.database_url == "sqlite:///state/workforce.db"
    assert settings.metrics_token == "from-the-file-0123456789"
    assert settings.redis_url is None


def test_the_environment_beats_dotenv(clean_environment: pytest.MonkeyPatch) -> None:
    Path(".env").write_text("GATEWAY_PORT=4444\nLOG_LEVEL=debug\nDATABASE_URL=sqlite:///file.db\n")
    clean_environment.setenv("GATEWAY_PORT", "4555")
    clean_environment.setenv("WFG_DATABASE_URL", "sqlite:///env.db")
    settings = Settings.from_env()
    assert settings.gateway_port == 4555
    assert settings.log_level == "debug"  # not in the environment: the file's
    assert settings.database_url == "sqlite:///env.db"


def test_get_settings_reads_dotenv_once(clean_environment: pytest.MonkeyPatch) -> None:
    Path(".env").write_text("PORTAL_PORT=8181\n")
    get_settings.cache_clear()
    try:
        assert get_settings().portal_port == 8181
        Path(".env").write_text("PORTAL_PORT=8282\n")
        assert get_settings() is get_settings() and get_settings().portal_port == 8181
    finally:
        get_settings.cache_clear()


def test_wfg_env_file_names_another_file_or_none(
    clean_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    Path(".env").write_text("PORTAL_PORT=8181\n")
    (tmp_path / "staging.env").write_text("PORTAL_PORT=8282\n")
    clean_environment.setenv(ENV_FILE_VARIABLE, str(tmp_path / "staging.env"))
    assert Settings.from_env().portal_port == 8282
    clean_environment.setenv(ENV_FILE_VARIABLE, "")
    assert Settings.from_env().portal_port == 8080


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GATEWAY_PORT": "http"}, "GATEWAY_PORT must be a port number, got 'http'"),
        ({"PORTAL_PORT": "70000"}, "PORTAL_PORT must be between 1 and 65535, got 70000"),
        ({"PORTAL_PORT": "0"}, "PORTAL_PORT must be between 1 and 65535, got 0"),
        ({"GATEWAY_WORKERS": "0"}, "GATEWAY_WORKERS must be at least 1, got 0"),
        ({"PORTAL_WORKERS": "two"}, "PORTAL_WORKERS must be a whole number, got 'two'"),
        ({"AUTH_CACHE_TTL_SECONDS": "1.5"}, "AUTH_CACHE_TTL_SECONDS must be a whole number"),
        ({"GATEWAY_GRACEFUL_SECONDS": "-1"}, "GATEWAY_GRACEFUL_SECONDS must be at least 1"),
        ({"GATEWAY_DRAIN_SECONDS": "0"}, "GATEWAY_DRAIN_SECONDS must be at least 1, got 0"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT must be json or text, got 'xml'"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL must be one of critical, error, warning, info"),
    ],
)
def test_bad_values_are_refused_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidSettings) as refused:
        Settings.from_env(env)
    assert message in str(refused.value)
    assert isinstance(refused.value, SystemExit)  # a server stops with the one line
    assert "\n" not in str(refused.value) and "validation error" not in str(refused.value)


def test_every_bad_value_is_named_at_once(clean_environment: pytest.MonkeyPatch) -> None:
    Path(".env").write_text("GATEWAY_PORT=http\n")
    clean_environment.setenv("LOG_FORMAT", "xml")
    with pytest.raises(InvalidSettings) as refused:
        Settings.from_env()
    assert str(refused.value) == (
        "GATEWAY_PORT must be a port number, got 'http'; LOG_FORMAT must be json or text, got 'xml'"
    )


def test_unknown_litellm_levels_fall_back_to_warning() -> None:
    assert Settings.from_env({"LITELLM_LOG": "debug"}).litellm_log_level == "DEBUG"
    assert Settings.from_env({"LITELLM_LOG": "chatty"}).litellm_log_level == "WARNING"


def test_secrets_stay_out_of_repr() -> None:
    settings = Settings.from_env(
        {
            "STRIPE_SECRET_KEY": "sk_x1",
            "STRIPE_WEBHOOK_SECRET": "whsec_x2",
            "METRICS_TOKEN": "mtok_x3",
        }
    )
    for secret in ("sk_x1", "whsec_x2", "mtok_x3"):
        assert secret not in repr(settings) and secret not in str(settings)
