"""docs/operations.md matches the artefacts it describes: it names each of them, the
commands they run, the endpoints they probe, the secrets they read, and the numbers
(ports, replicas, grace period) they set."""

from __future__ import annotations

import pytest

from tests.deploy.artifacts import (
    DEPLOY,
    GATEWAY_PORT,
    LIVENESS_PATH,
    OPERATIONS_GUIDE,
    PORTAL_PORT,
    READINESS_PATH,
    ROOT,
    app_services,
    k8s_object,
    pod_spec,
    workloads,
)


@pytest.fixture(scope="module")
def guide() -> str:
    return OPERATIONS_GUIDE.read_text(encoding="utf-8")


def _artefacts() -> list[str]:
    files = [p for p in DEPLOY.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return [*sorted(str(p.relative_to(ROOT)) for p in files), ".dockerignore"]


@pytest.mark.parametrize("artefact", _artefacts())
def test_guide_names_every_artefact(guide: str, artefact: str) -> None:
    # a file inside deploy/k8s/migrate/ is covered by its folder's entry
    named = artefact in guide or (
        artefact.startswith("deploy/k8s/migrate/") and "deploy/k8s/migrate/" in guide
    )
    assert named, f"docs/operations.md does not mention {artefact}"


def test_guide_names_every_command_the_artefacts_run(guide: str) -> None:
    commands = {" ".join(c["command"]) for o in workloads() for c in pod_spec(o)["containers"]}
    commands |= {" ".join(s["command"]) for s in app_services().values()}
    for command in sorted(commands):
        assert command in guide, command
    assert "gateway-admin config check --config" in guide


def test_guide_names_the_endpoints_and_ports(guide: str) -> None:
    for path in (LIVENESS_PATH, READINESS_PATH, "/metrics"):
        assert f"GET {path}" in guide
    for port in (GATEWAY_PORT, PORTAL_PORT):
        assert str(port) in guide


def test_guide_lists_every_secret_key(guide: str) -> None:
    for key in k8s_object("Secret", "workforce-gateway-secrets")["stringData"]:
        assert f"`{key}`" in guide, key


def test_guide_numbers_match_the_manifests(guide: str) -> None:
    hpa = k8s_object("HorizontalPodAutoscaler", "gateway")["spec"]
    assert f"{hpa['minReplicas']}–{hpa['maxReplicas']} gateway pods" in guide
    target = hpa["metrics"][0]["resource"]["target"]["averageUtilization"]
    assert f"{target} % CPU" in guide
    gateway = pod_spec(k8s_object("Deployment", "gateway"))
    assert f"terminationGracePeriodSeconds: {gateway['terminationGracePeriodSeconds']}" in guide
    pre_stop = gateway["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][1]
    assert f"{pre_stop} s `preStop` sleep" in guide
    env = {e["name"]: e.get("value") for e in gateway["containers"][0]["env"]}
    assert f"`GATEWAY_GRACEFUL_SECONDS` ({env['GATEWAY_GRACEFUL_SECONDS']} s)" in guide
    portal = k8s_object("Deployment", "portal")["spec"]["replicas"]
    assert f"Portal Deployment ({portal} replicas)" in guide


def test_guide_covers_the_operator_topics(guide: str) -> None:
    for heading in (
        "## Sizing",
        "## Scaling",
        "### Changing config.yaml",
        "## Backups",
        "### Upgrades and migrations",
        "## Secrets",
        "## Health and metrics",
    ):
        assert heading in guide
    assert "rollout restart" in guide and "pg_dump" in guide
    assert "7 ms of CPU per short plain" in guide and "13 ms per short stream" in guide
