"""The low-balance notice: once per fall below the threshold.

A user is due a notice when their balance is under `workforce_gateway.credits.
low_balance_credits`, they have spent since their last top-up, and no notice has been
sent since that top-up. The portal runs `low_balance_notices` periodically; it is safe
to run from several workers (the email log is the memory).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from portal.accounts.models import AccountStatus, User
from portal.config import ConfigError, load_plugin_settings
from portal.config.plugin_settings import PluginSettings
from portal.credits.models import CreditAccount, LedgerEntry
from portal.credits.units import credits_to_units, format_units
from portal.email import messages
from portal.email.messages import Mail
from portal.email.models import EmailKind, EmailLogEntry
from portal.email.service import record

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
    candidates = await session.execute(
        select(User, CreditAccount.balance)
        .join(CreditAccount, CreditAccount.user_id == User.id)
        .where(
            CreditAccount.balance < threshold,
            User.status == AccountStatus.ACTIVE,
            User.email_verified_at.is_not(None),
        )
    )
    due = []
    for user, balance in candidates.all():
        last_top_up = await session.scalar(
            select(func.max(LedgerEntry.id)).where(
                LedgerEntry.user_id == user.id, LedgerEntry.amount > 0
            )
        )
        if last_top_up is None:
            continue  # never funded: nothing to warn about
        spent_since = await session.scalar(
            select(func.max(LedgerEntry.created_at)).where(
                LedgerEntry.user_id == user.id,
                LedgerEntry.id > last_top_up,
                LedgerEntry.amount < 0,
            )
        )
        if spent_since is None:
            continue
        top_up_at = await session.scalar(
            select(LedgerEntry.created_at).where(LedgerEntry.id == last_top_up)
        )
        already = await session.scalar(
            select(func.count()).where(
                EmailLogEntry.user_id == user.id,
                EmailLogEntry.kind == EmailKind.LOW_BALANCE,
                EmailLogEntry.sent_at >= top_up_at,
            )
        )
        if already:
            continue
        mail = messages.low_balance(
            user_id=user.id,
            to=user.email,
            name=user.name,
            balance=format_units(int(balance)),
            dashboard_url=dashboard_url,
        )
        due.append(await record(session, mail))
    return due
