"""Everything held about a person, as one JSON document.

Built from the schema (`privacy.linked`): the account row and every row of every table
linked to it, all columns except one-way secret digests, which are named under
`withheld` instead. Amounts in ledger units are never a bare number: a units column
appears as `<name>_units` (integer) and `<name>_credits` (decimal string), e.g.
`amount_units: -42000`, `amount_credits: "-0.000042"` (format 2; format 1 had `amount`).
Failed sign-ins are keyed by a hash of the address, so they are found through that key.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncSession

from portal.accounts.models import ThrottleCounter, User
from portal.accounts.throttle import account_key
from portal.credits.units import UNITS_PER_CREDIT, labelled_amount, unit_base_name
from portal.db.base import utcnow
from portal.privacy.linked import is_withheld, linked_tables

__all__ = ["EXPORT_FORMAT", "build_export", "export_filename", "export_json"]

EXPORT_FORMAT = "workforce-gateway-export/2"

_ABOUT = {
    "users": "your account",
    "gateway_tokens": "your gateway tokens (metadata; the secret itself is never stored)",
    "web_sessions": "your signed-in browsers",
    "usage_records": "one row per gateway request: counts, model, times, cost; never content",
    "ledger_entries": "every change to your credit balance",
    "credit_accounts": "your balance and credits held for requests in flight",
    "reservations": "credits held for requests in flight",
    "connect_codes": "apps you connected: their name, where the one-time code went, when "
    "(the code itself is never stored)",
    "email_log": "which messages we sent you, and when (not their text)",
    "account_links": "one-time links we emailed you (verification, password reset)",
    "throttle_counters": "recent sign-in attempts and mail to your address, counted to "
    "stop abuse (kept a day)",
}


async def build_export(session: AsyncSession, user: User) -> dict[str, Any]:
    users = User.__table__
    account = (await session.execute(select(users).where(users.c.id == user.id))).mappings().one()
    withheld = {f"users.{c.name}": "withheld" for c in users.columns if is_withheld(c)}
    tables: dict[str, list[dict[str, Any]]] = {}
    for linked in linked_tables():
        table = linked.table
        rows = await session.execute(
            select(table).where(linked.user_column == user.id).order_by(*table.primary_key)
        )
        tables[table.name] = [_row(table, row) for row in rows.mappings()]
        for column in table.columns:
            if is_withheld(column):
                withheld[f"{table.name}.{column.name}"] = "withheld"
    counters = ThrottleCounter.__table__
    rows = await session.execute(
        select(counters).where(counters.c.subject_hash == account_key(user.email))
    )
    tables["throttle_counters"] = [_row(counters, row) for row in rows.mappings()]
    withheld["throttle_counters.key_hash"] = "withheld"
    withheld["throttle_counters.subject_hash"] = "withheld"
    for key in withheld:
        withheld[key] = "a one-way digest of a secret; it cannot be turned back into the secret"
    return {
        "format": EXPORT_FORMAT,
        "exported_at": utcnow().isoformat(),
        "account": _row(users, account),
        "tables": dict(sorted(tables.items())),
        "about": {name: _ABOUT.get(name, name.replace("_", " ")) for name in sorted(tables)},
        "withheld": withheld,
        "units": {
            "units_per_credit": UNITS_PER_CREDIT,
            "about": "Fields ending in _units are integer ledger units "
            f"({UNITS_PER_CREDIT:,} per credit); the matching _credits field is the same "
            "amount in credits, as a decimal string.",
        },
        "not_stored": "Prompts, messages, files, tool calls and model replies are never stored.",
    }


def _row(table: Table, row: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for column in table.columns:
        if is_withheld(column):
            continue
        base = unit_base_name(column.info)
        if base is not None and row[column] is not None:
            out.update(labelled_amount(base, row[column]))
        elif base is not None:  # none (a token without a limit): labelled all the same
            out.update({f"{base}_units": None, f"{base}_credits": None})
        else:
            out[column.name] = _value(row[column])
    return out


def _value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def export_json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, indent=2, ensure_ascii=False).encode("utf-8")


def export_filename() -> str:
    return f"workforce-gateway-export-{utcnow():%Y%m%d-%H%M%S}.json"
