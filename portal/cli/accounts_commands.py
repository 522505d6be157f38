"""users / credits / tokens / usage commands.

Domain modules (SQLAlchemy, argon2, Redis) are imported by the handlers that use them, so
`--help`, usage errors and bad input are answered without paying for those imports."""

from __future__ import annotations

import argparse
import sys
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from portal.cli.common import CommandError, print_json, transaction
from portal.credits.units import credits_to_units, format_units, labelled_amount

if TYPE_CHECKING:
    from portal.tokens.models import GatewayToken

__all__ = ["register"]


def register(groups: Any) -> None:
    users = groups.add_parser("users", help="create, suspend accounts").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    create = users.add_parser("create", help="create an account")
    create.add_argument("--email", required=True)
    create.add_argument("--name", required=True)
    create.add_argument("--verified", action="store_true", help="mark the email as verified")
    create.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    create.set_defaults(handler=users_create)
    suspend = users.add_parser("suspend", help="refuse the account's tokens and sign-ins")
    suspend.add_argument("--email", required=True)
    suspend.set_defaults(handler=users_suspend)
    unsuspend = users.add_parser("unsuspend", help="make a suspended account active again")
    unsuspend.add_argument("--email", required=True)
    unsuspend.set_defaults(handler=users_unsuspend)

    credits = groups.add_parser("credits", help="grant credits, show balances").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    grant = credits.add_parser("grant", help="grant (or, negative, correct) credits")
    grant.add_argument("--email", required=True)
    grant.add_argument("--amount", required=True, help="credits, decimal; negative corrects")
    grant.add_argument("--reason", required=True, help="why; kept in the ledger")
    grant.add_argument(
        "--idempotency-key", help="the same key never grants twice (safe to re-run scripts)"
    )
    grant.set_defaults(handler=credits_grant)
    balance = credits.add_parser("balance", help="show a balance")
    balance.add_argument("--email", required=True)
    balance.add_argument("--raw", action="store_true", help="integer ledger units only")
    balance.set_defaults(handler=credits_balance)

    token_cmds = groups.add_parser("tokens", help="gateway tokens").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    token_create = token_cmds.add_parser("create", help="mint a token (printed once)")
    token_create.add_argument("--email", required=True)
    token_create.add_argument("--name", required=True)
    _limit_arguments(token_create)
    token_create.set_defaults(handler=tokens_create)
    token_limit = token_cmds.add_parser(
        "limit", help="set, change or remove a token's spending limit (applies at once)"
    )
    token_limit.add_argument("id", help="token id (from `tokens list`)")
    _limit_arguments(token_limit, required=True)
    token_limit.set_defaults(handler=tokens_limit)
    token_list = token_cmds.add_parser("list", help="list tokens (never the secret)")
    token_list.add_argument("--email", required=True)
    token_list.add_argument("--json", action="store_true")
    token_list.set_defaults(handler=tokens_list)
    revoke = token_cmds.add_parser("revoke", help="revoke a token at once")
    revoke.add_argument("--email", required=True)
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", help="token id (from `tokens list`)")
    which.add_argument("--prefix", help="the token's display prefix")
    which.add_argument("--name", help="the token's name")
    revoke.set_defaults(handler=tokens_revoke)

    usage = groups.add_parser("usage", help="usage records").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    usage_list = usage.add_parser("list", help="one record per call")
    usage_list.add_argument("--email", required=True)
    usage_list.add_argument("--json", action="store_true", help="a JSON array of objects")
    usage_list.set_defaults(handler=usage_list_command)


def _limit_arguments(parser: Any, *, required: bool = False) -> None:
    parser.add_argument(
        "--limit",
        required=required,
        metavar="CREDITS",
        help="spending limit in credits, decimal" + ("; `none` removes it" if required else ""),
    )
    parser.add_argument(
        "--reset",
        choices=("daily", "weekly", "monthly", "none"),
        help="when the limit starts again, at midnight UTC (weekly: Monday); default none",
    )


