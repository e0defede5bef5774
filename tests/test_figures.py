"""Per-replication figures computed in numpy for a whole batch are the pandas figures, exactly.

The reference is the pandas implementation the figures were first written in (``tests/reference_figures.py``):
every column, dtype and value of the per-replication table and every number of the summary must match it,
on shipped scenarios chosen so that together they exercise every figure (provider failures, a cap reached,
clawbacks, investor finance, a supply chain, parking, no milestone, no outcome).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pbrsim.engine.run import compile_model
from pbrsim.scenario.overrides import apply_overrides
from pbrsim.scenario.schema import load_raw, scenario_from_dict
from pbrsim.simulate import replication_figures, run_tables, summarise_tables

from .conftest import make
from .reference_figures import reference_per_replication, reference_summary

ROOT = Path(__file__).resolve().parents[1]
SEED = 11
REPLICATIONS = 6


def shipped(path: str, **sets) -> dict:
    raw = load_raw(ROOT / "scenarios" / path)
    return apply_overrides(raw, sets, "test") if sets else raw


def no_outcome() -> dict:
    d = make()
    d["contract"]["payments"] = [p for p in d["contract"]["payments"] if p["kind"] in ("attachment", "sustainment")]
    d["contract"].pop("primary_outcome")
    return d


CASES = {
    "blended_vcs": lambda: shipped("blended_vcs.yaml"),
    "blended_vcs_low_cap": lambda: shipped("blended_vcs.yaml", **{"contract.cap": 60000}),
    "outcomes_only_vcs": lambda: shipped("outcomes_only_vcs.yaml"),
    "supply_chain": lambda: shipped("supply_chain/outcome_pass_through.yaml"),
    "volume_shortfall": lambda: shipped("library/tr_crc_volume_shortfall.yaml", **{"referrals.rate": 150}),
    "peterborough": lambda: shipped("library/peterborough.yaml"),
    "cash_stressed": lambda: shipped("parking/cash_stressed.yaml"),
    "classes_and_lasting_outcomes": lambda: shipped("library/small_vcs_blended.yaml"),  # latent classes; jobs followed
    "no_outcome": no_outcome,
}


@pytest.fixture(scope="module")
def runs():
    out = {}
    for name, build in CASES.items():
        model = compile_model(scenario_from_dict(build(), name))
        out[name] = (model, run_tables(model, SEED, range(REPLICATIONS)))
    return out


def frames(tables) -> dict[str, pd.DataFrame]:
    return {name: tables[name] for name in tables}


@pytest.mark.parametrize("name", list(CASES))
def test_figures_and_summary_are_the_pandas_reference_exactly(runs, name):
    model, tables = runs[name]
    per_rep, summary = summarise_tables(model, tables, SEED)  # from the engine's columns
    ref = reference_per_replication(model, frames(tables))
    value_cols = [c for c in per_rep.columns if c not in ref.columns]
    # the value section's columns (docs/value.md) come on top of the reference's, and only with a value section
    assert bool(value_cols) == (model.scenario.value is not None)
    assert "value" in summary if model.scenario.value is not None else "value" not in summary
    pd.testing.assert_frame_equal(per_rep[list(ref.columns)], ref, check_exact=True)
    assert list(per_rep[list(ref.columns)].dtypes) == list(ref.dtypes)
    plain = {k: v for k, v in summary.items() if k != "value"}
    assert json.dumps(plain) == json.dumps(reference_summary(model, ref, SEED))
    # the same from DataFrames (as a user or a reader of a run folder passes them)
    from_frames, summary2 = summarise_tables(model, frames(tables), SEED)
    pd.testing.assert_frame_equal(from_frames, per_rep, check_exact=True)
    assert json.dumps(summary2) == json.dumps(summary)


def test_the_cases_exercise_every_figure(runs):
    """Each kind of figure is non-trivial in at least one case, so the comparison above means something."""
    tables = {name: summarise_tables(model, t, SEED)[0] for name, (model, t) in runs.items()}
    assert tables["outcomes_only_vcs"]["failed_any"].sum() > 0
    assert tables["outcomes_only_vcs"].filter(like="clients_affected[").notna().any().any()
    assert tables["supply_chain"].filter(like="failed[").iloc[:, 1:].to_numpy().sum() > 0  # a subcontractor failed
    assert tables["supply_chain"]["paid_to_subcontractors"].gt(0).all()
    assert tables["blended_vcs_low_cap"]["cap_reached"].sum() > 0 and tables["blended_vcs_low_cap"]["capped_total"].gt(0).any()
    assert tables["volume_shortfall"]["clawed_back"].gt(0).any()
    assert tables["peterborough"]["investor_drawn"].gt(0).all()
    assert tables["cash_stressed"]["minimal_months"].gt(0).any() and tables["blended_vcs"]["equity_ratio"].notna().all()
    assert tables["outcomes_only_vcs"]["dropped_failure"].gt(0).any()  # clients lost when the provider failed
    lasting = tables["classes_and_lasting_outcomes"]
    assert lasting["months_after_outcome"].gt(0).all() and lasting.filter(like="class_parking_rate[").gt(0).any().any()
    assert not tables["outcomes_only_vcs"].filter(like="milestones_").columns.any() and "outcomes" not in tables["no_outcome"]


def test_any_subset_of_replications_in_any_order_gives_the_same_rows(runs):
    """Figures of a batch depend only on each replication's own rows: a subset run in another order
    (tables not sorted by replication) gives exactly the rows of the full batch."""
    model, tables = runs["supply_chain"]
    full = replication_figures(model, tables)
    part = run_tables(model, SEED, [4, 1, 3])
    assert list(part["monthly"]["replication"].unique()) == [4, 1, 3]
    pd.testing.assert_frame_equal(replication_figures(model, part), full.loc[[1, 3, 4]], check_exact=True)
    one = run_tables(model, SEED, [2])
    pd.testing.assert_frame_equal(replication_figures(model, one), full.loc[[2]], check_exact=True)


def test_tables_read_back_from_parquet_or_with_plain_names_give_the_same_figures(runs):
    model, tables = runs["supply_chain"]
    expected = replication_figures(model, tables)
    back = {name: pd.read_parquet(io.BytesIO(tables[name].to_parquet())) for name in tables}
    pd.testing.assert_frame_equal(replication_figures(model, back), expected, check_exact=True)
    plain = {name: tables[name].apply(lambda s: s.astype(object) if isinstance(s.dtype, pd.CategoricalDtype) else s)
             for name in tables}
    assert plain["ledger"]["segment"].isna().any()  # fee rows: no segment
    pd.testing.assert_frame_equal(replication_figures(model, plain), expected, check_exact=True)


def test_figures_follow_the_tables(runs):
    """Spot checks against the tables themselves, independent of either implementation."""
    model, tables = runs["blended_vcs"]
    per_rep = replication_figures(model, tables)
    clients, ledger, monthly = tables["clients"], tables["ledger"], tables["monthly"]
    r = 3
    c = clients[clients.replication == r]
    assert per_rep.loc[r, "referrals"] == len(c)
    assert per_rep.loc[r, "outcomes"] == c["first_sustained_6m"].notna().sum()
    paid = ledger[(ledger.replication == r) & (ledger.payer == model.contract.commissioner)].amount_pence.sum()
    assert per_rep.loc[r, "paid_total"] == paid / 100
    cash = monthly[monthly.replication == r].cash_pence.to_numpy()
    org = model.organisations[0]
    assert per_rep.loc[r, f"lowest_cash[{org.name}]"] == min(cash.min(), org.opening_cash) / 100
    assert per_rep.loc[r, f"trough_month[{org.name}]"] == np.argmin(cash)
    assert per_rep.loc[r, "service_months"] == (c.months_full.astype(int) + c.months_minimal.astype(int)).sum()
