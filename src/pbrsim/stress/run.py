"""Bid stress tests: named shocks to a scenario and what they do to one organisation's cash.

The stresses themselves (built-in and from a user's file) are defined in ``pbrsim.stress.catalogue``; this module
runs them for one organisation and computes its figures.

How the figures are computed (``docs/stress-testing.md`` says it in words):

- Every variant (the base and each stress) is run with the organisation's **credit limit removed**, so it
  cannot fail and its whole cash path is seen. Until the month its balance first goes below the real limit
  that run is identical to a run with the limit (the limit enters the engine only in the insolvency
  check), so "ran out of cash" = the path went below −limit at some month end, exactly.
- **Working capital needed**: the smallest extra opening reserve that keeps P(run out) at or below the
  target. Each replication's own requirement e_r is found by replaying its month-by-month cash flows with
  a reserve added (overdraft interest is the only cash flow that depends on the balance), to the penny;
  the figure is the order statistic of e_r that allows target × R failures, with a distribution-free
  95% interval for that quantile. When the organisation's allocation policy depends on its cash
  (``cash_stressed``) a replay is not exact, and the figure is refined by a bisection over re-runs with
  the reserve added.
- Changes against the unstressed base are **paired**: replication r of every variant uses the same random
  streams (common random numbers), and the change is the mean per-replication difference with a 95%
  interval.

The reverse stress test lives in ``pbrsim.stress.reverse``; charts in ``pbrsim.report.stress``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import pandas as pd

from ..analysis import returns
from ..analysis.metrics import mean_ci, ratio_ci, wilson
from ..scenario.schema import scenario_from_dict
from . import economics
from .runner import DEFAULT_CHUNK, Paths, Runner, binomial_cdf, lockstep, quantile_ranks, scenario_key  # noqa: F401  (re-exported)
from .catalogue import (  # noqa: F401  (re-exported: the stress API in one place)
    BUILT_IN_NAMES,
    DIMENSIONS,
    OrgTerms,
    StressError,
    StressesFile,
    Variant,
    build_stresses,
    built_in_stresses,
    contract_holder,
    load_stresses_file,
    parse_combine_option,
    unlimited,
)

__all__ = [  # the stress-test API, with the definitions re-exported from pbrsim.stress.catalogue
    "BUILT_IN_NAMES", "DIMENSIONS", "OrgTerms", "Paths", "Runner", "StressError", "StressResult", "StressesFile", "Variant",
    "build_stresses", "built_in_stresses", "contract_holder", "figures", "load_stresses_file", "lockstep", "parse_combine_option",
    "quantile_ranks", "replay", "reserve_needed", "results_folder", "run_stress_test", "unlimited", "with_reserve",
    "working_capital", "write_results",
]

DEFAULT_TARGET = 0.05


# ---------------------------------------------------------------------------------------------
# Per-replication figures


def replay(paths: Paths, terms: OrgTerms, extra: np.ndarray | int) -> np.ndarray:
    """Cash paths with ``extra`` pence more opening cash (per replication or one amount), interest recomputed.

    Interest on the overdraft is the only cash flow of an organisation that depends on its own balance
    (unless its policy reads its cash; then this is not exact and ``refine_reserve`` re-runs instead), so
    the net of everything else, month by month, is the same with a bigger reserve.
    """
    cash, interest = paths.cash, paths.interest
    flows = np.diff(cash, axis=1, prepend=np.full((len(cash), 1), terms.opening, dtype=np.int64)) + interest
    c = np.full(len(cash), terms.opening, dtype=np.int64) + np.asarray(extra, dtype=np.int64)
    out = np.empty_like(cash)
    for t in range(cash.shape[1]):
        bal = c + flows[:, t]
        if terms.rate > 0:
            bal = bal - np.where(bal < 0, np.rint(-bal.astype(np.float64) * terms.rate).astype(np.int64), 0)
        out[:, t] = c = bal
    return out


def reserve_needed(paths: Paths, terms: OrgTerms) -> np.ndarray:
    """Per replication, the smallest extra opening cash (pence) that keeps the balance at or above −limit
    (0 when no limit: what it needs to stay out of overdraft).

    Solved backwards from the last month (the least balance each month needs so that every later month
    stays above the floor, undoing the overdraft interest exactly), then checked with two replays: the
    amount found is enough and a penny less is not. A replication the check does not confirm is found
    by bisection over replays instead.
    """
    floor = -(terms.limit or 0)
    hi = np.maximum(0, floor - paths.cash.min(axis=1, initial=terms.opening))  # enough: interest only helps
    if terms.rate == 0 or not hi.any():
        return hi
    need = hi > 0  # no reserve is not enough here: the answer is at least one penny
    found = np.where(need, np.clip(_solve_backwards(paths, terms, floor), 1, hi), 0)
    enough = replay(paths, terms, found).min(axis=1) >= floor
    less_short = replay(paths, terms, found - 1).min(axis=1) < floor
    confirmed = ~need | (enough & ((found == 1) | less_short))
    if confirmed.all():
        return found
    return np.where(confirmed, found, _bisect_reserve(paths, terms, floor, np.where(confirmed, 0, hi)))


def _after_interest(bal: np.ndarray, rate: float) -> np.ndarray:
    """Month-end balance after overdraft interest (as ``replay`` charges it)."""
    return bal - np.where(bal < 0, np.rint(-bal.astype(np.float64) * rate).astype(np.int64), 0)


def _least_before_interest(y: np.ndarray, rate: float) -> np.ndarray:
    """Per element, the smallest balance whose balance after overdraft interest is at least ``y``
    (the charge only ever lowers a negative balance, and more cash always ends higher)."""
    b = np.where(y >= 0, y, np.floor(y / (1.0 + rate)).astype(np.int64) - 1)  # within a penny or two
    while True:  # start below the answer ...
        high = (y < 0) & (_after_interest(b - 1, rate) >= y)
        if not high.any():
            break
        b = b - high
    while True:  # ... and step up to it (a few pennies)
        low = _after_interest(b, rate) < y
        if not low.any():
            return b
        b = b + low


def _solve_backwards(paths: Paths, terms: OrgTerms, floor: int) -> np.ndarray:
    """Extra opening cash (pence, possibly ≤ 0) from the least balance needed each month, last month first."""
    cash, interest = paths.cash, paths.interest
    flows = np.diff(cash, axis=1, prepend=np.full((len(cash), 1), terms.opening, dtype=np.int64)) + interest
    least = np.full(len(cash), floor, dtype=np.int64)  # least month-end balance of month t that keeps t.. above the floor
    for t in range(cash.shape[1] - 1, -1, -1):
        before = _least_before_interest(least, terms.rate) - flows[:, t]  # least balance at the end of month t-1
        least = np.maximum(before, floor) if t > 0 else before
    return least - terms.opening


def _bisect_reserve(paths: Paths, terms: OrgTerms, floor: int, hi: np.ndarray) -> np.ndarray:
    """Smallest enough reserve by bisection over replays, where ``hi`` (> 0) is enough and 0 is not."""
    lo = np.zeros_like(hi)
    need = hi > 0
    while True:
        open_ = need & (hi - lo > 1)
        if not open_.any():
            return hi
        mid = (lo + hi) // 2
        ok = replay(paths, terms, np.where(open_, mid, hi)).min(axis=1) >= floor
        hi = np.where(open_ & ok, mid, hi)
        lo = np.where(open_ & ~ok, mid, lo)


def break_even(cash: np.ndarray, opening: int) -> np.ndarray:
    """First month from which cash stays at or above the opening cash (NaN: not by the end of the horizon)."""
    below = cash < opening
    H = cash.shape[1]
    last = np.where(below.any(axis=1), H - 1 - np.argmax(below[:, ::-1], axis=1), -1)
    out = (last + 1).astype(float)
    out[last == H - 1] = np.nan
    return out


def figures(paths: Paths, terms: OrgTerms) -> pd.DataFrame:
    """One row per replication: the organisation's figures in pounds (months as numbers)."""
    cash = paths.cash
    low = cash.min(axis=1)
    floor = -(terms.limit if terms.limit is not None else 0)
    df = pd.DataFrame({
        "replication": paths.reps,
        "failed": (low < floor).astype(int) if terms.limit is not None else np.zeros(len(cash), dtype=int),
        "lowest_cash": np.minimum(low, terms.opening) / 100,
        "trough_month": cash.argmin(axis=1),
        "final_cash": cash[:, -1] / 100,
        "margin": (cash[:, -1] - terms.opening) / 100,
        "break_even_month": break_even(cash, terms.opening),
        "months_below_zero": (cash < 0).sum(axis=1),
        "interest": paths.interest.sum(axis=1) / 100,
        "reserve_needed": reserve_needed(paths, terms) / 100,
        "facility_needed": np.maximum(0, floor - np.minimum(low, terms.opening)) / 100,
    })
    if paths.investors is not None:  # the investors' view of the same runs (docs/social-investment.md)
        got, put = paths.investors[:, 0], paths.investors[:, 1]
        irr, _ = returns.irr(got - put)
        drawn, repaid = put.sum(axis=1) / 100, got.sum(axis=1) / 100
        df["investor_drawn"], df["investor_repaid"], df["investor_irr"] = drawn, repaid, irr
        df["investor_lost"] = (drawn - repaid > 0.005).astype(int)
    return df.set_index("replication")


