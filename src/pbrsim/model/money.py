"""Money in the engine is integer pence; files and reports use pounds, formatted here for every reader."""

from __future__ import annotations

import numpy as np


def to_pence(pounds: float) -> int:
    return int(round(pounds * 100))


def to_pounds(pence) -> float | np.ndarray:
    return np.asarray(pence) / 100.0 if not np.isscalar(pence) else pence / 100.0


def split_evenly(total: int, parts: int) -> np.ndarray:
    """Split integer pence into ``parts`` instalments that differ by at most a penny and add up exactly."""
    base, rem = divmod(total, parts)
    out = np.full(parts, base, dtype=np.int64)
    out[:rem] += 1
    return out


# Formatting for people: one way to write money, shares and intervals in terminals, reports and sentences.


def money(x, currency: str = "GBP") -> str:
    if x is None:
        return "–"
    # the minus sign (U+2212), not a hyphen: a line never breaks after it, so "(−£58,267)" stays whole in a table
    sign = "\u2212" if round(x) < 0 else ""
    symbol = "£" if currency == "GBP" else ""
    return f"{sign}{symbol}{abs(x):,.0f}"


def pence_exact(pence: int, currency: str = "GBP") -> str:
    """Integer pence written to the penny, '£3,723,333.07' (checks that compare money must show every penny)."""
    pence = int(pence)
    sign = "-" if pence < 0 else ""
    symbol = "£" if currency == "GBP" else ""
    pounds, p = divmod(abs(pence), 100)
    return f"{sign}{symbol}{pounds:,}.{p:02d}"


def pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def irr_range(irr: dict | None) -> str:
    """An IRR distribution over runs: 'median (5th to 95th percentile) a year', e.g. 3.2% (-100.0% to 13.0%) a year."""
    if not irr or irr.get("median") is None:
        return "–"
    return f"{pct(irr['median'])} ({pct(irr['p5'])} to {pct(irr['p95'])}) a year"


def interval(ci: dict | None, fmt=pct) -> str:
    """'mean (lo–hi)', with the unit shown once: 31.3% (30.8–31.9), £4,186 (4,145–4,227)."""
    if not ci or ci.get("mean") is None:
        return "–"
    if ci.get("lo") is None:
        return fmt(ci["mean"])
    bare = lambda x: fmt(x).replace("£", "").replace("%", "")  # noqa: E731
    return f"{fmt(ci['mean'])} ({bare(ci['lo'])}–{bare(ci['hi'])})"
