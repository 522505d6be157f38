"""Read form fields as plain strings with limits, for messages on the page instead of
framework validation errors."""

from __future__ import annotations

from fastapi import Request

__all__ = ["FormError", "read_form"]


class FormError(ValueError):
    """A problem with what was typed, phrased for the person."""


async def read_form(request: Request, limits: dict[str, tuple[str, int]]) -> dict[str, str]:
    """`limits` maps field name to (label, maximum length). Missing fields read as ""."""
    form = await request.form()
    values = {}
    for name, (label, maximum) in limits.items():
        raw = form.get(name)
        value = raw if isinstance(raw, str) else ""
        if len(value) > maximum:
            raise FormError(f"{label} is too long (at most {maximum} characters).")
        if "\x00" in value:
            raise FormError(f"{label} contains a character we cannot accept.")
        values[name] = value
    return values