# ---------------------------------------------------------------------------------------------
# Statistics


def working_capital(needed: np.ndarray, target: float) -> dict:
    """Smallest reserve E with at most floor(target x R) replications needing more, and a 95% interval
    (order statistics of the per-replication requirements; ``hi`` None: beyond the replications run)."""
    x = np.sort(np.asarray(needed, dtype=float))
    R = len(x)
    k = int(math.floor(target * R + 1e-9))
    rank = R - k  # 1-based
    est = float(x[rank - 1]) if rank >= 1 else 0.0
    l, u = quantile_ranks(R, 1 - target)
    return {"estimate": est, "lo": float(x[l - 1]) if l >= 1 else 0.0, "hi": float(x[u - 1]) if u <= R else None,
            "allowed_failures": k, "replications": R}


def failure_curve(needed: np.ndarray, points: int = 60) -> dict:
    """P(run out) against the extra reserve: the share of replications needing more than each amount."""
    x = np.asarray(needed, dtype=float)
    R = len(x)
    top = float(x.max()) if R else 0.0
    grid = np.unique(np.concatenate([[0.0], np.linspace(0, top * 1.05, points), np.sort(x)[-points:]])) if top > 0 else np.array([0.0])
    counts = [(x > g).sum() for g in grid]
    ws = [wilson(int(c), R) for c in counts]
    return {"reserve": [float(g) for g in grid], "p": [w["mean"] for w in ws], "lo": [w["lo"] for w in ws], "hi": [w["hi"] for w in ws]}


