"""Load the deploy artefacts once for the tests in this folder (parsing only, no I/O
beyond reading files)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"
OPERATIONS_GUIDE = ROOT / "docs" / "operations.md"

# The app's contracts (see gateway_plugins/server.py, portal/web/server.py).
GATEWAY_PORT = 4000
PORTAL_PORT = 8080
LIVENESS_PATH = "/healthz"
READINESS_PATH = "/readyz"


def k8s_files() -> list[Path]:
    """Every Kubernetes manifest (kustomization files are not Kubernetes objects)."""
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


@cache
def k8s_objects() -> tuple[dict[str, Any], ...]:
    return tuple(
        doc
        for path in k8s_files()
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8"))
        if doc
    )


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in k8s_objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    """The pod spec inside a Deployment, Job or CronJob."""
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]


def workloads() -> list[dict[str, Any]]:
    return [o for o in k8s_objects() if o["kind"] in ("Deployment", "Job", "CronJob")]


def containers() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for obj in workloads():
        spec = pod_spec(obj)
        for container in spec.get("initContainers", []) + spec["containers"]:
            yield obj, container


def container_env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def app_services() -> dict[str, dict[str, Any]]:
    """Compose services that run our image (not PostgreSQL or Redis)."""
    return {
        name: svc
        for name, svc in compose()["services"].items()
        if svc.get("build", {}).get("dockerfile") == "deploy/Dockerfile"
    }


def documented_env_vars() -> set[str]:
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined, comments dropped."""
    logical: list[str] = []
    current = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    pairs = []
    for line in logical:
        instruction, _, args = line.partition(" ")
        pairs.append((instruction.upper(), " ".join(args.split())))
    return pairs


def dockerfile_stages() -> dict[str, list[tuple[str, str]]]:
    """Instructions per named build stage (the last, unnamed-or-named stage included)."""
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for instruction, args in dockerfile_instructions():
        if instruction == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else parts[0]
            current = stages.setdefault(name, [])
        if current is not None:
            current.append((instruction, args))
    return stages


def image_user_id() -> int:
    """The numeric user the runtime stage (the last one) switches to."""
    runtime = list(dockerfile_stages().values())[-1]
    args = dict(a.split("=", 1) for instruction, a in runtime if instruction == "ARG" and "=" in a)
    users = [a for instruction, a in runtime if instruction == "USER"]
    assert users, "the runtime stage sets no USER (it would run as root)"
    user = users[-1].split(":")[0]
    for name, value in args.items():
        user = user.replace(f"${{{name}}}", value).replace(f"${name}", value)
    return int(user)
