"""deploy/Dockerfile: built from the lock, non-root, nothing secret, and .dockerignore
lets through exactly what it copies."""

from __future__ import annotations

import fnmatch
import re

from tests.deploy.artifacts import (
    DOCKERIGNORE,
    ROOT,
    dockerfile_instructions,
    dockerfile_stages,
    image_user_id,
)


def _runs(stage: str) -> list[str]:
    return [args for instruction, args in dockerfile_stages()[stage] if instruction == "RUN"]


def test_builder_installs_exactly_the_lock_without_dev_dependencies() -> None:
    installs = [run for run in _runs("builder") if "uv " in run or "pip " in run]
    assert installs, "the builder installs nothing"
    for run in installs:
        assert "uv sync" in run, f"install only from the lock: {run}"
        assert "--locked" in run and "--no-dev" in run, run
    assert any("--no-editable" in run for run in installs), "runtime needs the venv only"
    for stage in dockerfile_stages():
        assert not [r for r in _runs(stage) if re.search(r"\bpip3? install\b", r)], stage


def test_runtime_is_slim_python_with_the_virtualenv_only() -> None:
    stages = dockerfile_stages()
    assert list(stages)[-1] == "runtime"
    from_args = stages["runtime"][0][1].split()
    assert from_args[0] == "${PYTHON_IMAGE}"
    default = next(
        a.split("=", 1)[1]
        for instruction, a in dockerfile_instructions()
        if instruction == "ARG" and a.startswith("PYTHON_IMAGE=")
    )
    assert default.startswith("python:3.11-slim")
    copies = [a for instruction, a in stages["runtime"] if instruction == "COPY"]
    assert "--from=builder /app/.venv /app/.venv" in copies
    assert not [c for c in copies if "uv" in c.split()[-1]], "no uv in the runtime image"


def test_image_runs_as_a_non_root_user() -> None:
    assert image_user_id() >= 1000


def test_image_defaults_match_the_app_contracts() -> None:
    env = " ".join(a for instruction, a in dockerfile_stages()["runtime"] if instruction == "ENV")
    for setting in (
        "LITELLM_LOCAL_MODEL_COST_MAP=True",
        "GATEWAY_HOST=0.0.0.0",
        "PORTAL_HOST=0.0.0.0",
        "GATEWAY_PORT=4000",
        "PORTAL_PORT=8080",
        "WFG_CONFIG=/etc/workforce-gateway/config.yaml",
    ):
        assert setting in env.split(), setting
    runtime = dict(dockerfile_stages()["runtime"])
    assert runtime["CMD"] == '["gateway-admin", "serve", "gateway"]'
    assert "wfg-healthcheck" in runtime["HEALTHCHECK"] and "/healthz" in runtime["HEALTHCHECK"]
    assert runtime["EXPOSE"].split() == ["4000", "8080"]


def test_no_secret_is_baked_into_the_image() -> None:
    for instruction, args in dockerfile_instructions():
        if instruction in ("ENV", "ARG"):
            names = re.findall(r"([A-Z][A-Z0-9_]*)=", args) or [args.split("=")[0]]
            for name in names:
                assert not re.search(r"(_KEY|_SECRET|PASSWORD|TOKEN|DATABASE_URL)$", name), name
        if instruction == "COPY":
            assert ".env" not in args.split()


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins ("!" re-includes)."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/")
        candidates = [path] + [path.rsplit("/", n)[0] for n in range(1, path.count("/") + 1)]
        if any(
            fnmatch.fnmatch(c, pattern) or fnmatch.fnmatch(c, pattern.removeprefix("**/"))
            for c in candidates
        ) or any(
            fnmatch.fnmatch(part, pattern.removeprefix("**/"))
            for part in path.split("/")
            if pattern.startswith("**/")
        ):
            ignored = not negate
    return ignored


def _dockerignore() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_dockerignore_sends_what_the_dockerfile_copies_and_nothing_secret() -> None:
    patterns = _dockerignore()
    sources = []
    for instruction, args in dockerfile_instructions():
        if instruction == "COPY" and "--from=" not in args:
            sources += args.split()[:-1]
    assert sources
    for source in sources:
        for path in (
            [source]
            if (ROOT / source).is_file()
            else [str(p.relative_to(ROOT)) for p in (ROOT / source).rglob("*.py")]
        ):
            assert not _ignored(path, patterns), f"{path} is copied but ignored"
    for never in (".env", ".venv/bin/python", "var/workforce.db", "tests/conftest.py"):
        assert _ignored(never, patterns), f"{never} would reach the build context"
    assert _ignored("portal/__pycache__/models.cpython-311.pyc", patterns)