def paired(x: pd.Series, base: pd.Series, share: bool = False) -> dict:
    """Mean per-replication difference x - base over common replications, with a 95% interval."""
    common = x.index.intersection(base.index)
    d = (x.loc[common] - base.loc[common]).to_numpy(dtype=float)
    d = d[~np.isnan(d)]
    if len(d) == 0:
        return {"diff": None, "lo": None, "hi": None, "pairs": 0}
    ci = mean_ci(d)
    lo, hi = ci["lo"], ci["hi"]
    if lo is not None and share:
        lo, hi = max(lo, -1.0), min(hi, 1.0)
    return {"diff": ci["mean"], "lo": lo, "hi": hi, "pairs": int(len(d))}


def bootstrap_quantile_diff(x: np.ndarray, base: np.ndarray, target: float, seed: int, n_boot: int = 1000) -> dict:
    """Paired bootstrap (replications resampled together) of the change in working capital needed."""
    R = len(x)
    if R < 2:
        return {"diff": None, "lo": None, "hi": None}
    gen = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(0x57E55,))))
    idx = gen.integers(0, R, size=(n_boot, R))
    k = int(math.floor(target * R + 1e-9))
    rank = R - k - 1
    xs, bs = np.sort(x[idx], axis=1), np.sort(base[idx], axis=1)
    d = (xs[:, rank] - bs[:, rank]) if rank >= 0 else np.zeros(n_boot)
    point = float(np.sort(x)[rank] - np.sort(base)[rank]) if rank >= 0 else 0.0
    return {"diff": point, "lo": float(np.quantile(d, 0.025)), "hi": float(np.quantile(d, 0.975))}


