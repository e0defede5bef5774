"""The figures a design is judged on, how each is estimated, and targets such as ``failure(east_charity) <= 0.05``.

Every figure is the summary figure of the same name elsewhere in pbrsim, computed from the same
per-replication columns with the same estimator (``analysis.metrics`` and ``analysis.parking``), so a design's
spend or failure probability means exactly what ``pbrsim run`` prints for its scenario:

=============================  ==============================================  =======================  ======
figure                         per-replication columns                         estimator (95% interval)  better
=============================  ==============================================  =======================  ======
spend                          paid_total                                      mean                      lower
spend_per_outcome              paid_total / outcomes                           pooled ratio              lower
spend_per_complex_outcome      paid_complex / outcomes_complex                 pooled ratio              lower
outcomes, outcomes(SEG)        outcomes, outcomes[SEG]                         mean                      higher
complex_outcomes               outcomes_complex                                mean                      higher
outcome_rate, (SEG)            outcomes[SEG] / referrals[SEG]                  pooled ratio              higher
complex_outcome_rate           outcomes_complex / referrals_complex            pooled ratio              higher
parking, parking(SEG)          minimal_months[SEG] / service_months[SEG]       pooled ratio              lower
dropped_rate, (SEG)            dropped[SEG] / referrals[SEG]                   pooled ratio              lower
equity_ratio                   complex / least complex outcome rate            ratio of pooled ratios    higher
failure, failure(ORG)          failed_any, failed[ORG]                         share, Wilson interval    lower
margin(ORG)                    margin[ORG]                                     mean                      higher
net_public_value               net_public_value (scenarios with ``value:``)    mean                      higher
benefit_cost_ratio             value_benefits / value_costs                    pooled ratio              higher
=============================  ==============================================  =======================  ======

Where exact mode applies (``engine.exact``), each figure also has its exact value: the limit the estimator
converges to (a pooled ratio converges to the ratio of expectations). Exact mode needs a holistic provider
that cannot fail, so there parking, dropped clients and failure are exactly zero.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from ..analysis.metrics import mean_ci, ratio_ci, wilson
from ..analysis.parking import ratio_of_ratios_ci


@dataclass(frozen=True)
class Estimate:
    """A figure's value for one design: the estimate and its 95% interval (equal for an exact value)."""

    mean: float
    lo: float
    hi: float
    replications: int | None  # None: exact

    @property
    def exact(self) -> bool:
        return self.replications is None

    def as_dict(self) -> dict:
        return {"mean": self.mean, "lo": self.lo, "hi": self.hi, "replications": self.replications}

    def projected(self, n: int, estimator: str) -> "Estimate":
        """The interval this estimate would have from ``n`` replications, if the estimate stayed where it is:
        the Wilson interval of the same share of ``n`` runs, or the half-widths scaled by sqrt(replications / n)."""
        if self.replications is None or not self.replications or n <= self.replications or math.isnan(self.mean):
            return self
        if estimator == "share":
            w = wilson(int(round(self.mean * n)), n)
            return Estimate(self.mean, w["lo"], w["hi"], n)
        k = math.sqrt(self.replications / n)
        lo = self.mean - (self.mean - self.lo) * k if math.isfinite(self.lo) else self.lo
        hi = self.mean + (self.hi - self.mean) * k if math.isfinite(self.hi) else self.hi
        return Estimate(self.mean, lo, hi, n)


@dataclass(frozen=True)
class Kind:
    """One kind of figure: its label, unit, better direction, what its argument names and how it is estimated."""

    name: str
    label: str  # with {arg} where the argument goes
    unit: str  # money | pct | count | ratio
    better: str  # lower | higher
    argument: str | None  # None, "segment", "organisation", "segment?" or "organisation?" (optional)
    columns: Callable[[str | None], tuple[str, ...]]
    estimator: str  # mean | ratio | share | ratio_of_ratios
    needs: str | None = None  # "complexity" (segments of different complexity) or "value" (a value section)


def _seg(base: str) -> Callable[[str | None], str]:
    return lambda arg: f"{base}[{arg}]" if arg else base


