"""The low-balance notice: once per fall below the threshold.

A user is due a notice when their balance is under `workforce_gateway.credits.
low_balance_credits`, they have spent since their last top-up, and no notice has been
sent since that top-up. The portal runs `low_balance_notices` periodically; it is safe
to run from several workers (the email log is the memory).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from portal.accounts import service as accounts
from portal.accounts.models import AccountStatus
from portal.config import ConfigError, load_plugin_settings
from portal.config.plugin_settings import PluginSettings
from portal.credits import ledger
from portal.credits.units import credits_to_units, format_units
from portal.email import messages
from portal.email import service as email
from portal.email.messages import Mail
from portal.email.models import EmailKind

__all__ = ["low_balance_notices", "threshold_units"]


def threshold_units(config_path: Path) -> int:
    """The threshold from config.yaml (the default when the file is unusable)."""
    try:
        plugin = load_plugin_settings(config_path)
    except (ConfigError, OSError):
        plugin = PluginSettings()
    return credits_to_units(plugin.credits.low_balance_credits)


async def low_balance_notices(
    session: AsyncSession, *, threshold: int, dashboard_url: str
) -> list[Mail]:
    if threshold <= 0:
        return []
    due = []
    for user_id, balance in await ledger.balances_below(session, threshold):
        user = await accounts.get_by_id(session, user_id)
        if user is None or user.status != AccountStatus.ACTIVE or user.email_verified_at is None:
            continue
        top_up = await ledger.last_top_up(session, user_id)
        if top_up is None:
            continue  # never funded: nothing to warn about
        if not await ledger.spent_after(session, user_id, top_up.id):
            continue
        if await email.sent_since(session, user_id, EmailKind.LOW_BALANCE, top_up.created_at):
            continue
        mail = messages.low_balance(
            user_id=user.id,
            to=user.email,
            name=user.name,
            balance=format_units(balance),
            dashboard_url=dashboard_url,
        )
        due.append(await email.record(session, mail))
    return due
