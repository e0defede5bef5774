"""Bid stress tests: each stress pushes the organisation's figures the expected way (paired, fixed seeds); the
credit-limit equivalence behind 'ran out of cash'; working capital verified on independent runs; the reverse
search brackets its answer; stresses files with mistakes stop with file, field and rule (exit 2)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from pbrsim.cli.main import main
from pbrsim.scenario.schema import ROW_TOLERANCE, load_raw, scenario_from_dict
from pbrsim.simulate import simulate
from pbrsim.stress.run import (Runner, figures, quantile_ranks, replay, reserve_needed, run_stress_test, working_capital)
from pbrsim.stress.catalogue import (StressError, build_stresses, built_in_stresses, claim_rejection, complex_mix,
                             load_stresses_file, org_terms, payment_delay, recession, risk_pass_down, unlimited)
from pbrsim.stress.reverse import reverse_stress_test

from .conftest import make

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures"
SMALL = str(FIX / "valid_small.yaml")
ORG = "charity"
R = 40


def tight() -> dict:
    """conftest's contract with a provider on thin reserves: it runs out of cash in roughly 1 run in 5."""
    return make(**{"provider.credit": {"limit": 2000, "monthly_interest": 0.01}, "provider.opening_cash": 6000,
                   "provider.cost_per_client_month": {"full": 75, "minimal": 20}})


def chain() -> dict:
    """The same contract delivered by a prime and one subcontractor on blended terms (fee + half the results)."""
    raw = tight()
    prov = raw.pop("provider")
    raw["organisations"] = [
        {**prov, "name": "prime", "role": "prime", "opening_cash": 50000, "credit": {"limit": None, "monthly_interest": 0.0}},
        {**prov, "name": "sub", "role": "subcontractor", "opening_cash": 4000,
         "terms": {"fee_for_service": {"per_client_month": 80}, "pass_through": {"milestone": 0.2, "outcome": 0.2},
                   "management_fee": 0.1, "extra_lag": 1}},
    ]
    raw["supply_chain"] = {"allocation": {"method": "fixed_shares", "shares": {"prime": 0.5, "sub": 0.5}}}
    return raw


@pytest.fixture(scope="module")
def result():
    return run_stress_test(tight(), ORG, replications=R, seed=3, executor="serial")


def _fig(result, name):
    return result.figures[name]


# ---------------------------------------------------------------------------------------------
# Each stress moves the figures the expected way, paired on the same replications


def test_delays_only_ever_deepen_the_trough_and_more_delay_deepens_it_more(result):
    base = _fig(result, "base")
    previous = base
    for name in ("delay_1", "delay_3", "delay_6"):
        f = _fig(result, name)
        # the same claims are paid later (common random numbers): in every replication, no higher a low point
        assert (f["lowest_cash"] <= previous["lowest_cash"] + 1e-9).all(), name
        assert (f["failed"] >= previous["failed"]).all(), name
        assert f["reserve_needed"].mean() > previous["reserve_needed"].mean(), name
        previous = f


@pytest.mark.parametrize("name", ["rejection_up", "cost_inflation", "upfront_loss"])
def test_money_taken_away_lowers_cash_and_margin_in_every_replication(result, name):
    base, f = _fig(result, "base"), _fig(result, name)
    assert (f["margin"] < base["margin"]).all()
    assert (f["lowest_cash"] <= base["lowest_cash"] + 1e-9).all()
    assert (f["failed"] >= base["failed"]).all()
    row = next(r for r in result.rows if r["name"] == name)
    assert row["change"]["margin"]["hi"] < 0


@pytest.mark.parametrize("name", ["shortfall_10", "shortfall_25", "shortfall_50", "complex_mix", "recession"])
def test_fewer_or_harder_clients_and_fewer_jobs_lower_the_margin(result, name):
    row = next(r for r in result.rows if r["name"] == name)
    assert row["change"]["margin"]["hi"] < 0  # the whole paired 95% interval is below zero
    assert row["change"]["margin"]["pairs"] == R


