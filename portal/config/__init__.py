"""`config.yaml`: LiteLLM's routing plus our `workforce_gateway:` section, read in one
place (`loader.read_config`) and validated at start. A base package: it imports no
domain (prices are built from it by `portal.credits.pricing`)."""

from portal.config.loader import (
    ConfigError,
    GatewayConfig,
    check_config,
    load_config,
    load_plugin_settings,
    load_retention_settings,
    read_config,
)

__all__ = [
    "ConfigError",
    "GatewayConfig",
    "check_config",
    "load_config",
    "load_plugin_settings",
    "load_retention_settings",
    "read_config",
]
