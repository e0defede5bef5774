"""One definition per metric: docs/metrics.md names every output, `run` and `compare` give the same
numbers, dropped clients include provider failures, and the 95% intervals cover as they claim.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from pbrsim.analysis.compare import PRICE_ONLY_NOTE, same_outcomes_as_baseline, summary_table
from pbrsim.analysis.estimators import FEW_REPLICATIONS, mean_ci, t95
from pbrsim.cli.main import main
from pbrsim.engine.exact import expected
from pbrsim.scenario.overrides import apply_overrides
from pbrsim.scenario.schema import load_raw, load_scenario, scenario_from_dict
from pbrsim.simulate import simulate

from .conftest import make, scenario

ROOT = Path(__file__).resolve().parents[1]
BLENDED = ROOT / "scenarios" / "blended_vcs.yaml"
OUTCOMES_ONLY = ROOT / "scenarios" / "outcomes_only_vcs.yaml"


# ---------------------------------------------------------------------------------------------
# Names: docs/metrics.md against the outputs

# Scenarios whose outputs together hold every metric: segments and parking, milestones, a supply chain,
# investor finance and a value section, a volume band, latent classes.
NAME_SCENARIOS = ("blended_vcs.yaml", "supply_chain/outcome_pass_through.yaml", "library/peterborough.yaml",
                  "library/tr_crc_volume_shortfall.yaml", "library/small_vcs_blended.yaml")


def _documented() -> dict[str, set[str]]:
    """Names in the first column of each table of docs/metrics.md, by the table's output heading."""
    out: dict[str, set[str]] = {}
    section = None
    for line in (ROOT / "docs" / "metrics.md").read_text().splitlines():
        m = re.match(r"^### Output: (\S+)", line)
        if m:
            section = m.group(1)
            out[section] = set()
            continue
        if line.startswith("## "):
            section = None
        if section and line.startswith("| `"):
            first = line.split("|")[1]
            out[section] |= set(re.findall(r"`([^`]+)`", first))
    return out


def _generic(name: str, model) -> str:
    """An output name with its segment, organisation, state, payment line or value holder replaced by a placeholder."""
    subs = {g: "<segment>" for g in model.pathway.segments}
    subs |= {f"{g}/{k}": "<segment>/<class>" for g, names in zip(model.pathway.segments, model.pathway.class_names) for k in names}
    subs |= {o.name: "<organisation>" for o in model.organisations}
    subs |= {k: "<kind>" for k in ("service_fee", "attachment", "milestone", "outcome", "sustainment")}
    name = re.sub(r"\[([^\]]+)\]", lambda x: "[" + subs.get(x.group(1), "<holder>") + "]", name)
    for state in model.pathway.states:
        name = re.sub(rf"^(milestones|milestone_rate)_{re.escape(state)}(?=\[|$)", r"\1_<state>", name)
    for rule in model.contract.rules:
        name = re.sub(rf"^(sustainment_payments|line_[a-z]+)_{re.escape(rule.name)}$", r"\1_<line>", name)
    return name


def _flatten(d, prefix="") -> set[str]:
    """Dotted key paths of a summary, lists of rows as ``[]``, leaves that are intervals as their metric's path."""
    out = set()
    if isinstance(d, dict):
        if "mean" in d or "median" in d or "p50" in d:
            return {prefix}
        for k, v in d.items():
            out |= _flatten(v, f"{prefix}.{k}" if prefix else k)
    elif isinstance(d, list) and d and isinstance(d[0], dict):
        for row in d:
            out |= _flatten(row, prefix + "[]")
    else:
        out.add(prefix)
    return out


@pytest.fixture(scope="module")
def outputs():
    """Per-replication columns, compare metrics and summary paths of the name scenarios (generic names)."""
    cols, metrics, summary = set(), set(), set()
    for path in NAME_SCENARIOS:
        res = simulate(load_scenario(ROOT / "scenarios" / path), seed=3, replications=3)
        cols |= {_generic(c, res.model) for c in res.per_replication.columns}
        table = summary_table({"a": res.per_replication}, ["a"], "a")
        metrics |= {_generic(m, res.model) for m in table["metric"]}
        paths = {re.sub(r"paid_by_kind\.[a-z_]+", "paid_by_kind.<kind>", p) for p in _flatten(res.summary)}
        summary |= {"value" if p.startswith("value.") else p for p in paths}  # docs/value.md defines the value summary
    return {"per-replication": cols, "compare": metrics, "summary": summary}


@pytest.mark.parametrize("output", ["per-replication", "compare", "summary"])
def test_every_documented_metric_is_in_the_outputs_and_every_output_is_documented(outputs, output):
    documented = _documented()[output]
    found = outputs[output]
    assert documented - found == set(), f"docs/metrics.md names {output} figures no output has"
    assert found - documented == set(), f"{output} figures docs/metrics.md does not define"


# ---------------------------------------------------------------------------------------------
# run and compare: the same number for every shared metric