def test_shortfall_margins_fall_in_order_of_the_shortfall(result):
    d = [next(r for r in result.rows if r["name"] == f"shortfall_{p}")["change"]["margin"]["diff"] for p in (10, 25, 50)]
    assert d[0] > d[1] > d[2]


def test_recession_raises_the_chance_of_running_out_of_cash(result):
    row = next(r for r in result.rows if r["name"] == "recession")
    assert row["change"]["ran_out_of_cash"]["diff"] > 0 and row["change"]["lowest_cash"]["hi"] < 0


def test_prime_passing_risk_down_hurts_the_subcontractor_and_does_not_apply_to_a_single_provider(result):
    row = next(r for r in result.rows if r["name"] == "risk_pass_down")
    assert not row["applicable"] and "not applicable" in row["note"]
    res = run_stress_test(chain(), "sub", replications=R, seed=3, executor="serial", only=["risk_pass_down"])
    ch = res.rows[1]["change"]
    assert res.rows[1]["applicable"]
    assert ch["lowest_cash"]["hi"] < 0 and ch["ran_out_of_cash"]["diff"] > 0
    assert res.rows[1]["working_capital"]["estimate"] > res.rows[0]["working_capital"]["estimate"]


def test_the_base_row_is_the_unstressed_scenario_and_every_row_has_a_sentence(result):
    assert result.rows[0]["name"] == "base" and "change" not in result.rows[0]
    assert [r["name"] for r in result.rows[1:]] == [s.name for s in built_in_stresses()]
    for r in result.rows:
        assert r["sentence"].startswith(r["label"])


# ---------------------------------------------------------------------------------------------
# The mechanics the figures rest on


def test_ran_out_of_cash_from_the_unlimited_run_is_the_engine_failure_with_the_limit(result):
    """The limit enters the engine only at the insolvency check, so runs are identical until the first breach."""
    with_limit = simulate(scenario_from_dict(tight()), seed=3, replications=R).per_replication
    assert (result.figures["base"]["failed"].to_numpy() == with_limit[f"failed[{ORG}]"].to_numpy()).all()
    assert 0 < result.figures["base"]["failed"].sum() < R


def test_replay_reproduces_the_run_and_the_reserve_is_the_smallest_to_the_penny(result):
    paths, terms = result.paths["base"], result.variants[0].terms
    assert (replay(paths, terms, 0) == paths.cash).all()
    need = reserve_needed(paths, terms)
    floor = -terms.limit
    assert (replay(paths, terms, need).min(axis=1) >= floor).all()
    short = need > 0
    assert short.any()
    assert (replay(paths, terms, need - 1)[short].min(axis=1) < floor).all()
    # interest makes the no-interest requirement an upper bound, never less
    assert (need <= np.maximum(0, floor - paths.cash.min(axis=1))).all()


@pytest.mark.parametrize("rate", [0.001, 0.0125, 0.05, 0.3])
def test_the_reserve_solved_backwards_is_the_one_bisection_finds(rate):
    """Random cash flows with overdraft interest: the backward solution equals bisection over replays, to the penny."""
    from pbrsim.stress.catalogue import OrgTerms
    from pbrsim.stress.run import Paths, _bisect_reserve

    gen = np.random.default_rng(int(rate * 1e4))
    for limit in (None, 0, 2_000_000):
        terms = OrgTerms(opening=500_000, limit=limit, rate=rate, cash_dependent=False)
        flows = gen.normal(-40_000, 600_000, size=(300, 48)).astype(np.int64)
        paths = Paths(np.arange(300), np.zeros_like(flows), np.zeros_like(flows))
        c = np.full(300, terms.opening, dtype=np.int64)
        for t in range(flows.shape[1]):  # the engine's month end: the flows, then interest on an overdraft
            bal = c + flows[:, t]
            paths.interest[:, t] = np.where(bal < 0, np.rint(-bal.astype(np.float64) * rate).astype(np.int64), 0)
            paths.cash[:, t] = c = bal - paths.interest[:, t]
        floor = -(limit or 0)
        hi = np.maximum(0, floor - paths.cash.min(axis=1, initial=terms.opening))
        assert hi.any() and not hi.all()
        assert (reserve_needed(paths, terms) == _bisect_reserve(paths, terms, floor, hi)).all()


