"""Behind a proxy, the portal must know who the client is: its sign-in and mail limits
count per client. FORWARDED_ALLOW_IPS names the proxies whose X-Forwarded-For it believes
(tests/portal/test_portal_process.py shows the server honouring it)."""

from __future__ import annotations

import ipaddress
import re

from tests.deploy.artifacts import app_services, container_env, containers, documented_env_vars


def _trusted_networks(value: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    networks = [ipaddress.ip_network(part.strip()) for part in value.split(",") if part.strip()]
    assert networks, "FORWARDED_ALLOW_IPS is empty"
    return networks


def test_the_setting_is_documented_for_operators() -> None:
    assert "FORWARDED_ALLOW_IPS" in documented_env_vars()


def test_kubernetes_portal_trusts_private_ingress_addresses_only() -> None:
    [portal] = [c for _, c in containers() if c["name"] == "portal"]
    value = container_env(portal)["FORWARDED_ALLOW_IPS"]["value"]
    for network in _trusted_networks(value):  # never `*`, never a public network
        assert network.is_private, network


def test_compose_portal_trusts_the_docker_bridge_and_lets_the_operator_choose() -> None:
    value = app_services()["portal"]["environment"]["FORWARDED_ALLOW_IPS"]
    default = re.fullmatch(r"\$\{FORWARDED_ALLOW_IPS:-([^}]+)\}", value)
    assert default, f"not overridable from .env: {value}"
    for network in _trusted_networks(default.group(1)):
        assert network.is_private, network
    ports = app_services()["portal"]["ports"]
    assert all(port.startswith("127.0.0.1:") for port in ports)  # only the host's proxy


def test_only_the_portal_is_told_to_trust_forwarded_addresses() -> None:
    for service, config in app_services().items():
        if service != "portal":
            assert "FORWARDED_ALLOW_IPS" not in config.get("environment", {}), service
