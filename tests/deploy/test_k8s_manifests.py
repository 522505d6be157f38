"""The Kubernetes manifests in deploy/k8s: valid against the Kubernetes API schemas
(offline, from the kubernetes-validate package) and true to the app's contracts."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from tests.deploy.artifacts import (
    GATEWAY_PORT,
    K8S,
    LIVENESS_PATH,
    PORTAL_PORT,
    READINESS_PATH,
    ROOT,
    container_env,
    containers,
    image_user_id,
    k8s_files,
    k8s_object,
    k8s_objects,
    pod_spec,
    workloads,
)

# The oldest Kubernetes we support (CronJob timeZone is GA since 1.27, autoscaling/v2
# since 1.23) and the newest schema the package ships.
KUBERNETES_VERSIONS = ["1.29", latest_version()]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", k8s_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_manifest_is_valid_kubernetes(path: Path, version: str) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    assert docs, f"{path} holds no object"
    for doc in docs:
        # strict: unknown fields (a misspelt probe, a misplaced key) are errors too
        kubernetes_validate.validate(doc, version, strict=True)


def test_schema_validation_catches_a_misspelt_or_mistyped_field() -> None:
    deployment = k8s_object("Deployment", "gateway")
    misspelt = copy.deepcopy(deployment)
    container = pod_spec(misspelt)["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    mistyped = copy.deepcopy(deployment)
    mistyped["spec"]["replicas"] = "two"
    for broken in (misspelt, mistyped):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, latest_version(), strict=True)


def _kustomization(path: Path) -> dict[str, Any]:
    return yaml.safe_load((path / "kustomization.yaml").read_text(encoding="utf-8"))


def test_kustomization_applies_everything_but_the_secret_and_the_migration() -> None:
    listed = set(_kustomization(K8S)["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"}
    # The example Secret must never overwrite the real one; the Job runs before a rollout.
    assert listed == on_disk - {"secret.example.yaml"}
    assert set(_kustomization(K8S / "migrate")["resources"]) == {"job.yaml"}


def test_migration_uses_the_same_image_as_the_services() -> None:
    assert _kustomization(K8S)["images"] == _kustomization(K8S / "migrate")["images"]
    images = {c["image"] for _, c in containers()}
    assert len(images) == 1, f"one image for every workload, got {images}"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not installed")
@pytest.mark.parametrize("directory", [K8S, K8S / "migrate"], ids=["services", "migrate"])
def test_kustomize_renders_valid_objects(directory: Path) -> None:
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    objects = [d for d in yaml.safe_load_all(rendered) if d]
    assert objects
    for obj in objects:
        kubernetes_validate.validate(obj, latest_version(), strict=True)
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "workforce-gateway"
    wanted = _kustomization(directory)["images"][0]
    images = {
        c["image"]
        for obj in objects
        if obj["kind"] in ("Deployment", "Job", "CronJob")
        for c in pod_spec(obj)["containers"]
    }
    assert images == {f"{wanted['newName']}:{wanted['newTag']}"}


def _port_named(container: dict[str, Any], name: str) -> int:
    return next(p["containerPort"] for p in container["ports"] if p["name"] == name)


@pytest.mark.parametrize(
    ("service", "port", "port_variable"),
    [("gateway", GATEWAY_PORT, "GATEWAY_PORT"), ("portal", PORTAL_PORT, "PORTAL_PORT")],
)
def test_services_listen_where_probes_and_services_look(
    service: str, port: int, port_variable: str
) -> None:
    deployment = k8s_object("Deployment", service)
    (container,) = pod_spec(deployment)["containers"]
    env = container_env(container)
    assert container["command"] == ["gateway-admin", "serve", service]
    assert env[port_variable]["value"] == str(port)
    # GATEWAY_HOST / PORTAL_HOST default to 127.0.0.1, which no probe or Service reaches.
    assert env[f"{service.upper()}_HOST"]["value"] == "0.0.0.0"
    assert _port_named(container, "http") == port

    assert container["readinessProbe"]["httpGet"] == {"path": READINESS_PATH, "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": LIVENESS_PATH, "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == LIVENESS_PATH

    svc = k8s_object("Service", service)
    assert (
        svc["spec"]["selector"].items()
        <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    assert [p["targetPort"] for p in svc["spec"]["ports"]] == ["http"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"


def test_gateway_has_time_to_finish_in_flight_calls() -> None:
    spec = pod_spec(k8s_object("Deployment", "gateway"))
    (container,) = spec["containers"]
    env = container_env(container)
    graceful = int(env["GATEWAY_GRACEFUL_SECONDS"]["value"])
    drain = int(env.get("GATEWAY_DRAIN_SECONDS", {"value": "20"})["value"])
    sleep_command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep_command[0] == "sleep"
    pre_stop = int(sleep_command[1])
    assert spec["terminationGracePeriodSeconds"] >= 60
    # the kubelet kills at the deadline: preStop, the graceful window for open requests,
    # then the drain that writes their usage (20 s unless set)
    assert spec["terminationGracePeriodSeconds"] >= pre_stop + graceful + drain


def test_rolling_updates_never_drop_below_the_wanted_replicas() -> None:
    for name in ("gateway", "portal"):
        strategy = k8s_object("Deployment", name)["spec"]["strategy"]
        assert strategy["type"] == "RollingUpdate"
        assert strategy["rollingUpdate"]["maxUnavailable"] == 0


def test_gateway_autoscaler_and_disruption_budget_target_the_gateway() -> None:
    deployment = k8s_object("Deployment", "gateway")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    hpa = k8s_object("HorizontalPodAutoscaler", "gateway")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "gateway",
    }
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    (container,) = pod_spec(deployment)["containers"]
    assert "cpu" in container["resources"]["requests"], "CPU utilisation needs a CPU request"

    pdb = k8s_object("PodDisruptionBudget", "gateway")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    # a budget that allows no disruption would block every node drain
    assert pdb["spec"]["maxUnavailable"] >= 1
    assert hpa["spec"]["minReplicas"] > pdb["spec"]["maxUnavailable"], "a drain keeps one"
    portal_labels = k8s_object("Deployment", "portal")["spec"]["template"]["metadata"]["labels"]
    assert not pdb["spec"]["selector"]["matchLabels"].items() <= portal_labels.items()


def test_more_than_one_gateway_replica_gets_redis() -> None:
    deployment = k8s_object("Deployment", "gateway")
    (container,) = pod_spec(deployment)["containers"]
    env = container_env(container)
    assert deployment["spec"]["replicas"] > 1
    redis = env["REDIS_URL"]["valueFrom"]["secretKeyRef"]
    assert not redis.get("optional", False), "replicas without Redis would split limits"
    assert not env["DATABASE_URL"]["valueFrom"]["secretKeyRef"].get("optional", False)


@pytest.mark.parametrize("obj", workloads(), ids=lambda o: f"{o['kind']}/{o['metadata']['name']}")
def test_pods_run_non_root_on_a_read_only_root(obj: dict[str, Any]) -> None:
    spec = pod_spec(obj)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == image_user_id()
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for container in spec["containers"]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        resources = container["resources"]
        assert {"cpu", "memory"} <= resources["requests"].keys()
        assert "memory" in resources["limits"]
        # the only writable places: /tmp and, for the services, WFG_VAR_DIR (usage spool)
        mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
        assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
        if obj["kind"] == "Deployment":
            var_dir = k8s_object("ConfigMap", "workforce-gateway-env")["data"]["WFG_VAR_DIR"]
            assert "emptyDir" in volumes[mounts[var_dir]["name"]]


def test_config_yaml_is_mounted_where_wfg_config_points() -> None:
    config_path = Path(k8s_object("ConfigMap", "workforce-gateway-env")["data"]["WFG_CONFIG"])
    config_map = k8s_object("ConfigMap", "workforce-gateway-config")
    assert config_path.name in config_map["data"]
    for obj in workloads():
        spec = pod_spec(obj)
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in spec["containers"]:
            if container["command"][1:3] == ["db", "upgrade"]:
                continue  # migrations do not read config.yaml
            mounts = [
                m for m in container["volumeMounts"] if m["mountPath"] == str(config_path.parent)
            ]
            assert len(mounts) == 1, f"{obj['metadata']['name']}: config.yaml not mounted"
            assert mounts[0]["readOnly"] is True
            # a directory mount (no subPath), so a replaced ConfigMap reaches new pods
            assert "subPath" not in mounts[0]
            volume = volumes[mounts[0]["name"]]
            assert volume["configMap"]["name"] == "workforce-gateway-config"


SECRET_LOOKING = ("DATABASE_URL", "REDIS_URL", "SMTP_URL", "_KEY", "_SECRET", "PASSWORD")


def test_secrets_reach_containers_only_from_the_secret() -> None:
    secret = k8s_object("Secret", "workforce-gateway-secrets")
    for obj, container in containers():
        for name, item in container_env(container).items():
            if any(marker in name for marker in SECRET_LOOKING):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                assert ref, f"{obj['metadata']['name']}: {name} must come from the Secret"
                assert ref["name"] == secret["metadata"]["name"]
                if not ref.get("optional"):
                    assert ref["key"] in secret["stringData"], f"{name} missing from the example"
        for source in container.get("envFrom", []):
            assert "secretRef" not in source, "name each secret a container gets"
    env_config = k8s_object("ConfigMap", "workforce-gateway-env")["data"]
    assert not [k for k in env_config if any(m in k for m in SECRET_LOOKING)]


def test_example_secret_holds_placeholders_only() -> None:
    secret = k8s_object("Secret", "workforce-gateway-secrets")
    assert "data" not in secret, "use stringData placeholders, never encoded values"
    for key, value in secret["stringData"].items():
        assert "REPLACE_ME" in value, f"{key} looks like a real value"


def test_gateway_workload_sees_only_the_secrets_it_uses() -> None:
    gateway = container_env(pod_spec(k8s_object("Deployment", "gateway"))["containers"][0])
    portal = container_env(pod_spec(k8s_object("Deployment", "portal"))["containers"][0])
    assert "STRIPE_SECRET_KEY" not in gateway and "SMTP_URL" not in gateway
    assert "OPENAI_API_KEY" not in portal and "ANTHROPIC_API_KEY" not in portal


def test_migration_job_and_retention_schedule_run_the_admin_commands() -> None:
    (migrate,) = pod_spec(k8s_object("Job", "workforce-gateway-migrate"))["containers"]
    assert migrate["command"] == ["gateway-admin", "db", "upgrade"]
    cron = k8s_object("CronJob", "workforce-gateway-retention")
    (retention,) = pod_spec(cron)["containers"]
    assert retention["command"] == ["gateway-admin", "retention", "run"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    for obj in (k8s_object("Job", "workforce-gateway-migrate"), cron):
        assert pod_spec(obj)["restartPolicy"] == "Never"


def test_config_map_is_the_repository_config_and_passes_config_check() -> None:
    from portal.credits.pricing import load_priced_config

    sync = K8S / "sync_configmap.py"
    result = subprocess.run(
        [sys.executable, str(sync), "--check"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    embedded = k8s_object("ConfigMap", "workforce-gateway-config")["data"]["config.yaml"]
    assert yaml.safe_load(embedded) == yaml.safe_load((ROOT / "config.yaml").read_text())
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "config.yaml"
        path.write_text(embedded, encoding="utf-8")
        load_priced_config(path)  # what `gateway-admin config check` runs; raises on any problem


def test_every_object_lives_in_the_namespace() -> None:
    for obj in k8s_objects():
        if obj["kind"] == "Namespace":
            assert obj["metadata"]["name"] == "workforce-gateway"
        else:
            assert obj["metadata"]["namespace"] == "workforce-gateway"
