"""Run the portal with uvicorn (`gateway-admin serve portal`)."""

from __future__ import annotations

import uvicorn

from portal.config.deployment import refuse_unsafe_production
from portal.observability.logging import logging_config
from portal.settings import get_settings


def main() -> None:
    settings = get_settings()
    refuse_unsafe_production(settings, services=["portal"])  # exits, naming every problem
    uvicorn.run(
        "portal.web.app:create_app",
        factory=True,
        host=settings.portal_host,
        port=settings.portal_port,
        workers=settings.portal_workers,
        log_level=settings.log_level,
        # X-Forwarded-For names the client only when the peer is one of these proxies
        # (comma-separated addresses or networks, `*` for any): the sign-in and mail
        # limits count per client, so list the ingress or load balancer here.
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        log_config=logging_config(settings.log_level, settings.log_format),
    )


if __name__ == "__main__":
    main()
