"""`gateway-admin` entry point: the argument parser and one-line error reporting.

Every command exits 0 on success and non-zero with one line on stderr otherwise
(2 for usage errors, 1 for everything else)."""

from __future__ import annotations

import argparse
import asyncio
import inspect
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from portal.cli import accounts_commands, billing_commands, operations_commands, retention_commands
from portal.settings import InvalidSettings

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (argparse would print the whole usage block first).
    Sub-command parsers inherit this class."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gateway-admin", description="Operate WorkForce Gateway: users, credits, tokens."
    )
    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")
    accounts_commands.register(groups)
    operations_commands.register(groups)
    billing_commands.register(groups)
    retention_commands.register(groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], Any] = args.handler
    try:
        result = handler(args)
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
    except KeyboardInterrupt:
        return 130
    except InvalidSettings as exc:  # a bad variable, named (from the environment or .env)
        print(f"gateway-admin: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # one line, never a traceback, never a secret
        print(f"gateway-admin: error: {describe(exc)}", file=sys.stderr)
        return 1
    return int(result or 0)


def describe(exc: BaseException) -> str:
    from portal.config import ConfigError
    from portal.errors import GatewayError

    if isinstance(exc, GatewayError):
        return exc.message
    if isinstance(exc, ConfigError):
        return "; ".join(exc.problems)
    if "sqlalchemy" in sys.modules:  # else no database error is possible: skip the import
        from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

        original = getattr(exc, "orig", None) or exc
        text = str(original).lower()
        if isinstance(exc, DBAPIError) and (
            "no such table" in text or ("does not exist" in text and "relation" in text)
        ):
            return "the database is not migrated yet; run `gateway-admin db upgrade`"
        if isinstance(exc, (IntegrityError, DataError)):
            return f"the database refused the change ({_first_line(original)})"
        if isinstance(exc, DBAPIError):
            return f"cannot reach the database ({_first_line(original)})"
    if isinstance(exc, (ConnectionError, TimeoutError, socket.gaierror)):
        return f"cannot reach the database ({_first_line(exc)})"
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _first_line(exc: BaseException) -> str:
    """`Class: first line of the message` (drivers put SQL and parameters further down)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
