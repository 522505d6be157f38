"""billing commands: repair a customer's state from Stripe, re-run one event, list the
events no user matched.

The Stripe SDK is imported by the commands themselves, so other commands start fast."""

from __future__ import annotations

import argparse
from typing import Any

from portal.cli.common import CommandError
from portal.settings import Settings, get_settings

__all__ = ["billing_replay", "billing_sync", "billing_unmatched", "register"]


def register(groups: Any) -> None:
    billing = groups.add_parser("billing", help="Stripe billing repairs").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    sync = billing.add_parser(
        "sync", help="re-read a customer from Stripe; fix plan, status, missed grants/refunds"
    )
    sync.add_argument("--email", required=True)
    sync.set_defaults(handler=billing_sync)
    replay = billing.add_parser(
        "replay", help="re-run fulfilment for one Stripe event (safe to repeat)"
    )
    replay.add_argument("--event-id", required=True, help="evt_… (Stripe keeps events 30 days)")
    replay.set_defaults(handler=billing_replay)
    unmatched = billing.add_parser(
        "unmatched",
        help="list Stripe events that name a plan/pack/charge of ours but no user (or whose "
        "object is gone at Stripe)",
    )
    unmatched.set_defaults(handler=billing_unmatched)


async def billing_sync(args: argparse.Namespace, settings: Settings | None = None) -> int:
    from portal.accounts import service as accounts
    from portal.accounts.gateway_cache import use_redis
    from portal.billing import flows
    from portal.billing import service as billing_service
    from portal.billing.runtime import build_billing
    from portal.credits import ledger
    from portal.credits.units import format_units
    from portal.db import open_database

    settings = settings or get_settings()
    billing = build_billing(settings)
    if not billing.enabled:
        raise CommandError("STRIPE_SECRET_KEY is not set")
    database = open_database(settings.database_url, pool_size=1)
    use_redis(database, settings.redis_url)  # a plan change reaches the gateways at once
    try:
        async with database.session() as session:
            user = await accounts.require_by_email(session, args.email)
        applied = await flows.sync_user(database, billing, user_id=user.id)
        async with database.session() as session:
            balance = await ledger.balance(session, user.id)
            account = await billing_service.get_account(session, user.id)
    finally:
        await billing.aclose()
        await database.dispose()
    if applied is None or account is None:
        print(f"{args.email}: no Stripe customer; nothing to sync")
        return 0
    print(
        f"{args.email}: customer {account.stripe_customer_id}, plan {account.plan or '-'} "
        f"({account.status or 'no subscription'}); granted {format_units(applied.granted_units)}"
        f", clawed back {format_units(applied.clawed_back_units)}"
        f", given back {format_units(applied.released_units)}; "
        f"balance {format_units(balance)} credits"
    )
    if applied.closed_events:
        print(
            f"{len(applied.closed_events)} unmatched event(s) of this customer now handled: "
            + ", ".join(applied.closed_events)
        )
    return 0


async def billing_replay(args: argparse.Namespace, settings: Settings | None = None) -> int:
    from portal.accounts.gateway_cache import use_redis
    from portal.billing import webhooks
    from portal.billing.runtime import build_billing
    from portal.db import open_database
    from portal.email.service import mailer_from_settings

    if not args.event_id.startswith("evt_"):
        raise CommandError("--event-id must be a Stripe event id (evt_…)")
    settings = settings or get_settings()
    billing = build_billing(settings)
    if not billing.enabled:
        raise CommandError("STRIPE_SECRET_KEY is not set")
    database = open_database(settings.database_url, pool_size=1)
    use_redis(database, settings.redis_url)  # a plan change reaches the gateways at once
    try:
        event = await billing.stripe.retrieve_event(args.event_id)
        try:
            outcome = await webhooks.handle_event(
                database, billing, event, replay=True, mailer=mailer_from_settings(settings)
            )
        except webhooks.MalformedEvent as exc:
            raise CommandError(f"{args.event_id}: {exc}") from None
    finally:
        await billing.aclose()
        await database.dispose()
    print(f"{args.event_id} ({event['type']}): {outcome}")
    return 0


async def billing_unmatched(args: argparse.Namespace, settings: Settings | None = None) -> int:
    """Unmatched events, oldest first: what to look at, and the customer to link (set
    `metadata.user_id` on the Stripe customer, then `billing sync --email` or resend)."""
    from portal.billing import events
    from portal.db import open_database

    settings = settings or get_settings()
    database = open_database(settings.database_url, pool_size=1)
    try:
        async with database.session() as session:
            rows = await events.list_unmatched(session)
    finally:
        await database.dispose()
    if not rows:
        print("no unmatched Stripe events")
        return 0
    for row in rows:
        seen = (row.last_seen_at or row.received_at).strftime("%Y-%m-%d %H:%M:%SZ")
        print(
            f"{row.id}  {row.type}  last seen {seen}  customer {row.stripe_customer_id or '-'}"
            f"  object {row.object_id or '-'}  {row.reason or ''}"
        )
    print(f"{len(rows)} unmatched event(s)")
    return 0
