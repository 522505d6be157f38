"""Process settings read from the environment, once.

Every variable is listed in `.env.example`. `WFG_DATABASE_URL` wins over `DATABASE_URL`:
the gateway launcher moves `DATABASE_URL` there because LiteLLM's proxy reads
`DATABASE_URL` itself (it refuses SQLite and turns on its own Prisma features).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
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

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def spool_dir(self) -> Path:
        return self.var_dir / "spool"

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


@cache
def get_settings() -> Settings:
    return Settings.from_env()