def _spending_limit(args: argparse.Namespace) -> Any:
    """The `--limit` / `--reset` pair as a `SpendingLimit` (None: no limit)."""
    from portal.tokens.spending import parse_limit

    text = args.limit
    if text is None or text.strip().lower() == "none":
        units = None
    else:
        try:
            units = credits_to_units(text)
        except ValueError as exc:
            raise CommandError(f"--limit: {exc}") from None
        if units <= 0:
            raise CommandError("--limit must be more than 0 credits (or `none`)")
    try:
        return parse_limit(units, args.reset)
    except ValueError as exc:
        raise CommandError(f"--reset: {exc}") from None


def _describe_limit(token: GatewayToken) -> str:
    if token.limit_units is None:
        return "no limit"
    reset = token.limit_reset or "never resets"
    return f"limit {format_units(token.limit_units)} credits, {reset}"


async def users_create(args: argparse.Namespace) -> int:
    from portal.accounts.passwords import check_password

    password = None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise CommandError("no password on standard input")
        try:
            check_password(password)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
    from portal.accounts import service as accounts
    from portal.credits import ledger

    async with transaction() as session:
        user = await accounts.create_user(
            session, email=args.email, name=args.name, password=password, verified=args.verified
        )
        await ledger.ensure_account(session, user.id)
    print(user.id)
    return 0


async def users_suspend(args: argparse.Namespace) -> int:
    """Every gateway refuses the account's tokens from the commit on (the service drops
    their cached checks; if Redis is unreachable, within AUTH_CACHE_TTL_SECONDS)."""
    from portal.accounts import service as accounts

    async with transaction() as session:
        user = await accounts.require_by_email(session, args.email)
        changed = await accounts.suspend_user(session, user.id)
    print("suspended" if changed else "already suspended")
    return 0


async def users_unsuspend(args: argparse.Namespace) -> int:
    from portal.accounts import service as accounts

    async with transaction() as session:
        user = await accounts.require_by_email(session, args.email)
        changed = await accounts.unsuspend_user(session, user.id)
    print("active again" if changed else "already active")
    return 0


async def credits_grant(args: argparse.Namespace) -> int:
    try:
        amount = credits_to_units(args.amount)
    except ValueError as exc:
        raise CommandError(f"--amount: {exc}") from None
    if amount == 0:
        raise CommandError("--amount must not be zero")
    reason = args.reason.strip()
    if not reason or len(reason) > 500:
        raise CommandError("--reason must be 1 to 500 characters")
    from portal.accounts import service as accounts
    from portal.credits import ledger
    from portal.credits.models import CauseType, EntryKind

    async with transaction() as session:
        user = await accounts.require_by_email(session, args.email)
        posted = await ledger.post_entry(
            session,
            user_id=user.id,
            amount=amount,
            kind=EntryKind.GRANT if amount > 0 else EntryKind.ADJUSTMENT,
            cause_type=CauseType.ADMIN,
            cause_id=args.idempotency_key or f"grant-{uuid.uuid4()}",
            note=reason,
        )
        new_balance = await ledger.balance(session, user.id)
    verb = "granted" if posted else "already granted (same idempotency key); nothing changed"
    print(f"{verb}: {format_units(amount)} credits; balance {format_units(new_balance)}")
    return 0


async def credits_balance(args: argparse.Namespace) -> int:
    from portal.accounts import service as accounts
    from portal.credits import ledger

    async with transaction() as session:
        user = await accounts.require_by_email(session, args.email)
        total = await ledger.balance(session, user.id)
        spendable = await ledger.available(session, user.id)
    if args.raw:
        print(total)
    else:
        print(
            f"{format_units(total)} credits "
            f"({format_units(spendable)} available, {format_units(total - spendable)} reserved)"
        )
    return 0