def _median_months(x: pd.Series) -> float | None:
    """Median with 'never' (NaN) counted as later than any month; None if the median is 'never'."""
    v = np.sort(np.where(np.isnan(x.to_numpy(dtype=float)), np.inf, x.to_numpy(dtype=float)))
    if len(v) == 0:
        return None
    m = float(np.median(v))
    return None if math.isinf(m) or math.isnan(m) else m


def summarise_variant(fig: pd.DataFrame, base: pd.DataFrame | None, target: float, seed: int) -> dict:
    R = len(fig)
    out = {
        "replications": R,
        "ran_out_of_cash": wilson(int(fig["failed"].sum()), R),
        "lowest_cash": {"p50": float(fig["lowest_cash"].median()), "p5": float(fig["lowest_cash"].quantile(0.05)),
                        "mean": float(fig["lowest_cash"].mean())},
        "trough_month": {"median": float(fig["trough_month"].median())},
        "working_capital": working_capital(fig["reserve_needed"].to_numpy(), target),
        "facility": working_capital(fig["facility_needed"].to_numpy(), target),
        "break_even_month": {"median": _median_months(fig["break_even_month"]),
                             "never_share": float(fig["break_even_month"].isna().mean())},
        "margin": {"p50": float(fig["margin"].median()), "p5": float(fig["margin"].quantile(0.05)), "mean": float(fig["margin"].mean())},
        "interest": {"mean": float(fig["interest"].mean())},
        "reserve_curve": failure_curve(fig["reserve_needed"].to_numpy()),
    }
    if "investor_irr" in fig:
        irr = fig["investor_irr"].dropna()
        invested = fig["investor_drawn"] > 0
        out["investors"] = {
            "irr": {"median": float(irr.median()) if len(irr) else None, "p5": float(irr.quantile(0.05)) if len(irr) else None,
                    "p95": float(irr.quantile(0.95)) if len(irr) else None},
            "lost_capital": wilson(int(fig["investor_lost"][invested].sum()), int(invested.sum())),
            "multiple": ratio_ci(fig["investor_repaid"], fig["investor_drawn"]),
        }
    if base is not None:
        out["change"] = {
            "ran_out_of_cash": paired(fig["failed"], base["failed"], share=True),
            "lowest_cash": paired(fig["lowest_cash"], base["lowest_cash"]),
            "margin": paired(fig["margin"], base["margin"]),
            "break_even_month": paired(fig["break_even_month"], base["break_even_month"]),
            "working_capital": bootstrap_quantile_diff(fig["reserve_needed"].to_numpy(), base["reserve_needed"].to_numpy(), target, seed),
        }
        if "investor_lost" in fig and "investor_lost" in base:
            out["change"]["investors_lost_capital"] = paired(fig["investor_lost"], base["investor_lost"], share=True)
    return out


# ---------------------------------------------------------------------------------------------
# Working capital when the policy reads cash: bisection over re-runs


def refine_reserve(variant: Variant, org: str, reps: list[int], estimate: float, target: float,
                   precision: float = 100.0, max_steps: int = 12) -> Iterator:
    """Generator for ``lockstep``: smallest reserve (pounds, to ``precision`` or 2%) with at most
    floor(target x R) failures, by re-running with the reserve added. Returns a dict with the bracket."""
    terms = variant.terms
    floor = -(terms.limit or 0)
    R = len(reps)
    k = int(math.floor(target * R + 1e-9))
    evals: dict[float, int] = {}

    def count(paths: Paths) -> int:
        return int((paths.cash.min(axis=1) < floor).sum())

    def request(e: float):
        return {e: (unlimited(variant.raw, org, e), reps)}

    hi = max(estimate, precision)
    for _ in range(max_steps):  # find an amount that is enough
        got = yield request(hi)
        evals[hi] = count(got[hi])
        if evals[hi] <= k:
            break
        hi *= 2
    else:
        return {"estimate": None, "bracket": [hi, None], "evaluations": evals}
    lo = 0.0
    if 0.0 not in evals:
        got = yield request(0.0)
        evals[0.0] = count(got[0.0])
    if evals[0.0] <= k:
        return {"estimate": 0.0, "bracket": [0.0, 0.0], "evaluations": evals}
    for _ in range(max_steps):
        if hi - lo <= max(precision, 0.02 * hi):
            break
        mid = round((lo + hi) / 2, 2)
        got = yield request(mid)
        evals[mid] = count(got[mid])
        lo, hi = (lo, mid) if evals[mid] <= k else (mid, hi)
    return {"estimate": hi, "bracket": [lo, hi], "evaluations": evals}


