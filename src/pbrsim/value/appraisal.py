"""Public value of a Monte Carlo run: per-replication appraisal figures against the counterfactual.

For the replications in a run's tables, the counterfactual is run with the same seed and replication
numbers (``value.counterfactual``), and each replication gets: the present value of what every budget
holder and the person gain (programme minus counterfactual), the commissioner's spend, the net present
public value (total and per budget holder), the payback month, the counterfactual's outcomes
(deadweight) and, per payment line, what the commissioner paid, how many outcomes it paid for, how many
of them the counterfactual would have had, and the providers' costs (the tariff check).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..engine.run import Model, batch_size, compile_model, run_batch
from ..scenario.schema import Scenario
from ..scenario.value_schema import PERSON
from .counterfactual import counterfactual_scenario
from .flows import figures, line_flows
from .spec import ValueModel, compile_value


@dataclass(frozen=True)
class Appraiser:
    """A model's value section compiled, with its counterfactual model."""

    model: Model
    vm: ValueModel
    cf_model: Model

    @property
    def T(self) -> int:
        return self.model.months

    def entry_sets(self) -> list[np.ndarray]:
        """State sets whose first entries are counted: per: entry lines, then first-entry payment lines, then
        the primary outcome (deadweight)."""
        sets = [line.states for line in self.vm.lines if line.per == "entry"]
        sets += [trigger_states(rule) for rule in self.model.contract.rules if rule.kind != "sustainment"]
        po = self.model.contract.primary_outcome
        if po >= 0:
            sets.append(np.array([po]))
        return sets


_CACHE: list[Appraiser] = []


def appraiser(model: Model, source: str = "<scenario>") -> Appraiser:
    """The (cached) appraiser of a model with a value section; raises ScenarioError on bad value input."""
    for a in _CACHE:
        if a.model is model:
            return a
    vm = compile_value(model.scenario, model.pathway, model.horizon, source)
    a = Appraiser(model, vm, compile_model(counterfactual_scenario(model.scenario)))
    _CACHE.append(a)
    del _CACHE[:-8]
    return a


def check(sc: Scenario, source: str = "<scenario>") -> None:
    """Raise ScenarioError for value input the schema cannot check (unit-cost keys, deflators, horizon)."""
    if sc.value is not None:
        model = compile_model(sc)
        compile_value(sc, model.pathway, model.horizon, source)


def trigger_states(rule) -> np.ndarray:
    return np.array([rule.state]) if rule.state >= 0 else np.flatnonzero(rule.in_states)


# ---------------------------------------------------------------------------------------------
# Counts from a run: occupancy by month and state, first entries by month and segment


def _entries(rep_idx: np.ndarray, seg: np.ndarray, first: np.ndarray, sets: list[np.ndarray], R: int, T: int, G: int) -> list[np.ndarray]:
    """First entries into each state set, ``[R, T, G]``; ``first[n, S]`` holds months (NaN: never)."""
    out = []
    for states in sets:
        with np.errstate(all="ignore"):
            month = np.fmin.reduce(first[:, states], axis=1)
        ok = ~np.isnan(month) & (month < T)
        E = np.zeros((R, T, G))
        np.add.at(E, (rep_idx[ok], month[ok].astype(np.int64), seg[ok]), 1.0)
        out.append(E)
    return out


def programme_counts(a: Appraiser, tables: dict[str, pd.DataFrame], reps: pd.Index):
    """Occupancy ``[R, T, S]`` and entries (one ``[R, T, G]`` per entry set) of the programme run."""
    pw, T = a.model.pathway, a.T
    R, G = len(reps), len(pw.segments)
    ncols = [f"n_{s}" for s in pw.states]
    m = tables["monthly"]
    m = m[m.month < T].groupby(["replication", "month"])[ncols].sum()
    full = pd.MultiIndex.from_product([reps, range(T)], names=["replication", "month"])
    occ = m.reindex(full, fill_value=0).to_numpy(dtype=float).reshape(R, T, len(ncols))
    cl = tables["clients"]
    rep_idx = reps.get_indexer(cl["replication"].to_numpy())
    seg = cl["segment"].cat.codes.to_numpy().astype(np.int64)
    first = np.column_stack([cl[f"first_{s}"].to_numpy(dtype=float, na_value=np.nan) for s in pw.states])
    return occ, _entries(rep_idx, seg, first, a.entry_sets(), R, T, G)


def counterfactual_counts(a: Appraiser, seed: int, reps: pd.Index):
    """Occupancy and entries of the counterfactual, replication by replication (same seed and numbers)."""
    pw, T = a.cf_model.pathway, a.T
    R, G, S = len(reps), len(pw.segments), pw.n_states
    occ = np.zeros((R, T, S))
    parts = []
    numbers = [int(rep) for rep in reps]
    size = batch_size(a.cf_model)
    for lo in range(0, len(numbers), size):
        batch = run_batch(a.cf_model, seed, numbers[lo:lo + size])
        for j in range(len(batch)):
            r, i = batch.replication(j), lo + j
            occ[i] = r.caseload[:T].sum(axis=1)
            first = r.first_month.astype(float)
            first[first < 0] = np.nan
            parts.append((np.full(len(first), i), r.segment.astype(np.int64), first))
    rep_idx = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
    seg = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
    first = np.concatenate([p[2] for p in parts]) if parts else np.zeros((0, S))
    return occ, _entries(rep_idx.astype(np.int64), seg, first, a.entry_sets(), R, T, G)


