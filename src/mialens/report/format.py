"""The small formatters the report pages share: numbers, percentages, p-values, dates."""

from __future__ import annotations

import base64
import datetime as _dt


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _pct(level: float) -> str:
    """An FPR level as a percentage: ``0.001 -> "0.1%"``."""
    return f"{100 * level:g}%"


def _date(created: str) -> str:
    try:
        stamp = _dt.datetime.fromisoformat(created)
    except ValueError:
        return created
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(_dt.timezone.utc)
        return stamp.strftime("%Y-%m-%d %H:%M UTC")
    return stamp.strftime("%Y-%m-%d %H:%M")


def _share(share: float) -> str:
    """A share of scores as a percentage: ``0.474 -> "47%"``, ``0.042 -> "4.2%"``."""
    return f"{100 * share:.0f}%" if share >= 0.095 else f"{100 * share:.2g}%"


def _span(values: list[float], fmt: str) -> str:
    lo, hi = fmt.format(min(values)), fmt.format(max(values))
    return lo if lo == hi else f"{lo} – {hi}"


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2g}" if value >= 1e-4 else "< 1e-4"


def _b64(png: bytes) -> str:
    return base64.b64encode(png).decode("ascii")