KINDS: dict[str, Kind] = {k.name: k for k in [
    Kind("spend", "expected spend", "money", "lower", None, lambda a: ("paid_total",), "mean"),
    Kind("spend_per_outcome", "spend per outcome", "money", "lower", None, lambda a: ("paid_total", "outcomes"), "ratio"),
    Kind("spend_per_complex_outcome", "spend per complex-client outcome", "money", "lower", None,
         lambda a: ("paid_complex", "outcomes_complex"), "ratio", "complexity"),
    Kind("outcomes", "expected outcomes{of}", "count", "higher", "segment?", lambda a: (_seg("outcomes")(a),), "mean"),
    Kind("complex_outcomes", "expected complex-client outcomes", "count", "higher", None, lambda a: ("outcomes_complex",), "mean",
         "complexity"),
    Kind("outcome_rate", "outcome rate{of}", "pct", "higher", "segment?", lambda a: (_seg("outcomes")(a), _seg("referrals")(a)),
         "ratio"),
    Kind("complex_outcome_rate", "complex-client outcome rate", "pct", "higher", None, lambda a: ("outcomes_complex", "referrals_complex"),
         "ratio", "complexity"),
    Kind("parking", "parking rate{of}", "pct", "lower", "segment?", lambda a: (_seg("minimal_months")(a), _seg("service_months")(a)),
         "ratio"),
    Kind("dropped_rate", "dropped-client rate{of}", "pct", "lower", "segment?", lambda a: (_seg("dropped")(a), _seg("referrals")(a)),
         "ratio"),
    Kind("equity_ratio", "equity ratio (complex / least complex outcome rate)", "ratio", "higher", None,
         lambda a: ("outcomes_complex", "referrals_complex", "outcomes_least", "referrals_least"), "ratio_of_ratios", "complexity"),
    Kind("failure", "chance {arg} runs out of cash", "pct", "lower", "organisation?",
         lambda a: (f"failed[{a}]" if a else "failed_any",), "share"),
    Kind("margin", "expected margin of {arg}", "money", "higher", "organisation", lambda a: (f"margin[{a}]",), "mean"),
    Kind("net_public_value", "net present public value", "money", "higher", None, lambda a: ("net_public_value",), "mean", "value"),
    Kind("benefit_cost_ratio", "benefit-cost ratio", "ratio", "higher", None, lambda a: ("value_benefits", "value_costs"), "ratio",
         "value"),
]}

PARETO_AXES = ("spend", "complex_outcomes", "failure")  # the trade-off every design search reports


@dataclass(frozen=True)
class Figure:
    """A kind of figure with its argument, e.g. ``failure(east_charity)``."""

    kind: Kind
    arg: str | None = None

    @property
    def key(self) -> str:
        return f"{self.kind.name}({self.arg})" if self.arg else self.kind.name

    @property
    def label(self) -> str:
        if self.kind.name == "failure" and not self.arg:
            return "chance any organisation runs out of cash"
        return self.kind.label.format(arg=self.arg or "", of=f": {self.arg}" if self.arg else "")

    @property
    def columns(self) -> tuple[str, ...]:
        return self.kind.columns(self.arg)

    @property
    def unit(self) -> str:
        return self.kind.unit

    @property
    def better(self) -> str:
        return self.kind.better

    def estimate(self, per_rep: pd.DataFrame) -> Estimate:
        """The estimate and 95% interval over the replications in ``per_rep`` (one row per replication)."""
        n = len(per_rep)
        cols = [per_rep[c].to_numpy(dtype=float) if c in per_rep else np.zeros(n) for c in self.columns]
        est = self.kind.estimator
        if est == "mean":
            d = mean_ci(cols[0])
        elif est == "ratio":
            d = ratio_ci(cols[0], cols[1])
        elif est == "share":
            d = wilson(int(np.nansum(cols[0])), n)
        else:
            d = ratio_of_ratios_ci(*cols)
        mean = _num(d["mean"])
        lo, hi = min(_num(d["lo"], mean), mean), max(_num(d["hi"], mean), mean)  # (Wilson's ends can miss 0 or 1 by 1e-18)
        if n < 2 and est != "share":  # no interval from one replication: as wide as can be
            lo, hi = -math.inf, math.inf
        return Estimate(mean, lo, hi, n)

    def exact(self, values: dict[str, float]) -> Estimate:
        """The exact value from the expected quantities of ``exact_quantities`` (same keys as the columns)."""
        if self.kind.name in ("parking", "dropped_rate", "failure"):  # see the module docstring
            return Estimate(0.0, 0.0, 0.0, None)
        cols = [values.get(c, 0.0) for c in self.columns]
        est = self.kind.estimator
        if est == "mean":
            v = cols[0]
        elif est == "ratio":
            v = cols[0] / cols[1] if cols[1] else math.nan
        else:
            v = (cols[0] / cols[1]) / (cols[2] / cols[3]) if cols[1] and cols[3] and cols[2] else math.nan
        return Estimate(float(v), float(v), float(v), None)


def _num(x, default=math.nan) -> float:
    return default if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


# ---------------------------------------------------------------------------------------------
# Targets: a figure, a direction and a bound