def _run_metrics(s: dict) -> dict[str, dict]:
    """Metric name (as in compare's summary) -> interval, from a `pbrsim run` summary.json."""
    out = {}
    ms = s.get("milestone_state")
    for row in s["segments"]:
        key = "" if row["segment"] == "all" else f"[{row['segment']}]"
        out[f"referrals{key}"] = row["referrals"]
        out[f"outcomes{key}"] = row["outcomes"]
        out[f"outcome_rate{key}"] = row["outcome_rate"]
        if ms:
            out[f"milestone_rate_{ms}{key}"] = row["milestone_rate"]
    for row in s["parking"]["segments"]:
        key = "" if row["segment"] == "all" else f"[{row['segment']}]"
        for k in ("parking_rate", "dropped", "dropped_failure", "dropped_service", "dropped_rate"):
            out[f"{k}{key}"] = row[k]
    out["equity_ratio"] = s["parking"]["equity_ratio"]
    c = s["commissioner"]
    out |= {f"paid[{k}]": v for k, v in c["paid_by_kind"].items()}
    out |= {k: c[k] for k in ("paid_total", "capped_total", "cap_reached", "cost_per_outcome")}
    for o in s["organisations"]:
        n = o["organisation"]
        out |= {f"income[{n}]": o["income"], f"costs[{n}]": o["costs"], f"months_below_zero[{n}]": o["months_below_zero"],
                f"lowest_cash[{n}]": o["lowest_cash"], f"margin[{n}]": o["margin"], f"failed[{n}]": o["ran_out_of_cash"]}
    return out


def test_run_and_compare_give_identical_figures_for_every_shared_metric(tmp_path):
    seed, n = 5, 8
    r = CliRunner().invoke(main, ["run", str(BLENDED), "--seed", str(seed), "-n", str(n), "--out", str(tmp_path / "run"), "--quiet"])
    assert r.exit_code == 0, r.output
    run = _run_metrics(json.loads((tmp_path / "run" / "summary.json").read_text()))
    exp = tmp_path / "one.yaml"
    exp.write_text(yaml.safe_dump({"name": "one", "base": str(BLENDED), "seed": seed, "replications": n,
                                   "designs": [{"name": "as_drafted"}]}))
    r = CliRunner().invoke(main, ["compare", str(exp), "--out", str(tmp_path / "cmp"), "--executor", "serial", "--quiet"])
    assert r.exit_code == 0, r.output
    cmp = pd.read_parquet(tmp_path / "cmp" / "summary.parquet").set_index("metric")
    shared = sorted(set(run) & set(cmp.index))
    assert len(shared) >= 40 and set(run) <= set(cmp.index), set(run) - set(cmp.index)
    for m in shared:
        a, b = run[m], cmp.loc[m]
        mean = b["p50"] if "p50" in a and "mean" not in a else b["mean"]
        assert a["mean"] == pytest.approx(mean, rel=1e-12, abs=1e-12), m
        if a.get("lo") is not None:
            assert (a["lo"], a["hi"]) == (pytest.approx(b["lo"], rel=1e-12, abs=1e-12), pytest.approx(b["hi"], rel=1e-12, abs=1e-12)), m
        else:
            assert pd.isna(b["lo"]), m


# ---------------------------------------------------------------------------------------------
# Dropped clients: provider failures count

@pytest.fixture(scope="module")
def vcs_pair():
    """blended_vcs and outcomes_only_vcs on the same seed (common random numbers: the same clients and luck)."""
    runs = {name: simulate(load_scenario(path), seed=7, replications=20) for name, path in
            (("blended", BLENDED), ("outcomes_only", OUTCOMES_ONLY))}
    return runs, summary_table({k: v.per_replication for k, v in runs.items()}, ["blended", "outcomes_only"], "blended")


def test_clients_lost_when_their_provider_fails_count_as_dropped(vcs_pair):
    runs, _ = vcs_pair
    oo = runs["outcomes_only"]
    pr = oo.per_replication
    assert (pr["dropped"] == pr["dropped_service"] + pr["dropped_failure"]).all()
    assert pr["dropped_failure"].sum() > 0
    # exactly the clients taken off the caseload at the failure who had not reached the outcome
    cl = oo.clients
    lost = cl["first_dropped_provider_failure"].notna() & cl["first_sustained_6m"].isna()
    assert (lost.groupby(cl["replication"]).sum().reindex(pr.index, fill_value=0) == pr["dropped_failure"]).all()
    affected = oo.failures.groupby("replication")["clients_affected"].sum().reindex(pr.index, fill_value=0)
    assert (pr["dropped_failure"] <= affected).all() and (pr.loc[affected == 0, "dropped_failure"] == 0).all()
    # the summary shows them separately and in the total
    all_ = next(r for r in oo.summary["parking"]["segments"] if r["segment"] == "all")
    assert all_["dropped"]["mean"] == pytest.approx(all_["dropped_service"]["mean"] + all_["dropped_failure"]["mean"])


