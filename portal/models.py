"""Every table, imported in one place so metadata is complete (Alembic, schema.prisma)."""

from portal.accounts.models import User
from portal.credits.models import CreditAccount, LedgerEntry, Reservation
from portal.db.base import Base
from portal.tokens.models import GatewayToken
from portal.usage.models import UsageRecord

__all__ = [
    "Base",
    "CreditAccount",
    "GatewayToken",
    "LedgerEntry",
    "Reservation",
    "UsageRecord",
    "User",
]
