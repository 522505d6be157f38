"""Parse the usage page's query (date range, page) forgivingly, with a message when wrong."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

__all__ = ["PAGE_SIZE", "UsageQuery", "parse_usage_query"]

PAGE_SIZE = 50


@dataclass(frozen=True)
class UsageQuery:
    start: date | None
    end: date | None  # inclusive
    page: int
    error: str | None = None

    @property
    def since(self) -> datetime | None:
        return datetime.combine(self.start, datetime.min.time(), UTC) if self.start else None

    @property
    def until(self) -> datetime | None:
        """The instant after the last day; None (no bound) when that day is the last one
        a `date` can hold (9999-12-31 has no next day)."""
        if self.end is None or self.end == date.max:
            return None
        return datetime.combine(self.end + timedelta(days=1), datetime.min.time(), UTC)

    @property
    def offset(self) -> int:
        return (self.page - 1) * PAGE_SIZE


def _date(text: str | None) -> date | None:
    if not text:
        return None
    return date.fromisoformat(text.strip()[:10])


def parse_usage_query(start: str | None, end: str | None, page: str | None) -> UsageQuery:
    try:
        page_number = max(1, min(int(page or "1"), 1_000_000))
    except ValueError:
        page_number = 1
    try:
        first, last = _date(start), _date(end)
    except ValueError:
        return UsageQuery(None, None, 1, "Dates look like 2025-01-31.")
    if first and last and first > last:
        return UsageQuery(None, None, 1, "The start date is after the end date.")
    return UsageQuery(first, last, page_number)
