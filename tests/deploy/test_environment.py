"""Every environment variable the deploy artefacts set is one the operator can look up in
.env.example, and the image's defaults agree with the app's contracts."""

from __future__ import annotations

import re

from tests.deploy.artifacts import (
    COMPOSE,
    app_services,
    container_env,
    containers,
    dockerfile_stages,
    documented_env_vars,
    k8s_object,
)

# Set for third-party images (PostgreSQL), or by the image itself for LiteLLM: not ours to
# document in .env.example.
NOT_OURS = {"LITELLM_LOCAL_MODEL_COST_MAP", "PATH", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"}


def k8s_env_names() -> set[str]:
    names = {name for _, container in containers() for name in container_env(container)}
    names |= set(k8s_object("ConfigMap", "workforce-gateway-env")["data"])
    names |= set(k8s_object("Secret", "workforce-gateway-secrets")["stringData"])
    return names


def compose_env_names() -> set[str]:
    names = {name for svc in app_services().values() for name in svc["environment"]}
    # ${VAR} / ${VAR:-default} / ${VAR:?message} interpolated from .env by compose itself
    names |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE.read_text(encoding="utf-8")))
    return names


def image_env_names() -> set[str]:
    runtime = list(dockerfile_stages().values())[-1]
    names: set[str] = set()
    for instruction, args in runtime:
        if instruction == "ENV":
            names |= set(re.findall(r"([A-Z][A-Z0-9_]*)=", args))
    return names


def test_kubernetes_sets_only_documented_variables() -> None:
    undocumented = k8s_env_names() - documented_env_vars()
    assert not undocumented, f"add to .env.example: {sorted(undocumented)}"


def test_compose_sets_only_documented_variables() -> None:
    undocumented = compose_env_names() - documented_env_vars()
    assert not undocumented, f"add to .env.example: {sorted(undocumented)}"


def test_image_sets_only_documented_variables() -> None:
    undocumented = image_env_names() - NOT_OURS - documented_env_vars()
    assert not undocumented, f"add to .env.example: {sorted(undocumented)}"


def test_the_check_notices_an_undocumented_variable() -> None:
    assert "SURELY_NOT_DOCUMENTED" not in documented_env_vars()
    assert {"DATABASE_URL", "REDIS_URL", "GATEWAY_PORT"} <= documented_env_vars()
