"""Number formats of the report: the same as the terminal summary (``pbrsim.cli.terminal``) and the
comparison table of ``pbrsim compare``, so a figure reads the same everywhere.

Tests format the summary files with these functions and look for the result in the HTML tables.
"""

from __future__ import annotations

import math

from ..model.money import interval as _interval
from ..model.money import money as _money
from ..model.money import pct as _pct

DASH = "–"


def missing(x) -> bool:
    if x is None:
        return True
    try:
        return math.isnan(float(x))
    except (TypeError, ValueError):
        return True


def money(x, currency: str = "GBP") -> str:
    """£12,345 (whole pounds; ``–`` when missing)."""
    return DASH if missing(x) else _money(float(x), currency)


def pct(x) -> str:
    """31.3% (``–`` when missing)."""
    return DASH if missing(x) else _pct(float(x))


def number(x, digits: int = 1) -> str:
    return DASH if missing(x) else f"{float(x):,.{digits}f}"


def month(x) -> str:
    return DASH if missing(x) else f"{float(x):.0f}"


def clean(ci: dict | None) -> dict | None:
    """An interval dict with NaN turned into None."""
    if not ci:
        return None
    return {k: (None if missing(v) else float(v)) if k in ("mean", "lo", "hi") else v for k, v in ci.items()}


def interval(ci: dict | None, unit: str = "pct", currency: str = "GBP") -> str:
    """'mean (lo–hi)' as in the terminal: 31.3% (30.8–31.9), £4,186 (4,145–4,227)."""
    ci = clean(ci)
    if unit == "pct":
        return _interval(ci, pct)
    if unit == "money":
        return _interval(ci, lambda x: money(x, currency))
    if unit == "ratio":
        return _interval(ci, lambda x: f"{float(x):.2f}")
    if not ci or ci.get("mean") is None:
        return DASH
    if ci.get("lo") is None:
        return number(ci["mean"])
    return f"{number(ci['mean'])} ({number(ci['lo'])}–{number(ci['hi'])})"


def value(x, unit: str, currency: str = "GBP") -> str:
    """One figure in its unit (pct, money, count, months, ratio)."""
    if unit == "pct":
        return pct(x)
    if unit == "money":
        return money(x, currency)
    if unit == "ratio":
        return DASH if missing(x) else f"{float(x):.2f}"
    return number(x)


def bare(x, unit: str, signed: bool = False) -> str:
    """A number without its unit (interval bounds), signed for differences — as ``pbrsim compare``."""
    if missing(x):
        return DASH
    v = 100 * float(x) if unit == "pct" else float(x)
    digits = 0 if unit == "money" else 2 if unit == "ratio" else 1
    return f"{v:+,.{digits}f}" if signed else f"{v:,.{digits}f}"


def diff(x, unit: str, currency: str = "GBP") -> str:
    """A paired difference: +1.2 pp, -£3,400, +0.5."""
    if missing(x):
        return DASH
    x = float(x)
    if unit == "pct":
        return f"{100 * x:+.1f} pp"
    if unit == "money":
        return ("+" if x > 0 else "") + money(x, currency)
    if unit == "ratio":
        return f"{x:+.2f}"
    return f"{x:+,.1f}"


def estimate(mean, lo, hi, unit: str, currency: str = "GBP") -> str:
    """'mean (lo–hi)' from three numbers, as the comparison table of ``pbrsim compare``."""
    if missing(lo) or missing(hi):
        return value(mean, unit, currency)
    return f"{value(mean, unit, currency)} ({bare(lo, unit)}–{bare(hi, unit)})"


def difference(d, lo, hi, se, unit: str, currency: str = "GBP", lead: str = "Δ ") -> str:
    """'Δ +1.2 pp (+0.4 to +2.0)', 'Δ 0: identical in every run', as ``pbrsim compare``."""
    if missing(d):
        return ""
    if not missing(se) and float(se) == 0:
        if float(d) == 0:
            return "Δ 0: identical in every run"
        return f"{lead}{diff(d, unit, currency)} in every run"
    if missing(lo) or missing(hi):
        return f"{lead}{diff(d, unit, currency)}"
    return f"{lead}{diff(d, unit, currency)} ({bare(lo, unit, True)} to {bare(hi, unit, True)})"


def label(name: str) -> str:
    """payment kind / column key to words: service_fee -> service fee."""
    return str(name).replace("_", " ")