# ---------------------------------------------------------------------------------------------
# The whole stress test


@dataclass
class StressResult:
    scenario: str
    source: str
    organisation: str
    role: str
    currency: str
    seed: int
    replications: int
    target: float
    variants: list[Variant]
    figures: dict[str, pd.DataFrame]  # variant name -> per-replication figures
    paths: dict[str, Paths]
    rows: list[dict]  # per variant: summary dict (JSON-ready)
    reverse: dict | None = None
    timing: dict = field(default_factory=dict)
    extra_reserve: float = 0.0
    unit_economics: dict | None = None  # the base's money per client by segment (stress.economics)

    def summary(self) -> dict:
        base = self.variants[0].terms
        return {
            "kind": "pbrsim-stress",
            "scenario": self.scenario,
            "scenario_file": self.source,
            "organisation": self.organisation,
            "role": self.role,
            "currency": self.currency,
            "seed": self.seed,
            "replications": self.replications,
            "target": self.target,
            "extra_reserve": self.extra_reserve,
            "organisation_terms": {"opening_cash": base.opening / 100, "credit_limit": None if base.limit is None else base.limit / 100,
                                   "monthly_interest": base.rate, "policy_reads_cash": base.cash_dependent},
            "reserve_method": "re-run bisection (the policy reads cash)" if base.cash_dependent else
                              "replay of each run's cash flows with the reserve added (exact)",
            "random_numbers": "common: replication r of every stress uses the streams of (seed, r, purpose)",
            "stresses": self.rows,
            "unit_economics": self.unit_economics,
            "reverse": self.reverse,
            "timing": self.timing,
        }

    def tables(self) -> dict[str, pd.DataFrame]:
        rows = []
        for r in self.rows:
            flat = {"stress": r["name"], "kind": r["kind"], "label": r["label"], "applicable": r["applicable"], "note": r["note"]}
            if r.get("replications"):
                flat.update({
                    "ran_out": r["ran_out_of_cash"]["mean"], "ran_out_lo": r["ran_out_of_cash"]["lo"], "ran_out_hi": r["ran_out_of_cash"]["hi"],
                    "lowest_cash_p50": r["lowest_cash"]["p50"], "lowest_cash_p5": r["lowest_cash"]["p5"],
                    "trough_month_p50": r["trough_month"]["median"],
                    "working_capital": r["working_capital"]["estimate"], "working_capital_lo": r["working_capital"]["lo"],
                    "working_capital_hi": r["working_capital"]["hi"],
                    "facility": r["facility"]["estimate"],
                    "break_even_month_p50": r["break_even_month"]["median"], "break_even_never": r["break_even_month"]["never_share"],
                    "margin_p50": r["margin"]["p50"], "margin_p5": r["margin"]["p5"],
                })
                if "investors" in r:
                    inv = r["investors"]
                    flat.update({"investor_irr_p50": inv["irr"]["median"], "investor_irr_p5": inv["irr"]["p5"],
                                 "investors_lost_capital": inv["lost_capital"]["mean"], "investor_multiple": inv["multiple"]["mean"]})
                for k, v in (r.get("change") or {}).items():
                    flat.update({f"d_{k}": v["diff"], f"d_{k}_lo": v["lo"], f"d_{k}_hi": v["hi"]})
            rows.append(flat)
        reps = []
        for name, fig in self.figures.items():
            reps.append(fig.reset_index().assign(stress=name))
        replications = pd.concat(reps, ignore_index=True)
        replications = replications[["stress"] + [c for c in replications.columns if c != "stress"]]
        cash = []
        for name, p in self.paths.items():
            n, H = p.cash.shape
            cash.append(pd.DataFrame({"stress": name, "replication": np.repeat(p.reps, H).astype(np.int32),
                                      "month": np.tile(np.arange(H, dtype=np.int32), n), "cash_pence": p.cash.reshape(-1)}))
        out = {"stresses": pd.DataFrame(rows), "replications": replications, "cash": pd.concat(cash, ignore_index=True)}
        if self.unit_economics:
            out["unit_economics"] = economics.table(self.unit_economics)
        if self.reverse:
            out["reverse"] = pd.DataFrame([{k: v for k, v in d.items() if not isinstance(v, (dict, list))}
                                           for d in self.reverse["results"]])
            curves = [pd.DataFrame({"dimension": d["dimension"], "shock": d["curve"]["shock"], "p": d["curve"]["p"]})
                      for d in self.reverse["dimensions"]]
            out["reverse_curve"] = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
        return out


