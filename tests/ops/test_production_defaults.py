"""With WFG_ENV=production the services refuse to start on what is unsafe, naming every
problem at once, and `gateway-admin config check` reports the same list; the portal sends
HSTS in production."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from portal.cli.main import main
from portal.settings import PROJECT_ROOT, Settings, get_settings
from portal.web.app import create_app

METRICS_TOKEN = secrets.token_hex(32)
# The shipped config.yaml's os.environ/ keys: unset, `config check` names each model.
PROVIDER_KEYS = {
    name: f"sk-{secrets.token_hex(8)}"
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "OPENROUTER_API_KEY")
}
SAFE = {
    **PROVIDER_KEYS,
    "WFG_ENV": "production",
    "DATABASE_URL": "postgresql://wfg:Vq7-long-real-password@db.internal:5432/wfg",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "SMTP_URL": "smtp://mailer:An0ther-real-one@mail.internal:587?starttls=true",
    "METRICS_TOKEN": METRICS_TOKEN,
    "GATEWAY_WORKERS": "2",
    "PROMETHEUS_MULTIPROC_DIR": "/tmp/wfg-metrics",
}
OURS = (
    *SAFE,
    "WFG_DATABASE_URL",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "OPENROUTER_API_KEY",
)
# What an operator gets wrong -> words the refusal must contain.
MISTAKES = {
    "sqlite": ({"DATABASE_URL": ""}, "the database is SQLite"),
    "no smtp": ({"SMTP_URL": ""}, "SMTP_URL is not set"),
    "default db password": (
        {"DATABASE_URL": "postgresql://wfg:REPLACE_ME@db.internal:5432/wfg"},
        "DATABASE_URL still holds a placeholder or default secret",
    ),
    "default stripe key": (
        {"STRIPE_SECRET_KEY": "sk_live_changeme", "STRIPE_WEBHOOK_SECRET": "whsec_8f3a9c0d1e"},
        "STRIPE_SECRET_KEY still holds a placeholder",
    ),
    "missing webhook secret": (
        {"STRIPE_SECRET_KEY": "sk_live_51Habc0123456789"},
        "STRIPE_SECRET_KEY is set without STRIPE_WEBHOOK_SECRET",
    ),
    "workers without redis": ({"REDIS_URL": ""}, "GATEWAY_WORKERS=2 needs REDIS_URL"),
    "open metrics": ({"METRICS_TOKEN": ""}, "METRICS_TOKEN is not set"),
    "weak metrics token": ({"METRICS_TOKEN": "short"}, "METRICS_TOKEN is shorter than 16"),
}


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in OURS:
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def config_check(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env: dict[str, str]
) -> tuple[int, str, str]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    code = main(["config", "check"])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_safe_production_environment_passes(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = config_check(environment, capsys, SAFE)
    assert code == 0, err
    assert ": ok (" in out


@pytest.mark.parametrize("mistake", MISTAKES, ids=list(MISTAKES))
def test_each_unsafe_setting_is_refused_by_name(
    mistake: str, environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    change, expected = MISTAKES[mistake]
    code, out, err = config_check(environment, capsys, {**SAFE, **change})
    assert code == 1 and out == ""
    assert err.startswith("gateway-admin: error: WFG_ENV=production refuses to start, 1 problem:")
    assert expected in err
    assert len(err.splitlines()) == 1
    for value in change.values():  # a secret is named, never shown
        if value and value != "short":
            assert value not in err


def everything_wrong() -> dict[str, str]:
    return {
        **PROVIDER_KEYS,
        "WFG_ENV": "production",
        "GATEWAY_WORKERS": "3",
        "PROMETHEUS_MULTIPROC_DIR": "/tmp/wfg-metrics",
        "OPENAI_API_KEY": "REPLACE_ME",
    }


def test_every_problem_is_listed_at_once(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = config_check(environment, capsys, everything_wrong())
    assert code == 1 and len(err.splitlines()) == 1
    assert "refuses to start, 5 problems:" in err
    for words in (
        "(1) the database is SQLite",
        "SMTP_URL is not set",
        "OPENAI_API_KEY still holds a placeholder",
        "GATEWAY_WORKERS=3 needs REDIS_URL",
        "(5) METRICS_TOKEN is not set",
    ):
        assert words in err


def test_development_keeps_its_embedded_defaults(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = config_check(environment, capsys, {"WFG_ENV": "development", **PROVIDER_KEYS})
    assert code == 0 and ": ok (" in out, err


def test_serve_refuses_before_starting_anything(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in everything_wrong().items():
        environment.setenv(name, value)
    get_settings.cache_clear()
    assert main(["serve", "gateway"]) == 1
    gateway = capsys.readouterr().err
    assert "GATEWAY_WORKERS=3 needs REDIS_URL" in gateway and "SMTP_URL" not in gateway
    assert main(["serve", "portal"]) == 1
    portal = capsys.readouterr().err
    assert "refuses to start, 4 problems:" in portal
    assert "SMTP_URL is not set" in portal and "GATEWAY_WORKERS" not in portal
    assert "starting on" not in gateway + portal


def test_the_portal_process_refuses_to_start(tmp_path) -> None:
    """`python -m portal.web.server` (what `serve portal` runs) exits with the list."""
    env = {k: v for k, v in os.environ.items() if k not in OURS}
    env |= {**everything_wrong(), "WFG_VAR_DIR": str(tmp_path), "PORTAL_PORT": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "portal.web.server"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().startswith("WFG_ENV=production refuses to start, 4 problems:")
    assert "SMTP_URL is not set" in result.stderr and "METRICS_TOKEN is not set" in result.stderr
    assert "Uvicorn running" not in result.stderr
    assert not (tmp_path / "workforce.db").exists()


@pytest.mark.parametrize("environment_name", ["production", "development"])
async def test_hsts_is_sent_in_production_only(environment_name: str, tmp_path) -> None:
    settings = Settings.from_env(
        {"WFG_VAR_DIR": str(tmp_path), "PORTAL_PUBLIC_URL": "https://portal.example.com"}
    )
    settings = settings.model_copy(update={"environment": environment_name})
    app = create_app(settings, background_jobs=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://portal.example.com"
    ) as client:
        paths = ("/healthz", "/api/openapi.json", "/static/style.css", "/nowhere")
        responses = [await client.get(path) for path in paths]
    assert [r.status_code for r in responses] == [200, 200, 200, 404]
    for response in responses:
        hsts = response.headers.get("strict-transport-security")
        if environment_name == "production":
            assert hsts == "max-age=63072000; includeSubDomains", response.url
        else:
            assert hsts is None
