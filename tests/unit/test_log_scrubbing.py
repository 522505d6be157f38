"""Log records keep their level and place but never request content: LiteLLM's text is
withheld once requests may arrive, and exception messages are withheld everywhere."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from gateway_plugins import log_scrubbing

CANARY = "canary-7f3a9 the user's secret plan"


def record(name: str, level: int, msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError(f"upstream said: {CANARY}")
        except ValueError:
            exc_info = sys.exc_info()
    made = logging.LogRecord(name, level, "/x/litellm/proxy/utils.py", 42, msg, args, exc_info)
    log_scrubbing._scrub_record(made)
    return made


def formatted(made: logging.LogRecord) -> str:
    return logging.Formatter("%(levelname)s %(name)s %(message)s").format(made)


@pytest.fixture
def serving(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(log_scrubbing, "_serving", True)


@pytest.mark.parametrize("level", [logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR])
def test_litellm_text_is_withheld_at_every_level_while_serving(serving: None, level: int) -> None:
    text = formatted(record("LiteLLM Proxy", level, "Exception: %s", CANARY))
    assert CANARY not in text
    assert "LiteLLM Proxy" in text and "utils:42" in text and "withheld" in text


def test_unknown_loggers_are_withheld_too(serving: None) -> None:
    assert CANARY not in formatted(record("asyncio", logging.ERROR, "Task failed: %r", CANARY))


def test_exceptions_keep_their_frames_but_not_their_message(serving: None) -> None:
    text = formatted(record("portal.usage", logging.ERROR, "settlement failed", exc=True))
    assert CANARY not in text
    assert "settlement failed" in text  # our own loggers' text is content-free by design
    assert "Traceback" in text and "ValueError: [message withheld]" in text
    assert "test_log_scrubbing.py" in text  # where it happened is still there


def test_before_requests_arrive_litellm_warnings_keep_their_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(log_scrubbing, "_serving", False)
    warning = formatted(record("LiteLLM", logging.WARNING, "set %s to silence this", "X_LIMIT"))
    assert "set X_LIMIT to silence this" in warning
    # debug and info lines at start-up can dump settings and keys: still withheld
    debug = formatted(record("LiteLLM", logging.DEBUG, "config: %s", "sk-provider-key"))
    assert "sk-provider-key" not in debug
    log_scrubbing.requests_may_arrive()
    later = formatted(record("LiteLLM", logging.WARNING, "upstream error: %s", CANARY))
    assert CANARY not in later


WARNING_PROGRAM = f"""
import logging, warnings
from gateway_plugins import log_scrubbing
logging.basicConfig(format="%(levelname)s %(name)s %(message)s")
log_scrubbing.install_log_scrubbing()
log_scrubbing.requests_may_arrive()
warnings.warn("Expected `list[Logprob]`: input_value='{CANARY}'", UserWarning, stacklevel=1)
"""


def test_a_python_warning_never_writes_content_to_stderr() -> None:
    """pydantic's serialization warnings quote the value (a reply's last characters):
    warnings are logged, so they go through the same scrubbing as every log line."""
    done = subprocess.run(
        [sys.executable, "-c", WARNING_PROGRAM],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert CANARY not in done.stderr + done.stdout
    assert "WARNING py.warnings" in done.stderr and "withheld" in done.stderr