def test_working_capital_keeps_failures_at_the_target_in_an_independent_run():
    """Estimate the reserve on seed 11, then run seed 12 with it added to opening cash.

    Sampling error: the estimate is the sample quantile allowing floor(0.05 x 300) failures, and the check is a
    fresh binomial sample of 300, so the share failing there is about 5% with a standard deviation of about
    sqrt(2 x 0.05 x 0.95 / 300) = 1.8 points (the quantile's own error plus the check's); we allow 3 of them.
    """
    n, target = 300, 0.05
    raw = tight()
    terms = org_terms(raw, ORG)
    runner = Runner(ORG, 11, executor="serial")
    fig = figures(runner.run({"x": (unlimited(raw, ORG), range(n))})["x"], terms)
    assert fig["failed"].mean() > 2 * target
    wc = working_capital(fig["reserve_needed"].to_numpy(), target)
    assert wc["lo"] <= wc["estimate"] <= wc["hi"]
    assert (fig["reserve_needed"] > wc["estimate"]).sum() <= math.floor(target * n)
    raw2 = dict(raw, provider={**raw["provider"], "opening_cash": raw["provider"]["opening_cash"] + wc["estimate"]})
    fails = simulate(scenario_from_dict(raw2), seed=12, replications=n).per_replication[f"failed[{ORG}]"].mean()
    assert fails <= target + 3 * math.sqrt(2 * target * (1 - target) / n)
    # and a reserve at the interval's lower end would not be enough in general: it is below the estimate
    assert wc["lo"] < wc["estimate"]


def test_quantile_ranks_cover_at_least_95_percent():
    from pbrsim.stress.run import binomial_cdf

    for n, q in ((40, 0.5), (300, 0.95), (500, 0.05)):
        lo, hi = quantile_ranks(n, q)
        F = binomial_cdf(n, q)
        assert 1 <= lo < hi <= n
        assert F[hi - 1] - F[lo - 1] >= 0.95


# ---------------------------------------------------------------------------------------------
# The stresses themselves


def test_recession_moves_mass_to_the_self_loop_and_keeps_rows_summing_to_one():
    raw = make()
    ch = recession(raw, ORG, 0.3)
    assert ch.set  # job and sustained are job states here (sustainment and outcome)
    for path, row in ch.set.items():
        assert abs(sum(row.values()) - 1) <= ROW_TOLERANCE
        seg, level, frm = path.split(".")[2:]
        old = raw["pathway"]["transitions"][seg][level][frm]
        for to, p in row.items():
            if to in ("job", "sustained") and to != frm:
                assert p == pytest.approx(0.7 * old[to])
        assert row[frm] >= old.get(frm, 0)
    stressed = build_stresses(raw, ORG, "x", None, (), ["recession"])[1].raw
    scenario_from_dict(stressed, "x")


def test_mix_shift_keeps_shares_summing_to_one_and_delay_and_rejection_touch_every_payment():
    raw = make()
    ch = complex_mix(raw, ORG, 0.1)
    shares = {k: v["share"] for k, v in raw["segments"].items()} | {k.split(".")[1]: v for k, v in ch.set.items()}
    assert shares == pytest.approx({"easy": 0.5, "hard": 0.5}) and sum(shares.values()) == pytest.approx(1)
    assert complex_mix(raw, ORG, 0.9).note.startswith("only 60%")
    d = payment_delay(raw, ORG, 3)
    assert d.set["contract.service_fee.lag"] == 4 and d.set["contract.payments[3].lag"] == 6 and len(d.set) == 5
    r = claim_rejection(raw, ORG, 0.97)
    assert r.set["contract.payments[0].rejection"] == pytest.approx(0.97) and r.set["contract.payments[1].rejection"] == 1.0


