"""The daily-usage chart as inline SVG, drawn on the server (no script, no CSS needed)."""

from __future__ import annotations

from markupsafe import Markup, escape

from portal.credits.units import format_units
from portal.usage.reports import DailyUsage

__all__ = ["daily_usage_svg"]

WIDTH, HEIGHT, PAD = 720, 180, 24


def daily_usage_svg(days: list[DailyUsage]) -> Markup:
    """Bars of credits used per UTC day; each bar has a tooltip with the day's totals."""
    peak = max((d.credits for d in days), default=0)
    peak_requests = max((d.requests for d in days), default=0)
    slot = (WIDTH - 2 * PAD) / max(len(days), 1)
    bars = []
    for index, day in enumerate(days):
        # credits can be 0 for free or failed calls: fall back to request counts
        value, top = (day.credits, peak) if peak else (day.requests, peak_requests)
        height = 0 if not top else max(2.0, (HEIGHT - 2 * PAD) * value / top) if value else 0
        x = PAD + index * slot + slot * 0.15
        y = HEIGHT - PAD - height
        label = (
            f"{day.day.isoformat()}: {day.requests} requests, {day.tokens} tokens, "
            f"{format_units(day.credits)} credits"
        )
        bars.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" '
            f'height="{height:.1f}" fill="#3b6fd8" data-day="{day.day.isoformat()}" '
            f'data-requests="{day.requests}"><title>{escape(label)}</title></rect>'
        )
    first = days[0].day.isoformat() if days else ""
    last = days[-1].day.isoformat() if days else ""
    axis = (
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
        'stroke="#999" stroke-width="1"/>'
        f'<text x="{PAD}" y="{HEIGHT - 6}" font-size="11" fill="#555">{first}</text>'
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - 6}" font-size="11" fill="#555" '
        f'text-anchor="end">{last}</text>'
        f'<text x="{PAD}" y="{PAD - 8}" font-size="11" fill="#555">'
        f"peak {escape(format_units(peak))} credits/day</text>"
    )
    return Markup(
        f'<svg id="daily-usage-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="Credits used per day, last {len(days)} days" '
        f'xmlns="http://www.w3.org/2000/svg">{axis}{"".join(bars)}</svg>'
    )
