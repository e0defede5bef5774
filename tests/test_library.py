"""The scenario library (scenarios/library/*.yaml): every archetype validates, runs, conserves money and
clients, and meets its calibration targets; plus checks of the contract rules particular to each archetype."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from pbrsim.library.calibrate import check_targets, load_targets, reach_rate
from pbrsim.cli.main import main
from pbrsim.scenario.schema import load_scenario
from pbrsim.simulate import simulate

LIB = Path(__file__).resolve().parents[1] / "scenarios" / "library"
FILES = sorted(LIB.glob("*.yaml"))
SEED = 20240
REPS = 3

_runs: dict[tuple[str, int], object] = {}


def run(name: str, reps: int = REPS):
    """A short run of a library file, shared between the tests of this module."""
    key = (name, reps)
    if key not in _runs:
        _runs[key] = simulate(load_scenario(LIB / name), seed=SEED, replications=reps)
    return _runs[key]


def targets_file(path: Path) -> Path | None:
    """targets/<stem>.targets.yaml; a file that extends another without touching its segments or pathway, and has
    no targets of its own, is held to its parent's targets (its full-service rates depend on nothing else; with
    behaviour, a file whose prices change the observed rates has its own)."""
    own = LIB / "targets" / f"{path.stem}.targets.yaml"
    if own.exists():
        return own
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if isinstance(raw, dict) and "extends" in raw and not {"segments", "pathway"} & raw.keys():
        parent = (path.parent / str(raw["extends"])).resolve()
        if parent.parent == LIB:
            return targets_file(parent)
    return None


FCF_PROJECTS = ("fcf_ambition", "fcf_aspire", "fcf_depaul", "fcf_fusion", "fcf_home_group", "fcf_local_solutions", "fcf_st_basils")
ARCHETYPES = ("work_programme", "work_and_health", "small_vcs_blended", "small_vcs_blended_milestones", *FCF_PROJECTS,
              "troubled_families", "peterborough", "tr_crc", "tr_crc_volume_shortfall")


def test_the_library_is_there():
    assert {f"{a}.yaml" for a in ARCHETYPES} <= {p.name for p in FILES}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_validates(path):
    r = CliRunner().invoke(main, ["validate", str(path)])
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_short_run_conserves_money_and_clients(path):
    res = run(path.name)
    m, led, cl = res.monthly, res.ledger, res.clients
    assert len(cl) > 0 and len(led) > 0

    # every organisation's month-end cash is its opening cash plus its ledger movements so far
    for org in res.model.organisations:
        inflow = led[led.payee == org.name].groupby(["replication", "month"]).amount_pence.sum()
        outflow = led[led.payer == org.name].groupby(["replication", "month"]).amount_pence.sum()
        mo = m[m.organisation == org.name].set_index(["replication", "month"]).sort_index()
        net = inflow.reindex(mo.index, fill_value=0) - outflow.reindex(mo.index, fill_value=0)
        rebuilt = org.opening_cash + net.groupby(level="replication").cumsum()
        assert (rebuilt.to_numpy() == mo.cash_pence.to_numpy()).all()

    # every admitted client is counted once at referral and once, in some state, at the last month end
    admitted = cl.groupby("replication").size()
    referred = m.groupby("replication").referrals.sum()
    last = m[m.month == m.month.max()]
    n_cols = [c for c in m.columns if c.startswith("n_") and c not in ("n_full", "n_minimal")]
    in_states = last.groupby("replication")[n_cols].sum().sum(axis=1)
    assert (admitted == referred).all() and (admitted == in_states).all()
    assert cl.final_state.isin(list(res.model.pathway.states)).all()

    # the summary's totals are the ledger's
    s = res.summary
    assert s["segments"][-1]["referrals"]["mean"] * REPS == pytest.approx(len(cl))
    comm = res.scenario.contract.commissioner
    paid = led[led.payer == comm].amount_pence.sum() - led[(led.payee == comm) & (led.kind == "clawback")].amount_pence.sum()
    assert s["commissioner"]["paid_total"]["mean"] * REPS * 100 == pytest.approx(paid, rel=1e-9)


CALIBRATED = [p for p in FILES if targets_file(p) is not None]


@pytest.mark.parametrize("path", CALIBRATED, ids=lambda p: p.stem)
def test_calibration_targets_are_met(path):
    targets = load_targets(targets_file(path))
    table = check_targets(path, targets)
    assert len(table) == len(targets.targets) > 0
    assert table.met.all(), table.to_string()
    assert ((table.model - table.target_rate).abs() <= table.tolerance).all()


def test_every_archetype_has_targets():
    for name in ARCHETYPES:
        assert targets_file(LIB / f"{name}.yaml") is not None, name


# --- Work Programme ------------------------------------------------------------------------------------------

def test_wp_attachment_fee_per_attached_client_falls_by_contract_year():
    res = run("work_programme.yaml")
    cl, led = res.clients, res.ledger
    fees = led[(led.payer == "dwp") & (led.item == "attachment")]
    lag = 1
    paid_by_year = fees.groupby((fees.month - lag) // 12).amount_pence.sum()
    attached_by_year = cl[cl.first_attached.notna()].groupby(cl.first_attached // 12).size()
    per_client = (paid_by_year.reindex(attached_by_year.index, fill_value=0) / attached_by_year / 100).to_dict()
    assert sorted(per_client) == [0, 1, 2, 3, 4]            # referrals in months 0-57 are attached in years 1-5
    assert [per_client[y] for y in range(5)] == [400, 300, 200, 0, 0]


def test_wp_clients_in_work_keep_earning_sustainment_after_their_attachment():
    res = run("work_programme.yaml")
    cl, led = res.clients, res.ledger
    T = res.scenario.months
    # nobody out of work outlives the 24-month attachment (every referral's 24th month falls inside the contract)
    assert (cl.referral_month + 23 <= T - 1).all()
    assert not cl.final_state.isin(["referred", "attached"]).any()
    # ... but clients in work do: some are still in work, active, when the contract ends
    assert cl.final_state.str.startswith("in_work").any()
    # every attachment has ended by month 80 (last referral month 57 + 23): sustainment claimed after that is
    # for clients past their attachment
    last_attachment_month = int(cl.referral_month.max()) + 23
    sus = led[(led.payer == "dwp") & (led.kind == "sustainment")]
    late = sus[sus.month > last_attachment_month + 1]   # paid a month after the claim
    assert late.amount_pence.sum() > 0
    assert set(late.segment.unique()) >= {"jsa_25_plus"}


def test_wp_job_outcomes_in_the_simulation_match_the_calibrated_two_year_rates():
    """The archetype's providers park (graded, with latent classes): the simulated two-year rates are the observed
    rates the calibration fitted, potential under full service x the service given."""
    from pbrsim.engine.observed import reach_rates

    res = run("work_programme.yaml")
    cl = res.clients
    sc = res.scenario
    pw = res.model.pathway
    jo_state = {"jsa_18_24": "in_work_6", "jsa_25_plus": "in_work_6", "esa_new_claimants": "in_work_3", "esa_ex_ib": "in_work_3"}
    for seg, state in jo_state.items():
        g = cl[cl.segment == seg]
        within = (g[f"first_{state}"] - g.referral_month <= 23).fillna(False).astype(bool).mean()   # 24th transition: month r + 23
        p = reach_rates(res.model, pw.segments.index(seg), np.array([s == state for s in pw.states]), 24)
        assert p < reach_rate(sc, seg, [state], 24)  # below what full service would give
        se = np.sqrt(p * (1 - p) / len(g))
        assert abs(within - p) < 4 * se, (seg, within, p)
        # JSA outcomes are paid at 26 weeks, ESA outcomes at 13: the tariff of the other line is 0
    led = res.ledger
    jo = led[(led.payer == "dwp") & (led.kind == "outcome")]
    assert set(jo[jo.item == "job_outcome_26wk"].segment.unique()) <= {"jsa_18_24", "jsa_25_plus"}
    assert set(jo[jo.item == "job_outcome_13wk"].segment.unique()) <= {"esa_new_claimants", "esa_ex_ib"}


# --- Work and Health Programme ---------------------------------------------------------------------------------

def test_whp_delivery_fee_is_30_percent_of_value_paid_monthly_one_month_in_arrears():
    res = run("work_and_health.yaml")
    value = res.scenario.contract.value
    fee = res.ledger[(res.ledger.payer == "dwp") & (res.ledger.kind == "service_fee")]
    for rep, rows in fee.groupby("replication"):
        assert sorted(rows.month) == list(range(1, 61))          # falls due in referral months 0-59, paid a month later
        assert rows.amount_pence.nunique() == 1                          # the same each month
        assert rows.amount_pence.sum() == round(0.30 * value * 100)
    assert fee.replication.nunique() == REPS


def test_whp_one_outcome_price_and_the_support_window():
    res = run("work_and_health.yaml")
    cl, led = res.clients, res.ledger
    out = led[(led.payer == "dwp") & (led.kind == "outcome")]
    price = res.scenario.contract.payments[0].tariff * 100
    assert (out.amount_pence % price == 0).all()
    # no one is still looking for work after the 15-month window...
    assert not (cl.final_state == "participating").any()
    # ... but people in work at the end of it can still reach the earnings threshold
    late = (cl.first_job_outcome - cl.referral_month >= 15).fillna(False).astype(bool)
    assert late.any()


def test_whp_pooled_published_ratio():
    """13,710 job outcomes / 103,300 starts to Feb 2020 pools starters observed 0-27 months (starts spread evenly
    over 28 months): the model's average rate over those ages matches it to one percentage point."""
    sc = load_scenario(LIB / "work_and_health.yaml")
    pooled = np.mean([0.0] + [reach_rate(sc, "participants", ["job_outcome"], a) for a in range(1, 28)])
    assert abs(pooled - 13_710 / 103_300) <= 0.01
    # ... and it is a lower bound: the completed-window rate is well above it
    assert reach_rate(sc, "participants", ["job_outcome"], 21) > 1.5 * 13_710 / 103_300


# --- small voluntary-sector blended contract ---------------------------------------------------------------------

def _results_share(res, segment):
    led = res.ledger
    pay = led[(led.payer == "council") & led.kind.isin(["milestone", "outcome"])]
    return pay[pay.segment == segment].amount_pence.sum() / pay.amount_pence.sum()


def test_vcs_milestones_raise_complex_clients_share_of_results_money():
    base = run("small_vcs_blended.yaml", 6)
    ms = run("small_vcs_blended_milestones.yaml", 6)
    assert _results_share(ms, "complex") > _results_share(base, "complex") + 0.03
    # milestones are paid for complex clients only
    mil = ms.ledger[(ms.ledger.payer == "council") & (ms.ledger.kind == "milestone")]
    assert len(mil) > 0 and set(mil.segment.unique()) == {"complex"}
    assert (base.ledger.kind != "milestone").all()


def test_vcs_results_share_of_contract_value_is_within_the_community_links_range():
    for name in ("small_vcs_blended.yaml", "small_vcs_blended_milestones.yaml"):
        c = load_scenario(LIB / name).contract
        assert 0.50 <= 1 - c.service_fee.share_of_value <= 0.85
        assert 100_000 <= c.value <= 1_000_000