def test_pass_down_sets_results_shares_to_one_and_removes_the_fee():
    ch = risk_pass_down(chain(), "sub")
    assert ch.remove == ("organisations[name=sub].terms.fee_for_service",)
    assert {k.rsplit(".", 1)[1] for k in ch.set} == {"attachment", "milestone", "outcome", "sustainment"}


def test_combined_stresses_apply_in_turn_and_user_stresses_resolve_the_organisation():
    sfile = load_stresses_file(FIX / "stresses" / "good.yaml")
    variants = build_stresses(load_raw(SMALL), "small_charity", SMALL, sfile)
    names = [v.name for v in variants]
    assert names == ["base", "shortfall_25", "delay_3", "overdraft_halved", "late_outcomes", "shortfall_25+delay_3"]
    combo = variants[-1].raw
    assert combo["referrals"]["rate"] == pytest.approx(3.75) and combo["contract"]["payments"][2]["lag"] == 5
    assert variants[3].terms.limit == 250000  # pence: the halved overdraft is the limit failure is judged against
    twice = build_stresses(load_raw(SMALL), "small_charity", SMALL, None, [["delay_1", "delay_3"]])[-1].raw
    assert twice["contract"]["payments"][0]["lag"] == 1 + 4


# ---------------------------------------------------------------------------------------------
# Reverse stress test


def test_reverse_search_brackets_its_answer(result):
    rev = reverse_stress_test(tight(), ORG, result.paths["base"], result.variants[0].terms, seed=3, replications=R,
                              levels=(0.5, 0.05), executor="serial", dimensions=("delay", "costs"))
    found = [r for r in rev["results"] if r["reached"] == "yes"]
    assert {r["dimension"] for r in found} == {"delay", "costs"}
    assert all(r["reached"] == "at_base" for r in rev["results"] if r["level"] == 0.05)  # base already ~20%
    runner = Runner(ORG, 3, executor="serial")
    from pbrsim.stress.catalogue import Stress

    for r in found:
        p = {}
        for side in ("bracket_lo", "bracket_hi"):
            raw, _ = Stress("x", "", "built_in", r["dimension"], r[side]).apply(tight(), ORG, "x")
            paths = runner.run({0: (unlimited(raw, ORG), range(R))})[0]
            p[side] = float((paths.cash.min(axis=1) < -200000).mean())
        assert p["bracket_lo"] < r["level"] <= p["bracket_hi"], r
        assert p["bracket_lo"] == r["p_at_bracket_lo"] and p["bracket_hi"] == r["p_at_bracket_hi"]
        assert r["bracket_hi"] - r["bracket_lo"] == pytest.approx(r["precision"])
        assert r["lo"] <= r["shock"] and (r["hi"] is None or r["shock"] <= r["hi"])
        assert "sinks this bid half the time" in r["sentence"]


# ---------------------------------------------------------------------------------------------
# The command line


