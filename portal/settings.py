"""Process settings read from the environment, once.

Every variable is listed in `.env.example`. `WFG_DATABASE_URL` wins over `DATABASE_URL`:
the gateway launcher moves `DATABASE_URL` there because LiteLLM's proxy reads
`DATABASE_URL` itself (it refuses SQLite and turns on its own Prisma features).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

__all__ = ["Settings", "get_settings"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str | None
    config_path: Path
    var_dir: Path
    gateway_port: int
    portal_port: int
    environment: str
    gateway_public_url: str
    portal_public_url: str
    smtp_url: str | None = None  # smtp[s]://user:pass@host:port[?starttls=true]
    mail_from: str = "WorkForce Gateway <no-reply@localhost>"
    # Stripe (billing). Unset secret key: billing pages say billing is not configured.
    stripe_secret_key: str | None = field(default=None, repr=False)
    stripe_webhook_secret: str | None = field(default=None, repr=False)
    stripe_api_base: str | None = None  # tests/staging: a Stripe-compatible API on loopback
    # Operations: worker count (shared state needs REDIS_URL when > 1), logs, auth cache.
    gateway_workers: int = 1
    log_level: str = "info"
    log_format: str = "text"  # "json" (production default) or "text"
    auth_cache_ttl_seconds: int = 30  # Redis auth cache; revocation invalidates at once
    gateway_graceful_seconds: int = 30  # SIGTERM: wait this long for open requests, then
    gateway_drain_seconds: int = 20  # this long for their usage to be written

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def spool_dir(self) -> Path:
        return self.var_dir / "spool"

    @property
    def outbox_dir(self) -> Path:
        """Where mail goes as .eml files when no SMTP_URL is set."""
        return self.var_dir / "outbox"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        var_dir = Path(env.get("WFG_VAR_DIR") or PROJECT_ROOT / "var")
        database_url = (
            env.get("WFG_DATABASE_URL")
            or env.get("DATABASE_URL")
            or f"sqlite:///{var_dir / 'workforce.db'}"
        )
        gateway_port = _port(env, "GATEWAY_PORT", 4000)
        portal_port = _port(env, "PORTAL_PORT", 8080)
        return cls(
            database_url=database_url,
            redis_url=env.get("REDIS_URL") or None,
            config_path=Path(env.get("WFG_CONFIG") or PROJECT_ROOT / "config.yaml"),
            var_dir=var_dir,
            gateway_port=gateway_port,
            portal_port=portal_port,
            environment=env.get("WFG_ENV", "development"),
            gateway_public_url=env.get("GATEWAY_PUBLIC_URL") or f"http://localhost:{gateway_port}",
            portal_public_url=env.get("PORTAL_PUBLIC_URL") or f"http://localhost:{portal_port}",
            smtp_url=env.get("SMTP_URL") or None,
            mail_from=env.get("MAIL_FROM") or "WorkForce Gateway <no-reply@localhost>",
            stripe_secret_key=env.get("STRIPE_SECRET_KEY") or None,
            stripe_webhook_secret=env.get("STRIPE_WEBHOOK_SECRET") or None,
            stripe_api_base=env.get("STRIPE_API_BASE") or None,
            gateway_workers=_positive_int(env, "GATEWAY_WORKERS", 1),
            log_level=(env.get("LOG_LEVEL") or "info").lower(),
            log_format=_log_format(env),
            auth_cache_ttl_seconds=_positive_int(env, "AUTH_CACHE_TTL_SECONDS", 30),
            gateway_graceful_seconds=_positive_int(env, "GATEWAY_GRACEFUL_SECONDS", 30),
            gateway_drain_seconds=_positive_int(env, "GATEWAY_DRAIN_SECONDS", 20),
        )


def _port(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        port = int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a port number, got {raw!r}") from None
    if not 0 < port < 65536:
        raise SystemExit(f"{name} must be between 1 and 65535, got {port}")
    return port


def _positive_int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, got {raw!r}") from None
    if value < 1:
        raise SystemExit(f"{name} must be at least 1, got {value}")
    return value


def _log_format(env: dict[str, str]) -> str:
    default = "json" if env.get("WFG_ENV", "development") == "production" else "text"
    value = (env.get("LOG_FORMAT") or default).lower()
    if value not in ("json", "text"):
        raise SystemExit(f"LOG_FORMAT must be json or text, got {value!r}")
    return value


@cache
def get_settings() -> Settings:
    return Settings.from_env()