# ---------------------------------------------------------------------------------------------
# Per-replication figures


def _by_month(frame: pd.DataFrame, reps: pd.Index, months: int) -> np.ndarray:
    """Pence by replication and month from ledger rows, ``[R, months]`` (later months dropped)."""
    out = np.zeros((len(reps), months))
    if len(frame):
        g = frame.groupby(["replication", "month"]).amount_pence.sum()
        r = reps.get_indexer(g.index.get_level_values(0))
        mth = g.index.get_level_values(1).to_numpy()
        ok = (r >= 0) & (mth < months)
        np.add.at(out, (r[ok], mth[ok]), g.to_numpy(dtype=float)[ok])
    return out


def per_replication(model: Model, tables: dict[str, pd.DataFrame], seed: int) -> pd.DataFrame:
    """Value columns for every replication in ``tables`` (indexed by replication; pounds in base-year prices)."""
    a = appraiser(model)
    vm, T = a.vm, a.T
    reps = pd.Index(np.sort(tables["monthly"]["replication"].unique()), name="replication")
    occ_p, ent_p = programme_counts(a, tables, reps)
    occ_c, ent_c = counterfactual_counts(a, seed, reps)
    n_entry_lines = sum(1 for line in vm.lines if line.per == "entry")
    entry_for = _entries_by_line(vm, ent_p), _entries_by_line(vm, ent_c)
    gains = (line_flows(vm, occ_p, entry_for[0], T) - line_flows(vm, occ_c, entry_for[1], T)) * vm.benefit_factor
    led = tables["ledger"]
    comm = model.contract.commissioner
    spend = _by_month(led[led.payer == comm], reps, vm.months) - _by_month(led[(led.payee == comm) & (led.kind == "clawback")], reps, vm.months)
    costs = spend / 100.0 * vm.contract_factor * vm.cost_factor
    out = pd.DataFrame(figures(vm, gains, costs), index=reps)
    out["value_spend"] = spend / 100.0 * vm.contract_factor @ vm.discount  # present value paid, before optimism bias
    # the programme's and the counterfactual's public gains on their own (the paired difference is their difference)
    public = [i for i, h in enumerate(vm.holders) if h != PERSON]
    out["value_programme_gains"] = line_flows(vm, occ_p, entry_for[0], T)[:, public, :].sum(axis=1) @ vm.discount
    out["value_counterfactual_gains"] = line_flows(vm, occ_c, entry_for[1], T)[:, public, :].sum(axis=1) @ vm.discount
    # deadweight: the counterfactual's primary outcomes
    k = n_entry_lines + sum(1 for r in model.contract.rules if r.kind != "sustainment")
    if model.contract.primary_outcome >= 0:
        out["outcomes_without_programme"] = ent_c[k].sum(axis=(1, 2))
    _tariff_columns(out, a, tables, reps, occ_p, occ_c, ent_p, ent_c, n_entry_lines)
    return out


def _entries_by_line(vm: ValueModel, ent: list[np.ndarray]) -> list[np.ndarray | None]:
    it = iter(ent)
    return [next(it) if line.per == "entry" else None for line in vm.lines]


def _tariff_columns(out, a: Appraiser, tables, reps, occ_p, occ_c, ent_p, ent_c, k0: int) -> None:
    """Per payment line: present value paid, outcomes paid, outcomes with and without the programme; providers' costs."""
    vm, model, T = a.vm, a.model, a.T
    led = tables["ledger"]
    comm = model.contract.commissioner
    D = vm.discount
    factor = vm.contract_factor / 100.0
    claims = tables["claims"]
    k = k0
    for rule in model.contract.rules:
        paid = _by_month(led[(led.payer == comm) & (led.item == rule.name)], reps, vm.months) * factor
        out[f"line_paid[{rule.name}]"] = paid @ D
        c = claims[(claims.item == rule.name) & (claims.amount_claimed_pence > 0)]  # claims at a zero tariff pay for nothing
        out[f"line_outcomes[{rule.name}]"] = c.groupby("replication").claims.sum().reindex(reps, fill_value=0).astype(float)
        if rule.kind != "sustainment":
            out[f"line_with[{rule.name}]"] = ent_p[k].sum(axis=(1, 2))
            out[f"line_without[{rule.name}]"] = ent_c[k].sum(axis=(1, 2))
            k += 1
        else:
            states = trigger_states(rule)
            out[f"line_with[{rule.name}]"] = occ_p[:, :, states].sum(axis=(1, 2))
            out[f"line_without[{rule.name}]"] = occ_c[:, :, states].sum(axis=(1, 2))
    org_names = {o.name for o in model.organisations}
    own = led[led.payer.isin(org_names) & led.kind.isin(["delivery", "overhead"])]
    out["provider_costs"] = _by_month(own, reps, vm.months) * factor @ D