@dataclass(frozen=True)
class Target:
    """``figure <= bound`` or ``figure >= bound``; as written in the problem file or on the command line."""

    figure: Figure
    op: str  # "<=" or ">="
    bound: float
    text: str

    def slack(self, e: Estimate, end: str = "mean") -> float:
        """bound - value for <= (value - bound for >=), at the interval's ``mean``, ``far`` or ``near`` end."""
        if self.op == "<=":
            v = {"mean": e.mean, "far": e.hi, "near": e.lo}[end]
            return self.bound - v
        v = {"mean": e.mean, "far": e.lo, "near": e.hi}[end]
        return v - self.bound

    def met(self, e: Estimate, end: str = "far") -> bool:
        """Met at the interval's far end (the confidence bound: the default), its near end or the estimate."""
        s = self.slack(e, end)
        return not math.isnan(s) and s >= -1e-12 * max(1.0, abs(self.bound))

    def violation(self, e: Estimate) -> float:
        """How far the estimate misses the bound, relative to the bound's scale (0 when met)."""
        s = self.slack(e, "mean")
        if math.isnan(s):
            return math.inf
        return max(0.0, -s) / self.scale

    @property
    def scale(self) -> float:
        floor = {"pct": 0.01, "money": 1.0, "count": 1.0, "ratio": 0.01}[self.figure.unit]
        return max(abs(self.bound), floor)

    def describe(self, e: Estimate, fmt) -> str:
        return f"{self.figure.key} {self.op} {fmt(self.bound, self.figure.unit)}"


_EXPR = re.compile(r"^\s*([a-z_]+)\s*(?:\(\s*([^()]*?)\s*\))?\s*(<=|>=|=<|=>|<|>|==|=)\s*(.+?)\s*$")


class TargetError(ValueError):
    """A target that cannot be read; the message says what is wrong and how to write it."""


def parse_number(text: str, unit: str) -> float:
    """``0.05``, ``5%``, ``£250,000``, ``250000`` -> float (a percentage is divided by 100)."""
    t = text.strip().replace(",", "").replace("_", "")
    pct = t.endswith("%")
    t = t.rstrip("%").lstrip("£$€").strip()
    try:
        v = float(t)
    except ValueError:
        raise TargetError(f"cannot read {text!r} as a number (write e.g. 0.05, 5% or 250000)") from None
    if not math.isfinite(v):
        raise TargetError(f"{text!r} is not a finite number")
    return v / 100 if pct else v


def parse_figure(name: str, arg: str | None) -> Figure:
    kind = KINDS.get(name)
    if kind is None:
        raise TargetError(f"unknown figure {name!r}; figures are {sorted(KINDS)}")
    arg = arg or None
    if arg is not None and kind.argument is None:
        raise TargetError(f"{name} takes no argument in brackets")
    if arg is None and kind.argument in ("segment", "organisation"):
        raise TargetError(f"{name} needs an {kind.argument} in brackets, e.g. {name}(NAME)")
    if kind.name == "failure" and arg == "any":
        arg = None
    return Figure(kind, arg)


_FIGURE = re.compile(r"^\s*([a-z_]+)\s*(?:\(\s*([^()]*?)\s*\))?\s*$")


def parse_figure_text(text: str) -> Figure:
    """Read ``complex_outcomes`` or ``failure(east_charity)``."""
    m = _FIGURE.match(text) if isinstance(text, str) else None
    if not m:
        raise TargetError(f"cannot read {text!r}: write a figure name, with an argument in brackets where it takes one, "
                          "e.g. spend_per_outcome or margin(east_charity)")
    return parse_figure(*m.groups())


def parse_target(text: str) -> Target:
    """Read ``failure(hope_trust) <= 0.05``, ``complex_outcome_rate >= 6%``, ``spend <= 250000``."""
    if not isinstance(text, str):
        raise TargetError("write a target as text, e.g. \"failure(hope_trust) <= 0.05\"")
    m = _EXPR.match(text)
    if not m:
        raise TargetError(f"cannot read {text!r}: write FIGURE <= NUMBER or FIGURE >= NUMBER, "
                          "e.g. \"failure(hope_trust) <= 0.05\" or \"complex_outcome_rate >= 0.06\"")
    name, arg, op, number = m.groups()
    if op in ("<", ">", "==", "="):
        raise TargetError(f"use <= or >= (not {op}) in {text!r}: a target bounds a figure from one side")
    op = {"=<": "<=", "=>": ">="}.get(op, op)
    figure = parse_figure(name, arg)
    return Target(figure, op, parse_number(number, figure.unit), " ".join(text.split()))


def check_figure(figure: Figure, segments: list[str], organisations: list[str], has_complexity: bool,
                 has_value: bool) -> str | None:
    """Why ``figure`` cannot be computed for this scenario (None when it can)."""
    k = figure.kind
    if figure.arg is not None and k.argument and k.argument.startswith("segment") and figure.arg not in segments:
        return f"unknown segment {figure.arg!r}; segments are {segments}"
    if figure.arg is not None and k.argument and k.argument.startswith("organisation") and figure.arg not in organisations:
        return f"unknown organisation {figure.arg!r}; organisations are {organisations}"
    if k.needs == "complexity" and not has_complexity:
        return f"{k.name} needs segments of different complexity (segments.<name>.complexity)"
    if k.needs == "value" and not has_value:
        return f"{k.name} needs a value section in the scenario (docs/value.md)"
    return None
