"""config / db / schema / serve commands."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from portal.cli.common import CommandError
from portal.settings import PROJECT_ROOT, get_settings

__all__ = ["register"]


def register(groups: Any) -> None:
    config = groups.add_parser("config", help="validate config.yaml").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    check = config.add_parser(
        "check", help="validate routing, prices, plugin settings and the environment"
    )
    check.add_argument("--config", type=Path, help="path (default: WFG_CONFIG or ./config.yaml)")
    check.add_argument(
        "--service",
        choices=("gateway", "portal"),
        help="check the environment of this service only (default: both)",
    )
    check.set_defaults(handler=config_check)

    db = groups.add_parser("db", help="database migrations").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    db.add_parser("upgrade", help="apply all migrations").set_defaults(handler=db_upgrade)

    schema = groups.add_parser("schema", help="generated schema files").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    prisma = schema.add_parser("prisma", help="write schema.prisma from the SQLAlchemy models")
    prisma.add_argument("--output", type=Path, default=PROJECT_ROOT / "schema.prisma")
    prisma.add_argument("--check", action="store_true", help="fail if the file is out of date")
    prisma.set_defaults(handler=schema_prisma)

    serve = groups.add_parser("serve", help="run the gateway and/or the portal (foreground)")
    serve.add_argument("service", nargs="?", choices=("all", "gateway", "portal"), default="all")
    serve.set_defaults(handler=serve_command)


def config_check(args: argparse.Namespace) -> int:
    """Every problem on its own line, then exit 1; else the `ok` line. Imports no LiteLLM
    and opens nothing (portal.config.routing, portal.credits.cost_map say how)."""
    return _report_checks(args.config, getattr(args, "service", None), unset_is_error=True)


def _report_checks(config_path: Path | None, service: str | None, *, unset_is_error: bool) -> int:
    """`unset_is_error`: a provider key variable that is unset is an error (else a warning,
    so `serve` in development starts with only some providers' keys)."""
    from portal.config import ConfigError, check_config
    from portal.config.routing import environment_problems, section_problems
    from portal.credits.pricing import PriceBook

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # if LiteLLM is imported
    path = config_path or get_settings().config_path
    try:
        config, errors = check_config(path)
    except ConfigError as exc:
        config, errors = None, list(exc.problems)
    warnings: list[str] = []
    names: list[str] = []
    if config is not None:
        prices, price_problems = PriceBook.from_model_list(config.model_list)
        names = prices.model_names
        errors += price_problems + section_problems(config.raw)
        unset = environment_problems(config.model_list)
        (errors if unset_is_error else warnings).extend(unset)
    environment_errors, environment_warnings = _environment(service)
    errors += environment_errors
    for error in errors:
        print(f"gateway-admin: error: {error}", file=sys.stderr)
    if errors:
        return 1
    for warning in warnings + environment_warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{path}: ok ({len(names)} models: {', '.join(names)})")
    return 0


def _environment(service: str | None) -> tuple[list[str], list[str]]:
    """What the services would refuse at start (all of it in one line, in production),
    and the warnings."""
    from portal.config.deployment import (
        SERVICES,
        deployment_errors,
        refusal_message,
        shared_state_warnings,
    )

    settings = get_settings()
    errors = deployment_errors(settings, services=[service] if service else SERVICES)
    if errors:
        errors = [refusal_message(errors) if settings.is_production else "; ".join(errors)]
    warnings = shared_state_warnings(settings) if service != "portal" else []
    return errors, warnings


def _check_environment(service: str | None) -> None:
    """Refuse what the services would refuse at start; print the warnings."""
    errors, warnings = _environment(service)
    if errors:
        raise CommandError(errors[0])
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)


def db_upgrade(_args: argparse.Namespace) -> int:
    from portal.db.migrate import upgrade

    applied = upgrade(get_settings().database_url)
    if not applied:
        print("database is up to date: no migrations to apply")
        return 0
    print(f"applied {len(applied)} migration{'' if len(applied) == 1 else 's'}:")
    for migration in applied:
        print(f"  {migration.revision}  {migration.title}")
    print(f"database is now at {applied[-1].revision}")
    return 0


def schema_prisma(args: argparse.Namespace) -> int:
    from portal.cli.prisma_schema import render_prisma_schema

    rendered = render_prisma_schema()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != rendered:
            raise CommandError(f"{args.output} is out of date; run `gateway-admin schema prisma`")
        print(f"{args.output} is up to date")
        return 0
    args.output.write_text(rendered, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


_SERVICES = {
    "gateway": [sys.executable, "-m", "gateway_plugins.server"],
    "portal": [sys.executable, "-m", "portal.web.server"],
}


def serve_command(args: argparse.Namespace) -> int:
    """Run the chosen services in the foreground; Ctrl-C (or SIGTERM) stops them all,
    and if one exits the others are stopped too."""
    names = ["gateway", "portal"] if args.service == "all" else [args.service]
    if "gateway" in names:
        service = None if len(names) > 1 else "gateway"
        production = get_settings().is_production
        if _report_checks(None, service, unset_is_error=production):
            return 1
    else:
        _check_environment("portal")
    settings = get_settings()
    children = {name: subprocess.Popen(_SERVICES[name]) for name in names}
    for name in names:
        port = settings.gateway_port if name == "gateway" else settings.portal_port
        print(f"{name}: starting on http://127.0.0.1:{port}", flush=True)

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    exit_code = 0
    try:
        while all(child.poll() is None for child in children.values()):
            time.sleep(0.5)
        exit_code = next(c.returncode for c in children.values() if c.returncode is not None)
        failed = [n for n, c in children.items() if c.returncode is not None]
        print(f"{', '.join(failed)} exited ({exit_code}); stopping", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        # The gateway finishes in-flight calls, then writes their usage, before it exits.
        patience = settings.gateway_graceful_seconds + settings.gateway_drain_seconds + 10
        for child in children.values():
            try:
                child.wait(timeout=patience)
            except subprocess.TimeoutExpired:
                child.kill()
    return exit_code or 0
