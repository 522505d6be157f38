"""The low-balance notice: one email per crossing of the threshold.

The settlement that takes a balance below `workforce_gateway.credits.low_balance_credits`
writes a balance alert in its own statement (`portal.credits.alerts`); the portal takes it
at once (`portal.jobs.balance_alerts`) and sends this notice. A balance that stays below
crosses nothing, so it is not told again until it has gone back up and down once more.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from portal.accounts import service as accounts
from portal.accounts.models import AccountStatus
from portal.config import ConfigError, load_plugin_settings
from portal.config.plugin_settings import PluginSettings
from portal.credits.units import credits_to_units, format_units
from portal.email import messages
from portal.email import service as email
from portal.email.messages import Mail

__all__ = ["notice", "threshold_units"]


def threshold_units(config_path: Path) -> int:
    """The threshold from config.yaml (the default when the file is unusable)."""
    try:
        plugin = load_plugin_settings(config_path)
    except (ConfigError, OSError):
        plugin = PluginSettings()
    return credits_to_units(plugin.credits.low_balance_credits)


async def notice(
    session: AsyncSession, user_id: str, *, balance: int, dashboard_url: str
) -> Mail | None:
    """The notice for a crossing that left the balance at `balance`, recorded in the
    caller's transaction (send it after the commit); None for an account that cannot be
    written to (gone, suspended, address not verified)."""
    user = await accounts.get_by_id(session, user_id)
    if user is None or user.status != AccountStatus.ACTIVE or user.email_verified_at is None:
        return None
    mail = messages.low_balance(
        user_id=user.id,
        to=user.email,
        name=user.name,
        balance=format_units(balance),
        dashboard_url=dashboard_url,
    )
    return await email.record(session, mail)