async def tokens_create(args: argparse.Namespace) -> int:
    limit = _spending_limit(args)
    from portal.accounts import service as accounts
    from portal.tokens import service as tokens

    async with transaction() as session:
        user = await accounts.require_by_email(session, args.email)
        plaintext, _token = await tokens.create_token(session, user, name=args.name, limit=limit)
    print(plaintext)
    return 0


async def tokens_limit(args: argparse.Namespace) -> int:
    """Gateways apply it from the commit on: the hold reads the limit from the token's row."""
    limit = _spending_limit(args)
    from portal.tokens import service as tokens
    from portal.tokens.models import GatewayToken

    async with transaction() as session:
        found = await session.get(GatewayToken, args.id[:64])
        if found is None:
            raise CommandError("no such token")
        token = await tokens.set_limit(
            session, user_id=found.user_id, token_id=found.id, limit=limit
        )
        text = _describe_limit(token)
    print(f"{token.prefix}… ({token.name}): {text}")
    return 0


def _token_json(token: GatewayToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "name": token.name,
        "prefix": token.prefix,
        "created_at": _iso(token.created_at),
        "last_used_at": _iso(token.last_used_at),
        "expires_at": _iso(token.expires_at),
        "revoked_at": _iso(token.revoked_at),
        "limit_credits": None if token.limit_units is None else format_units(token.limit_units),
        "limit_reset": token.limit_reset,
    }


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat()


async def tokens_list(args: argparse.Namespace) -> int:
    from portal.accounts import service as accounts
    from portal.tokens import service as tokens

    async with transaction() as session:
        user = await accounts.require_by_email(session, args.email)
        rows = [_token_json(t) for t in await tokens.list_tokens(session, user.id)]
    if args.json:
        print_json(rows)
        return 0
    for row in rows:
        state = "revoked" if row["revoked_at"] else "active"
        used = row["last_used_at"] or "never"
        limit = (
            f", limit {row['limit_credits']} {row['limit_reset'] or 'never resets'}"
            if row["limit_credits"] is not None
            else ""
        )
        print(
            f"{row['id']}  {row['prefix']}…  {state:7}  {row['name']}  (last used: {used}{limit})"
        )
    return 0


async def tokens_revoke(args: argparse.Namespace) -> int:
    from portal.accounts import service as accounts
    from portal.tokens import service as tokens

    async with transaction() as session:
        user = await accounts.require_by_email(session, args.email)
        candidates = [
            t
            for t in await tokens.list_tokens(session, user.id)
            if (args.id and t.id == args.id)
            or (args.prefix and t.prefix.startswith(args.prefix.rstrip("…")))
            or (args.name and t.name == args.name)
        ]
        if not candidates:
            raise CommandError("no such token for that account")
        active = [t for t in candidates if t.revoked_at is None]
        if len(candidates) > 1 and active:
            candidates = active  # a name reused after revoking the old token
        if len(candidates) > 1:
            raise CommandError(f"{len(candidates)} tokens match; use --id (see `tokens list`)")
        # gateways refuse it from the commit on: the service drops its cached check
        token = await tokens.revoke_token(session, user_id=user.id, token_id=candidates[0].id)
    print(f"revoked {token.prefix}… ({token.name})")
    return 0


async def usage_list_command(args: argparse.Namespace) -> int:
    from portal.accounts import service as accounts
    from portal.usage.service import list_usage

    async with transaction() as session:
        user = await accounts.require_by_email(session, args.email)
        records = await list_usage(session, user.id)
    rows = [
        {
            "request_id": r.call_id,
            "model": r.model,
            "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens,
            **labelled_amount("charged", r.credits),
            "status": r.status,
            "started_at": r.started_at.isoformat(),
            "ended_at": r.ended_at.isoformat(),
        }
        for r in records
    ]
    if args.json:
        print_json(rows)
        return 0
    for row in rows:
        print(
            f"{row['started_at']}  {row['model']:28} {row['status']:8} "
            f"in={row['prompt_tokens']} out={row['completion_tokens']} "
            f"credits={row['charged_credits']}"
        )
    return 0