def test_outcomes_only_drops_more_clients_than_blended(vcs_pair):
    runs, table = vcs_pair
    row = table[(table.design == "outcomes_only") & (table.metric == "dropped")].iloc[0]
    assert row["diff_lo"] > 0  # worse than the blended design, beyond the paired interval
    rate = table[(table.design == "outcomes_only") & (table.metric == "dropped_rate")].iloc[0]
    assert rate["diff_lo"] > 0
    assert runs["blended"].per_replication["dropped_failure"].sum() == 0  # the blended provider never fails here


# ---------------------------------------------------------------------------------------------
# Intervals: Student's t, a warning at few replications, coverage against exact expectations

def test_intervals_use_students_t_with_n_minus_1_degrees_of_freedom():
    assert t95(2) == pytest.approx(12.7062047, rel=1e-6) and t95(3) == pytest.approx(4.3026527, rel=1e-6)
    assert t95(30) == pytest.approx(2.0452296, rel=1e-6)
    from scipy.stats import t

    df = np.arange(1, 20_001)
    ours = np.array([t95(int(v) + 1) for v in df])
    assert np.max(np.abs(ours / t.ppf(0.975, df) - 1)) < 2e-8  # the table and the expansion against scipy, every df
    x = np.array([1.0, 2.0, 4.0])
    ci = mean_ci(x)
    half = 4.3026527 * x.std(ddof=1) / np.sqrt(3)
    assert (ci["lo"], ci["hi"]) == (pytest.approx(x.mean() - half, rel=1e-6), pytest.approx(x.mean() + half, rel=1e-6))


def test_few_replications_carry_a_warning_in_the_summary_and_on_screen(tmp_path):
    small = simulate(scenario(), seed=1, replications=FEW_REPLICATIONS - 1)
    assert small.summary["warnings"] and "only 9 replications" in small.summary["warnings"][0]
    assert simulate(scenario(), seed=1, replications=FEW_REPLICATIONS).summary["warnings"] == []
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(make()))
    r = CliRunner().invoke(main, ["run", str(path), "-n", "3", "--out", str(tmp_path / "out")])
    assert r.exit_code == 0 and "warning: only 3 replications" in " ".join(r.output.split())


def test_95_percent_intervals_cover_the_exact_expectation_95_percent_of_the_time():
    """At 3 replications a normal quantile covers about 81% of the time; Student's t with 2 degrees of freedom 95%.

    400 independent batches of 3 replications (seeds 0..399) of a small Markov scenario: the share of batches
    whose interval for the mean commissioner spend holds the exact expectation must be 0.95 within 3 binomial
    standard errors."""
    sc = scenario(**{"referrals.rate": 6})
    exact = expected(sc).summary()["commissioner"]["paid_total"]
    batches, n = 400, 3
    res = simulate(sc, seed=2024, replications=batches * n)
    x = res.per_replication["paid_total"].to_numpy().reshape(batches, n)
    cover = np.mean([(ci["lo"] <= exact <= ci["hi"]) for ci in map(mean_ci, x)])
    se = np.sqrt(0.95 * 0.05 / batches)
    assert abs(cover - 0.95) < 3 * se, cover
    # the normal quantile would not have: its coverage sits well below
    z = 1.959963984540054
    m, s = x.mean(axis=1), x.std(axis=1, ddof=1) / np.sqrt(n)
    assert np.mean(np.abs(m - exact) <= z * s) < 0.95 - 3 * se


# ---------------------------------------------------------------------------------------------
# Claims, sustainment counts, price-only designs

def test_the_claims_table_has_no_claim_at_a_zero_price_and_clients_carry_sustainment_counts():
    d = make(**{"contract.payments.1.tariff": {"easy": 0, "hard": 400}})  # job_start pays nothing for easy clients
    res = simulate(scenario_from_dict(d, "<test>"), seed=4, replications=4)
    claims, cl = res.claims, res.clients
    job = claims[claims["item"] == "job_start"]
    assert (claims["amount_claimed_pence"] > 0).all() and set(job["segment"].astype(str)) == {"hard"}
    assert cl.loc[cl.segment == "easy", "first_job"].notna().any()  # easy clients did enter the state: no £0 claims for them
    # sustainment payments per client: the accepted claims on the line, at most max_months each
    col = cl["sustainment_payments_in_work"]
    line = claims[claims["item"] == "in_work"]
    assert col.sum() == (line["claims"] - line["rejected"]).sum() > 0
    assert col.max() <= 3 and (col[cl["first_job"].isna()] == 0).all()


def test_a_design_that_changes_only_prices_under_a_price_blind_policy_is_named():
    raw = load_raw(BLENDED)
    dearer = apply_overrides(raw, {"contract.payments[name=sustained_job].tariff": 9000}, "test")
    runs = {name: simulate(scenario_from_dict(d, name), seed=2, replications=6).per_replication
            for name, d in (("base", raw), ("dearer", dearer))}
    table = summary_table(runs, ["base", "dearer"], "base")
    assert same_outcomes_as_baseline(table) == ["dearer"]
    assert "price-blind" in PRICE_ONLY_NOTE
    paid = table[(table.design == "dearer") & (table.metric == "paid_total")].iloc[0]
    assert paid["diff"] > 0  # the money did move
