"""More than one gateway worker needs Redis (rate limits and the auth cache are shared
through it): `gateway-admin config check` refuses the combination."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from portal.cli.main import main
from portal.settings import get_settings


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "OPENROUTER_API_KEY"):
        monkeypatch.setenv(name, "sk-test-not-a-real-key")  # the shipped config's keys
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def check(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], **env: str):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    code = main(["config", "check"])
    out, err = capsys.readouterr()
    return code, out, err


def test_several_workers_without_redis_are_refused(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = check(environment, capsys, GATEWAY_WORKERS="4")
    assert code == 1 and out == ""
    assert err.startswith("gateway-admin: error: GATEWAY_WORKERS=4 needs REDIS_URL")
    assert len(err.splitlines()) == 1


def test_several_workers_with_redis_pass_and_one_worker_needs_none(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check(environment, capsys, GATEWAY_WORKERS="1")[0] == 0
    code, out, err = check(
        environment, capsys, GATEWAY_WORKERS="4", REDIS_URL="redis://127.0.0.1:6379/0"
    )
    assert code == 0 and ": ok (" in out
    # metrics of 4 workers need a shared directory: a warning, not a refusal
    assert "PROMETHEUS_MULTIPROC_DIR" in err