def sentence(row: dict, org: str, target: float, currency: str = "GBP") -> str:
    """One plain-language line per stress."""
    from ..model.money import money

    if not row["applicable"]:
        return f"{row['label']}: {row['note']}."
    p = row["ran_out_of_cash"]["mean"]
    wc = row["working_capital"]["estimate"]
    head = f"{row['label']}: {org} runs out of cash in {p:.0%} of runs"
    ch = row.get("change")
    if ch and ch["ran_out_of_cash"]["diff"] is not None:
        d = ch["ran_out_of_cash"]["diff"]
        head += " (no change)" if abs(d) < 0.0005 else f" ({'+' if d > 0 else '−'}{abs(100 * d):.0f} points on the base)"
    if wc > 0:
        tail = f"; to keep that to {target:.0%} it needs {money(wc, currency)} more in reserve at the start"
    else:
        tail = f"; its current reserve keeps that at or below {target:.0%}"
    be = row["break_even_month"]["median"]
    tail += "." if be is not None else "; in most runs its cash does not get back to its opening level."
    return head + tail


def run_stress_test(
    base_raw: dict,
    org: str,
    *,
    source: str = "<scenario>",
    stresses_file: StressesFile | None = None,
    combine_option: list[list[str]] = (),
    only: Iterable[str] | None = None,
    replications: int = 500,
    seed: int = 0,
    target: float = DEFAULT_TARGET,
    executor: str = "process",
    workers: int | None = None,
    chunk: int = DEFAULT_CHUNK,
    reverse: bool = False,
    reverse_replications: int | None = None,
    extra_reserve: float = 0.0,
    progress: Callable[[str, int, int], None] | None = None,
) -> StressResult:
    """Run the base and every stress for ``org``; optionally the reverse stress test. ``extra_reserve`` (pounds)
    is added to the organisation's opening cash in the base and so in every stress. Raises StressError /
    ScenarioError for bad input before anything runs."""
    t0 = time.perf_counter()
    sc = scenario_from_dict(base_raw, source)
    names = [o.name for o in sc.organisation_specs]
    if org not in names:
        raise StressError(source, [("--organisation", f"unknown organisation {org!r}; organisations are {names}")])
    if extra_reserve:
        base_raw = with_reserve(base_raw, org, extra_reserve)
    variants = build_stresses(base_raw, org, source, stresses_file, combine_option, only)
    reps = list(range(replications))
    ticker = (lambda k: progress("stresses", k, 0)) if progress else None
    runner = Runner(org, seed, executor=executor, workers=workers, chunk=chunk, progress=ticker)
    # variants that change nothing (or do not apply) reuse an identical scenario's runs
    requests, alias = {}, {}
    for v in variants:
        key = scenario_key(v.raw)
        if key in alias.values():
            alias[v.name] = key
            continue
        alias[v.name] = key
        requests[key] = (unlimited(v.raw, org), reps)
    if progress:
        progress("stresses", 0, len(requests) * replications)
    done = runner.run(requests)
    runner.close()
    t_run = time.perf_counter() - t0
    paths = {v.name: done[alias[v.name]] for v in variants}
    figs = {v.name: figures(paths[v.name], v.terms) for v in variants}

    # working capital by re-runs where the organisation's policy reads its cash
    refined = {}
    need = [v for v in variants if v.terms.cash_dependent and v.change.applicable]
    if need:
        est = {v.name: working_capital(figs[v.name]["reserve_needed"].to_numpy(), target)["estimate"] for v in need}
        searches = {v.name: refine_reserve(v, org, reps, est[v.name], target) for v in need}
        refined = lockstep(searches, Runner(org, seed, executor=executor, workers=workers, chunk=chunk))

    rows = []
    base_fig = figs["base"]
    for v in variants:
        s = v.stress
        row = {"name": v.name, "label": s.label if s else "Unstressed base (the bid as submitted)",
               "kind": s.kind if s else "base", "dimension": s.dimension if s else None, "size": s.size if s else None,
               "description": (s.description if s else None), "motivation": s.motivation if s else "",
               "overrides": {k: v2 for k, v2 in v.change.set.items()}, "remove": list(v.change.remove),
               "applicable": v.change.applicable, "note": v.change.note}
        if v.change.applicable:
            row.update(summarise_variant(figs[v.name], None if s is None else base_fig, target, seed))
            if v.name in refined:
                r = refined[v.name]
                wc = row["working_capital"]
                wc.update({"replay_estimate": wc["estimate"], "estimate": r["estimate"], "method": "re-run bisection",
                           "bracket": r["bracket"], "runs": len(r["evaluations"])})
            else:
                row["working_capital"]["method"] = "replay (exact)"
        rows.append(row)
    for row in rows:
        row["sentence"] = sentence(row, org, target, sc.currency)
    role = "single provider" if sc.organisations is None else next(o.role for o in sc.organisation_specs if o.name == org)
    base_paths = paths["base"]
    unit = (economics.summarise(base_paths.money, base_paths.clients, tuple(sc.segment_names))
            if base_paths.money is not None and len(base_paths.reps) else None)
    result = StressResult(sc.name, source, org, role, sc.currency, seed, replications, target, variants, figs, paths, rows,
                          timing={"stress_runs_seconds": round(t_run, 2)}, extra_reserve=float(extra_reserve),
                          unit_economics=unit)
    if reverse:
        from .reverse import reverse_stress_test

        t1 = time.perf_counter()
        n_rev = min(reverse_replications or replications, replications)
        result.reverse = reverse_stress_test(base_raw, org, paths["base"], variants[0].terms, seed=seed,
                                             replications=n_rev, levels=(0.5, target), executor=executor, workers=workers,
                                             chunk=chunk, recession_states=stresses_file.recession_states if stresses_file else None,
                                             progress=(lambda k: progress("reverse", k, 0)) if progress else None)
        result.timing["reverse_seconds"] = round(time.perf_counter() - t1, 2)
    result.timing["total_seconds"] = round(time.perf_counter() - t0, 2)
    result.timing["replications_run"] = runner.replications_run
    return result


def with_reserve(raw: dict, org: str, extra: float) -> dict:
    """``raw`` with ``extra`` pounds added to the organisation's opening cash (limit unchanged)."""
    from ..scenario.overrides import apply_overrides
    from .catalogue import org_prefix, org_spec

    return apply_overrides(raw, {f"{org_prefix(raw, org)}.opening_cash": float(org_spec(raw, org).get("opening_cash", 0.0)) + extra},
                           "--extra-reserve")


def results_folder(scenario_name: str, org: str, root: str | Path = "results") -> Path:
    """``root/stress/<scenario>/<organisation>``, both names made safe (``store.output_path``)."""
    from ..store import output_path

    return output_path(Path(root) / "stress", scenario_name, org)


def write_results(result: StressResult, out: str | Path, manifest_data: dict, extra: dict | None = None, *,
                  overwrite: bool = False) -> Path:
    """Parquet tables + summary.json (with ``extra`` entries, e.g. public value) + manifest.json, by the output
    rule of ``store.write_folder``."""
    from ..store import KIND_STRESS, write_folder

    return write_folder(out, result.tables(), {**result.summary(), **(extra or {})}, manifest_data, kind=KIND_STRESS,
                        overwrite=overwrite)
