"""`config.yaml`: LiteLLM's routing plus our `workforce_gateway:` section, validated at start."""

from portal.config.loader import ConfigError, GatewayConfig, load_config, load_plugin_settings

__all__ = ["ConfigError", "GatewayConfig", "load_config", "load_plugin_settings"]
