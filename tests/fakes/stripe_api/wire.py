"""Stripe's wire format: bracketed form bodies in; ids, list objects and errors out."""

from __future__ import annotations

import calendar
import re
import secrets
import string
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe

__all__ = [
    "API_VERSION",
    "ApiError",
    "FakeStripeError",
    "Obj",
    "add_interval",
    "metadata",
    "missing",
    "money",
    "new_id",
    "now",
    "page",
    "parse_stripe_form",
    "require",
    "to_int",
]

# the API version the installed SDK pins; events carry it like Stripe's do
API_VERSION: str = stripe.api_version

Obj = dict[str, Any]
_ALNUM = string.ascii_letters + string.digits


class FakeStripeError(Exception):
    """A helper was asked for something Stripe would not do (unknown id, wrong state)."""


class ApiError(Exception):
    """An error answer: ``{"error": {...}}`` with Stripe's status, type, code and param."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        extra: Obj | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = (
            status,
            message,
            type,
            code,
            param,
        )
        self.extra = extra or {}  # a card error's decline_code, payment_intent...

    def body(self, request_id: str) -> Obj:
        err: Obj = {"message": self.message, "type": self.type}
        if self.code:
            err["code"] = self.code
            err["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param:
            err["param"] = self.param
        if self.status != 401:
            err["request_log_url"] = f"https://dashboard.stripe.com/test/logs/{request_id}"
        return {"error": {**err, **self.extra}}


def missing(noun: str, obj_id: str, param: str = "id", status: int = 404) -> ApiError:
    return ApiError(status, f"No such {noun}: '{obj_id}'", code="resource_missing", param=param)


def now() -> int:
    return int(time.time())


def new_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(length))


def parse_stripe_form(pairs: Iterable[tuple[str, str]]) -> Obj:
    """Decode Stripe's bracketed form keys into nested dicts and lists.

    ``a[b][0][c]=1`` -> ``{"a": {"b": [{"c": "1"}]}}``; ``expand[]=x`` appends. Values stay
    strings (as on the wire); a dict whose keys are all digits becomes a list.
    """
    root: Obj = {}
    for key, value in pairs:
        m = re.fullmatch(r"([^\[\]]+)((?:\[[^\[\]]*\])*)", key)
        parts = [m.group(1), *re.findall(r"\[([^\[\]]*)\]", m.group(2))] if m else [key]
        node = root
        for i, part in enumerate(parts):
            if part == "":
                part = str(len(node))
            if i == len(parts) - 1:
                node[part] = value
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = node[part] = {}
                node = child
    parsed: Obj = _listify(root)
    return parsed


def _listify(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _listify(v) for k, v in node.items()}
        if out and all(k.isdigit() for k in out):
            return [out[k] for k in sorted(out, key=int)]
        return out
    return node


def require(params: Obj, name: str) -> Any:
    value = params.get(name)
    if value in (None, ""):
        raise ApiError(
            400, f"Missing required param: {name}.", code="parameter_missing", param=name
        )
    return value


def to_int(value: Any, param: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError(400, f"Invalid integer: {value}", param=param) from None


def metadata(value: Any, param: str = "metadata") -> dict[str, str]:
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise ApiError(400, "Invalid object", param=param)
    return {str(k): str(v) for k, v in value.items()}


def page(items: list[Obj], params: Obj, url: str) -> Obj:
    """A list object of ``items`` (newest first), honouring ``limit`` and ``starting_after``
    (what the SDK's ``auto_paging_iter`` sends)."""
    limit = to_int(params.get("limit", 10), "limit")
    if not 1 <= limit <= 100:
        raise ApiError(
            400,
            "Invalid limit: must be between 1 and 100",
            code="parameter_invalid_integer",
            param="limit",
        )
    after = params.get("starting_after")
    if after:
        ids = [i["id"] for i in items]
        if after not in ids:
            raise missing("object", after, "starting_after", 400)
        items = items[ids.index(after) + 1 :]
    return {"object": "list", "data": items[:limit], "has_more": len(items) > limit, "url": url}


def add_interval(ts: int, interval: str, count: int) -> int:
    """``ts`` moved on by ``count`` intervals (day/week/month/year), as Stripe bills."""
    dt = datetime.fromtimestamp(ts, UTC)
    if interval in ("day", "week"):
        return int((dt + timedelta(**{f"{interval}s": count})).timestamp())
    m0 = dt.month - 1 + count * (12 if interval == "year" else 1)
    year, month = dt.year + m0 // 12, m0 % 12 + 1
    day = min(dt.day, calendar.monthrange(year, month)[1])
    return int(dt.replace(year=year, month=month, day=day).timestamp())


def money(amount: int | None, currency: str | None) -> str:
    cur = (currency or "usd").lower()
    value = (amount or 0) / 100
    symbol = {"usd": "$", "eur": "€", "gbp": "£"}.get(cur)
    return f"{symbol}{value:,.2f}" if symbol else f"{value:,.2f} {cur.upper()}"