BROKEN = {
    "unknown_field.yaml": ("stresess", "unknown field"),
    "bad_path.yaml": ("stresses.late_outcomes", "no item of contract.payments has name = 'no_such_payment'"),
    "invalid_scenario.yaml": ("stresses.more_easy: in the scenario it makes, segments", "segment shares must sum to 1"),
    "unknown_in_combine.yaml": ("combine[0]", "unknown stress 'no_such_stress'"),
    "builtin_name.yaml": ("stresses.delay_3", "is the name of a built-in stress"),
    "bad_type.yaml": ("built_in", "must be true, false or a list of built-in stress names"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_bad_stresses_file_stops_with_file_field_and_rule(tmp_path, name):
    out = tmp_path / "out"
    path = FIX / "stresses" / name
    r = CliRunner().invoke(main, ["stress", SMALL, "--stresses", str(path), "-n", "5", "--executor", "serial", "--out", str(out)])
    assert r.exit_code == 2, r.output
    text = " ".join(r.output.split())
    field, rule = BROKEN[name]
    assert f"{path}: {field}" in text and rule in text, text
    assert "Nothing was run or written" in text and not out.exists()


def test_unknown_organisation_and_unknown_combination_exit_2(tmp_path):
    r = CliRunner().invoke(main, ["stress", SMALL, "--organisation", "nobody", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "unknown organisation 'nobody'" in r.output and "small_charity" in r.output
    r = CliRunner().invoke(main, ["stress", SMALL, "--combine", "delay_3,nope", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "--combine delay_3,nope: unknown stress 'nope'" in " ".join(r.output.split())


def test_stress_command_writes_tables_summary_and_report(tmp_path):
    out = tmp_path / "st"
    r = CliRunner().invoke(main, ["stress", SMALL, "-n", "12", "--executor", "serial", "--only", "shortfall_25,delay_3",
                                  "--combine", "shortfall_25,delay_3", "--report", "--out", str(out)])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    for phrase in ("Stress test of small_charity", "runs out of cash", "working capital", "Change against the unstressed base",
                   "In plain words", "Referrals 25% below forecast and every payment 3 months later"):
        assert phrase in text
    for f in ("stresses.parquet", "replications.parquet", "cash.parquet", "summary.json", "manifest.json",
              "report/stress.html", "report/stress_cash.png", "report/stress_tornado.png", "report/stress_reserve.png"):
        assert (out / f).exists(), f
    summary = json.loads((out / "summary.json").read_text())
    assert [s["name"] for s in summary["stresses"]] == ["base", "shortfall_25", "delay_3", "shortfall_25+delay_3"]
    html = (out / "report" / "stress.html").read_text()
    assert "Which shocks matter most" in html and "data:image/png;base64," in html
    man = json.loads((out / "manifest.json").read_text())
    assert man["kind"] == "pbrsim-stress" and man["organisation"] == "small_charity"
    # `pbrsim report` on the stress folder rebuilds the same page from summary.json
    again = tmp_path / "again"
    r = CliRunner().invoke(main, ["report", str(out), "--out", str(again)])
    assert r.exit_code == 0, r.output
    assert (again / "stress.html").read_text().split("<footer")[0] == html.split("<footer")[0]


def test_stresses_are_validated_before_anything_runs():
    with pytest.raises(StressError) as e:
        build_stresses(load_raw(SMALL), "small_charity", SMALL, None, [["delay_3"]])
    assert "a combination needs at least two stresses" in str(e.value)
    assert yaml.safe_load((ROOT / "scenarios" / "stress" / "example_stresses.yaml").read_text())["stresses"]
    sfile = load_stresses_file(ROOT / "scenarios" / "stress" / "example_stresses.yaml")
    raw = load_raw(ROOT / "scenarios" / "supply_chain" / "outcome_pass_through.yaml")
    names = [v.name for v in build_stresses(raw, "east_charity", "x", sfile)]
    assert "bad_first_year" in names and "overdraft_halved" in names and len(names) == 1 + 12 + 4 + 2


def test_working_capital_is_found_by_re_runs_when_the_policy_reads_cash():
    """A cash_stressed provider serves differently with more cash, so a replay is not exact: bisection over re-runs."""
    raw = tight()
    raw["provider"]["policy"] = {"name": "cash_stressed", "comfortable_cash": 6000, "stressed_cash": 0}
    n = 30
    res = run_stress_test(raw, ORG, replications=n, seed=5, executor="serial", only=[])
    wc = res.rows[0]["working_capital"]
    assert wc["method"] == "re-run bisection" and wc["estimate"] is not None
    lo, hi = wc["bracket"]
    k = math.floor(0.05 * n)
    runner = Runner(ORG, 5, executor="serial")

    def fails(extra):
        paths = runner.run({0: (unlimited(raw, ORG, extra), range(n))})[0]
        return int((paths.cash.min(axis=1) < -200000).sum())

    assert fails(hi) <= k < fails(lo)
    assert hi - lo <= max(100, 0.02 * hi)


# ---------------------------------------------------------------------------------------------
# Unit economics: what each client brings in and costs, adding up to the margin to the penny

@pytest.mark.parametrize("path, org", [("supply_chain/outcome_pass_through.yaml", "prime_plc"),
                                       ("supply_chain/outcome_pass_through.yaml", "complex_needs_specialist"),
                                       ("library/peterborough.yaml", "one_service"),
                                       ("library/tr_crc_volume_shortfall.yaml", "crc")])
def test_unit_economics_add_up_to_the_margin_and_count_the_organisations_clients(path, org):
    from pbrsim.stress.economics import summarise

    raw = unlimited(load_raw(ROOT / "scenarios" / path), org)
    terms = org_terms(raw, org)
    reps = range(12)
    p = Runner(org, 5, executor="serial").run({"b": (raw, reps)})["b"]
    # every movement of the organisation's money falls in one part: income less the rest is the margin, per run
    net = p.money[:, :, 0].sum(axis=1) - p.money[:, :, 1:].sum(axis=(1, 2))
    assert np.array_equal(net, p.cash[:, -1] - terms.opening)
    # its clients: every client of the contract for the contract holder, else those referred to it
    res = simulate(scenario_from_dict(raw, path), seed=5, replications=12)
    cl = res.clients if org == res.model.organisations[0].name else res.clients[res.clients["referred_to"] == org]
    segs = list(res.model.pathway.segments)
    counts = cl.groupby(["replication", "segment"], observed=False).size().unstack().reindex(columns=segs, fill_value=0)
    assert np.array_equal(p.clients, counts.reindex(list(reps), fill_value=0).to_numpy())
    ue = summarise(p.money, p.clients, tuple(segs))
    assert ue["net_per_client"]["mean"] * p.clients.sum() == pytest.approx(float((p.cash[:, -1] - terms.opening).sum()) / 100)
    assert ue["net_per_client"]["mean"] == pytest.approx(net.sum() / 100 / p.clients.sum())
    for row in ue["segments"]:  # contribution = income - delivery - passed on, per client of the segment
        assert row["contribution_per_client"]["mean"] == pytest.approx(
            row["income_per_client"] - row["delivery_per_client"] - row["passed_on_per_client"])
    if org == "complex_needs_specialist":  # a subcontractor paid for results passed down by its prime
        assert {r["segment"] for r in ue["segments"]} == {"complex"} and ue["segments"][0]["income_per_client"] > 0
    if org == "prime_plc":
        assert sum(r["passed_on_per_client"] * r["clients"] for r in ue["segments"]) > 0


def test_unit_economics_sentence_says_why_a_bid_fails():
    from pbrsim.model.money import money
    from pbrsim.stress.economics import sentence

    result = run_stress_test(load_raw(ROOT / "scenarios" / "outcomes_only_vcs.yaml"), "community_links_style_charity",
                             replications=24, seed=2, executor="serial", only=["delay_3"])
    ue = result.summary()["unit_economics"]
    base = result.rows[0]["ran_out_of_cash"]["mean"]
    line = sentence(ue, "charity", "GBP", base)
    net = ue["net_per_client"]
    assert f"{'loses' if net['mean'] < 0 else 'makes'} {money(abs(net['mean']))} on each client referred" in line
    assert f"(95% CI {money(net['lo'])} to {money(net['hi'])})" in line
    assert f"paid {money(ue['income_per_client'])} a client and spends {money(ue['cost_per_client'])}" in line
    for r in ue["segments"]:
        assert f"{r['segment']} {money(r['contribution_per_client']['mean'])}" in line
    # this bid pays its way per client yet runs out of cash in most runs: the sentence blames the timing
    assert net["lo"] > 0 and base > 0.5 and "the timing of payments, not their price" in line
    # a bid whose income does not cover delivery loses money on every extra client
    cheap = {**ue, "income_per_client": ue["income_per_client"] / 4, "net_per_client": {"mean": -10.0, "lo": None, "hi": None}}
    assert "every extra client deepens the loss" in sentence(cheap, "charity", "GBP", base)
