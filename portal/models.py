"""Every table, imported in one place so metadata is complete (Alembic, schema.prisma)."""

from portal.accounts.models import AccountLink, ThrottleCounter, User
from portal.billing.models import AutoTopUpAttempt, BillingAccount, StripeEvent
from portal.connect.models import ConnectCode
from portal.credits.models import AutoTopUp, BalanceAlert, CreditAccount, LedgerEntry, Reservation
from portal.db.base import Base
from portal.email.models import EmailLogEntry
from portal.sessions.models import WebSession
from portal.tokens.models import GatewayToken
from portal.usage.models import UsageRecord

__all__ = [
    "AccountLink",
    "AutoTopUp",
    "AutoTopUpAttempt",
    "BalanceAlert",
    "Base",
    "BillingAccount",
    "ConnectCode",
    "CreditAccount",
    "EmailLogEntry",
    "GatewayToken",
    "LedgerEntry",
    "Reservation",
    "StripeEvent",
    "ThrottleCounter",
    "UsageRecord",
    "User",
    "WebSession",
]
