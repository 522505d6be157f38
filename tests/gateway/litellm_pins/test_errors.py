"""errors.py: LiteLLM's exceptions carry the status the client gets, never upstream text."""

from __future__ import annotations

import pytest

from gateway_plugins import litellm_bridge


@pytest.mark.parametrize(
    ("status", "client_sees"), [(400, 400), (404, 404), (429, 429), (500, 500), (503, 503)]
)
def test_upstream_errors_map_to_statuses_without_upstream_text(
    status: int, client_sees: int
) -> None:
    import litellm

    error = litellm.APIError(
        status_code=status, message="secret upstream detail", llm_provider="openai", model="m"
    )
    failure = litellm_bridge.upstream_failure(error)
    assert failure.status == client_sees
    if status >= 500 or status == 404:
        assert "secret upstream detail" not in failure.message


def test_a_litellm_timeout_is_a_504() -> None:
    import litellm

    error = litellm.Timeout(message="slow upstream", model="m", llm_provider="openai")
    failure = litellm_bridge.upstream_failure(error)
    assert failure.status in (408, 504)
    assert "slow upstream" not in failure.message
