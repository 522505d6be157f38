"""Opt-in (WFG_TEST_IMAGE=1; needs root, buildah, PostgreSQL and Redis on loopback, a few
minutes): build deploy/Dockerfile daemonless and run the image. See docs/operations.md,
"Building without a Docker daemon"."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.deploy.artifacts import DEPLOY, ROOT

pytestmark = pytest.mark.skipif(
    os.environ.get("WFG_TEST_IMAGE") != "1" or shutil.which("buildah") is None,
    reason="opt-in: WFG_TEST_IMAGE=1 and buildah installed",
)


@pytest.mark.timeout(1200)
def test_image_builds_and_serves_as_non_root() -> None:
    env = {**os.environ, "LOCAL_BASE": os.environ.get("LOCAL_BASE", "1")}
    result = subprocess.run(
        [str(DEPLOY / "build-image.sh"), "--smoke"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    summary = "\n".join(
        line for line in result.stdout.splitlines() if line.startswith(("smoke:", "build-image:"))
    )
    assert result.returncode == 0, f"{summary}\n{result.stderr[-3000:]}"
    assert "smoke: runs as uid 10001" in summary
    assert "smoke: gateway ready" in summary and "smoke: portal ready" in summary
    for call in ("chat/completions", "completions", "responses", "messages"):
        assert f"smoke: streamed /v1/{call} answered" in summary
    assert "smoke: /v1/embeddings answered" in summary
    assert "both services stopped on SIGTERM" in summary
