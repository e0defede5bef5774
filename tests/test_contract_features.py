"""Contract features of real PbR contracts: prices by year, deadweight, per-person caps, forced exit only
from some states, volume bands, cohort threshold payments and investor finance.

Deterministic pathways make the expected payments follow from the rules alone; random ones are checked
against the tables the run itself records (clients, ledger) or against exact mode.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pbrsim.engine.exact import ExactNotApplicable, check_exact, expected
from pbrsim.engine.run import compile_model
from pbrsim.scenario.schema import ScenarioError, load_raw, scenario_from_dict
from pbrsim.simulate import simulate

from .conftest import make, override
from .test_exact import _compare
from .test_engine import LINE

ROOT = Path(__file__).resolve().parents[1]


def _sc(d: dict, **changes):
    return scenario_from_dict(override(d, **changes), "<test>")


def _paid(res, item):
    led = res.ledger[(res.ledger.payer == "commissioner") & (res.ledger.item == item)]
    return sorted((int(r.month), int(r.amount_pence)) for r in led.itertuples())


# -- tariffs by year -------------------------------------------------------------------------------

def _yearly(basis):
    """One client referred in months 0, 11 and 24; each reaches a job two months later."""
    return _sc(LINE, **{
        "months": 30,
        "referrals": {"monthly": [1] + [0] * 10 + [1] + [0] * 12 + [1], "distribution": "fixed"},
        "pathway.max_months_on_programme": 4,
        "contract.payments": [
            {"name": "attach", "kind": "attachment", "state": "referred", "tariff_by_year": [400, 300, 200]},
            {"name": "job_start", "kind": "outcome", "state": "job", "tariff_by_year": [1000, {"only": 1200}],
             "year_basis": basis},
        ],
        "contract.service_fee": None,
    })


def test_tariff_by_contract_year_follows_the_month_the_payment_is_triggered():
    res = simulate(_yearly("contract"), seed=0, replications=1)
    assert _paid(res, "attach") == [(0, 40000), (11, 40000), (24, 20000)]
    # the client referred in month 11 gets its job in month 12: a year-2 price
    assert _paid(res, "job_start") == [(1, 100000), (12, 120000), (25, 120000)]


def test_tariff_by_year_of_entry_keeps_the_price_of_the_referral_year():
    res = simulate(_yearly("entry"), seed=0, replications=1)
    assert _paid(res, "job_start") == [(1, 100000), (12, 100000), (25, 120000)]


def test_exact_mode_prices_by_year_like_the_engine():
    d = make()
    d["months"] = 30
    d["referrals"] = {"rate": 20, "start": 0, "end": 26, "distribution": "poisson"}
    d["contract"]["payments"][0] = {"name": "attach", "kind": "attachment", "state": "engaged",
                                    "tariff_by_year": [400, 300, {"easy": 100, "hard": 250}]}
    d["contract"]["payments"][3]["year_basis"] = "entry"
    d["contract"]["payments"][3]["tariff_by_year"] = [1000, 1500, 800]
    del d["contract"]["payments"][3]["tariff"]
    _compare(scenario_from_dict(d, "<test>"), reps=200)


def test_tariff_and_tariff_by_year_are_exclusive_and_year_basis_needs_years():
    d = make()
    d["contract"]["payments"][0]["tariff_by_year"] = [1, 2]
    with pytest.raises(ScenarioError) as e:
        scenario_from_dict(d, "x.yaml")
    assert ("contract.payments[0].tariff", "give exactly one of `tariff` or `tariff_by_year`") in e.value.problems
    d = make()
    d["contract"]["payments"][0]["year_basis"] = "entry"
    with pytest.raises(ScenarioError) as e:
        scenario_from_dict(d, "x.yaml")
    assert any(p == "contract.payments[0].year_basis" for p, _ in e.value.problems)
    d = make()
    d["contract"]["payments"][1]["tariff_by_year"] = [{"easy": 1}]
    del d["contract"]["payments"][1]["tariff"]
    with pytest.raises(ScenarioError) as e:
        scenario_from_dict(d, "x.yaml")
    assert any(p == "contract.payments[1].tariff_by_year[0]" and "hard" in r for p, r in e.value.problems)


# -- deadweight --------------------------------------------------------------------------------------

def test_deadweight_deducts_its_share_from_every_payment_on_the_line():
    sc = _sc(LINE, **{"contract.payments.2.deadweight": 1 / 6, "contract.payments.2.tariff": 600})
    res = simulate(sc, seed=0, replications=1)
    assert _paid(res, "job_start") == [(3, 50000)]  # 5 of every 6: £600 -> £500
    assert _paid(res, "engage") == [(1, 2000)]  # other lines untouched


def test_exact_mode_agrees_with_the_engine_under_deadweight():
    d = make()
    d["contract"]["payments"][3]["deadweight"] = 0.25
    _compare(scenario_from_dict(d, "<test>"), reps=200)


# -- per-person cap ----------------------------------------------------------------------------------

def test_per_person_cap_cuts_the_payment_that_crosses_it_and_pays_nothing_after():
    sc = _sc(LINE, **{"contract.per_person_cap": 315})
    res = simulate(sc, seed=0, replications=1)
    # attach 10 + engage 20 = 30; the job payment of 300 is cut to 285; sustainment then earns nothing
    assert _paid(res, "job_start") == [(3, 28500)]
    assert _paid(res, "in_work") == []
    claims = res.claims[res.claims.item == "job_start"]
    assert int(claims.amount_claimed_pence.sum()) == 28500


def test_no_client_is_paid_more_than_the_per_person_cap():
    d = make()
    d["contract"]["per_person_cap"] = 1150
    d["contract"]["payments"][3]["rejection"] = 0.3
    res = simulate(scenario_from_dict(d, "<test>"), seed=3, replications=20)
    assert res.per_replication["paid_total"].sum() > 0
    # without the cap, hard clients would earn up to 100 + 400 + 3*50 + 2000 = 2650
    assert (res.claims.amount_claimed_pence - res.claims.amount_rejected_pence).groupby(
        [res.claims.replication, res.claims.item]).sum().max() > 0
    uncapped = simulate(scenario_from_dict(make(), "<test>"), seed=3, replications=20)
    assert res.per_replication["paid_total"].mean() < uncapped.per_replication["paid_total"].mean()
    assert "per_person_cap could bind" in " ".join(check_exact(compile_model(scenario_from_dict(d, "<t>"))))


def test_a_per_person_cap_that_cannot_bind_keeps_exact_mode():
    d = make()
    d["contract"]["per_person_cap"] = 100 + 400 + 3 * 50 + 2000
    assert check_exact(compile_model(scenario_from_dict(d, "<t>"))) == []


# -- forced exit only from some states ---------------------------------------------------------------

def test_forced_exit_can_spare_clients_in_work_so_sustainment_continues():
    sc = _sc(LINE, **{"pathway.exit_applies_to": ["referred", "engaged"], "contract.payments.3.max_months": 6})
    res = simulate(sc, seed=0, replications=1)
    c = res.clients.iloc[0]
    assert c.final_state == "job"  # still in work at the contract end, 8 months after referral
    assert [m for m, _ in _paid(res, "in_work")] == [2, 3, 4, 5, 6, 7]  # months 1..6 in work, lag 1


def test_exact_mode_agrees_with_the_engine_when_forced_exit_applies_to_some_states():
    d = make()
    d["pathway"]["exit_applies_to"] = ["referred", "engaged"]
    d["pathway"]["max_months_on_programme"] = 4
    _compare(scenario_from_dict(d, "<test>"), reps=200)


def test_exit_applies_to_names_active_states_and_needs_a_programme_limit():
    with pytest.raises(ScenarioError) as e:
        scenario_from_dict(make(**{"pathway.exit_applies_to": ["sustained", "nowhere"]}), "x.yaml")
    paths = [p for p, _ in e.value.problems]
    assert "pathway.exit_applies_to[0]" in paths and "pathway.exit_applies_to[1]" in paths


# -- volume band -------------------------------------------------------------------------------------

def _banded(per_month: int, months: int = 24):
    return _sc(LINE, **{
        "months": months,
        "referrals": {"monthly": [per_month] * months, "distribution": "fixed"},
        "contract.payments": [],
        "contract.service_fee": {"total": 24000, "schedule": "monthly", "lag": 1,
                                 "volume_band": {"expected_per_year": 120, "band": 0.1, "lag": 2}},
    })


def test_volumes_below_the_band_are_clawed_back_at_the_year_end():
    res = simulate(_banded(6), seed=0, replications=1)  # 72 a year against 120 expected, band down to 108
    back = res.ledger[res.ledger.kind == "clawback"]
    unit = 12000 / 120  # the year's fee over expected volume
    assert sorted(zip(back.month, back.amount_pence)) == [(13, round(unit * (108 - 72) * 100)), (25, round(unit * (108 - 72) * 100))]
    assert set(back.payer) == {"p"} and set(back.payee) == {"commissioner"}
    pr = res.per_replication.iloc[0]
    assert pr["clawed_back"] == 2 * unit * 36
    assert pr["paid_total"] == pytest.approx(24000 - 2 * unit * 36)


def test_volumes_above_the_band_earn_a_top_up_and_within_the_band_nothing():
    res = simulate(_banded(14), seed=0, replications=1)  # 168 a year, band up to 132
    top = res.ledger[res.ledger.item == "volume_reconciliation"]
    assert set(top.payer) == {"commissioner"} and list(top.amount_pence) == [36 * 100 * 100] * 2
    assert simulate(_banded(10), seed=0, replications=1).ledger.item.eq("volume_reconciliation").sum() == 0


def test_a_part_year_is_reconciled_against_its_share_of_the_expected_volume():
    res = simulate(_banded(6, months=18), seed=0, replications=1)
    back = res.ledger[res.ledger.kind == "clawback"]
    # year 2 has 6 months: expected 60, lower bound 54, actual 36; its fee is 6/18 of the total over 120
    unit2 = (24000 * 6 / 18) / 120
    assert int(back.amount_pence.iloc[-1]) == round(unit2 * (54 - 36) * 100)
    assert int(back.month.iloc[-1]) == 17 + 2


@pytest.mark.parametrize("lag", [0, 1, 3])
def test_a_year_is_reconciled_when_the_provider_fails_at_its_last_month_end_whatever_the_lag(lag):
    # the fee (£100 a month in months 0-10) just pays the £100 overhead; with no fee in month 11 the provider
    # fails at the end of month 11, the year's last month: the year is complete and is reconciled, with any lag
    sc = _sc(LINE, **{
        "months": 12,
        "referrals": {"monthly": [6] * 12, "distribution": "fixed"},
        "contract.payments": [],
        "contract.service_fee": {"amounts": [100] * 11, "lag": 0,
                                 "volume_band": {"expected_per_year": 120, "band": 0.1, "lag": lag}},
        "provider": {"name": "p", "opening_cash": 0, "overhead_per_month": 100, "cost_per_client_month": {"full": 0, "minimal": 0}},
    })
    res = simulate(sc, seed=0, replications=1)
    assert res.failures.failure_month.tolist() == [11]
    back = res.ledger[res.ledger.kind == "clawback"]
    assert list(zip(back.month, back.amount_pence)) == [(11 + lag, round(1100 / 120 * (108 - 72) * 100))]


def _capped_band(cap: float):
    """One year, a £12,000 fee monthly in arrears against 120 expected referrals; 72 come (band down to 108)."""
    return _sc(LINE, **{
        "months": 12,
        "referrals": {"monthly": [6] * 12, "distribution": "fixed"},
        "contract.payments": [],
        "contract.cap": cap,
        "contract.service_fee": {"total": 12000, "schedule": "monthly", "lag": 1,
                                 "volume_band": {"expected_per_year": 120, "band": 0.1, "lag": 2}},
    })


def test_a_clawback_is_set_first_against_fee_the_cap_withheld():
    # the cap stops the fee after £8,000; the year-end clawback of 36 x £100 = £3,600 (month 13) is smaller
    # than the £5,000 of fee withheld by then, so the commissioner, having paid less than it owed, takes nothing back
    res = simulate(_capped_band(8000), seed=0, replications=1)
    assert res.ledger[res.ledger.kind == "clawback"].empty
    st = res.settlements[res.settlements.item == "volume_reconciliation"]
    assert list(zip(st.month, st.amount_due_pence, st.amount_paid_pence, st.amount_capped_pence)) == [(13, -360000, 0, -360000)]
    pr = res.per_replication.iloc[0]
    assert pr["paid_total"] == 8000 == min(8000, 12000 - 3600)
    assert pr["capped_total"] == pytest.approx(12000 - 8000 - 3600)  # earned net of the clawback and not paid


def test_a_clawback_larger_than_the_withheld_fee_repays_only_the_rest():
    # cap £11,000: by month 13 only the last instalment (£1,000) was withheld, so £2,600 of the £3,600 is repaid
    res = simulate(_capped_band(11000), seed=0, replications=1)
    back = res.ledger[res.ledger.kind == "clawback"]
    assert list(zip(back.month, back.amount_pence)) == [(13, 260000)]
    assert res.per_replication.iloc[0]["paid_total"] == 11000 - 2600 == min(11000, 12000 - 3600)


def test_cap_volume_band_and_fee_in_arrears_keep_the_net_spend_within_the_cap():
    # the shipped blended design with a volume band: the year-1 clawback frees room under the cap, which later
    # claims fill again, so the commissioner pays more than the cap gross but never more than it net
    d = load_raw(ROOT / "scenarios" / "blended_vcs.yaml")
    d["contract"]["cap"] = 60000
    d["contract"]["service_fee"]["volume_band"] = {"expected_per_year": 300, "band": 0.0, "lag": 1}
    res = simulate(scenario_from_dict(d, "<blended_vcs with a band>"), seed=7, replications=3)  # raised InvariantError before
    led = res.ledger
    gross = led[led.payer == "council"].groupby("replication").amount_pence.sum()
    back = led[led.kind == "clawback"].groupby("replication").amount_pence.sum().reindex(gross.index, fill_value=0)
    assert (gross - back <= 6000000).all() and (gross > 6000000).any()
    assert (res.settlements.groupby("replication").amount_paid_pence.sum() == gross - back).all()
    assert np.allclose(res.per_replication.paid_total, (gross - back) / 100)


# -- cohort payments ---------------------------------------------------------------------------------

COHORT = {
    "name": "cohorts",
    "months": 40,
    "referrals": {"monthly": [100] * 24, "distribution": "fixed"},
    "segments": {"all": {"share": 1.0}},
    "pathway": {
        "states": ["released", "reconvicted", "desisted"],
        "initial_state": "released",
        "absorbing": ["reconvicted", "desisted"],
        "transitions": {"all": {
            "full": {"released": {"reconvicted": 0.06, "released": 0.94}},
            "minimal": {"released": {"reconvicted": 0.06, "released": 0.94}},
        }},
    },
    "contract": {"cohort_payments": [{
        "name": "reduction", "event_state": "reconvicted", "window_months": 12, "baseline_rate": 0.6,
        "cohorts": [{"start": 0, "end": 12}, {"start": 12, "end": 24}], "threshold": 0.1, "threshold_all": 0.075,
        "price_per_event_avoided": 1000, "lag": 3,
    }]},
    "provider": {"name": "p", "opening_cash": 0, "cost_per_client_month": {"full": 0, "minimal": 0}},
}


def _cohort_expectation(res, rep, baseline=0.6, price=1000):
    """What the rule says each cohort earns, from the clients table of one replication."""
    cl = res.clients[res.clients.replication == rep]
    ev = cl.first_reconvicted.notna() & (cl.first_reconvicted <= cl.referral_month + 11)
    out = []
    for lo, hi in ((0, 12), (12, 24)):
        sel = (cl.referral_month >= lo) & (cl.referral_month < hi)
        out.append((int(sel.sum()), int(ev[sel].sum())))
    return out


@pytest.mark.parametrize("p_month", [0.06, 0.058, 0.065, 0.072, 0.1])
def test_cohort_payments_follow_the_thresholds(p_month):
    sc = _sc(COHORT, **{"pathway.transitions.all.full.released": {"reconvicted": p_month, "released": 1 - p_month}})
    res = simulate(sc, seed=5, replications=4)
    for rep in range(4):
        (n1, e1), (n2, e2) = _cohort_expectation(res, rep)
        due1 = round(1000 * (0.6 * n1 - e1) * 100) if 1 - e1 / n1 / 0.6 >= 0.1 else 0
        due2 = round(1000 * (0.6 * n2 - e2) * 100) if 1 - e2 / n2 / 0.6 >= 0.1 else 0
        if 1 - (e1 + e2) / (n1 + n2) / 0.6 >= 0.075:
            due2 = max(due2, round(1000 * (0.6 * (n1 + n2) - e1 - e2) * 100) - due1)
        led = res.ledger[(res.ledger.replication == rep) & (res.ledger.item == "reduction")]
        got = dict(zip(led.month, led.amount_pence))
        want = {m: a for m, a in ((11 + 12 + 3, due1), (23 + 12 + 3, due2)) if a > 0}
        assert got == want, (rep, (n1, e1), (n2, e2))


def test_cohort_payment_rises_with_the_reduction_and_is_zero_below_the_thresholds():
    totals = []
    for p in (0.074, 0.07, 0.06, 0.05):  # 12-month event rates about 0.60, 0.58, 0.52, 0.46
        sc = _sc(COHORT, **{"pathway.transitions.all.full.released": {"reconvicted": p, "released": 1 - p}})
        totals.append(simulate(sc, seed=2, replications=10).per_replication["paid[outcome]"].mean())
    assert totals[0] == 0
    assert totals == sorted(totals) and totals[-1] > totals[-2] > 0
    assert "cohort_payments" in " ".join(check_exact(compile_model(_sc(COHORT))))


def test_cohorts_must_be_ordered_and_inside_the_contract():
    with pytest.raises(ScenarioError) as e:
        _sc(COHORT, **{"contract.cohort_payments.0.cohorts": [{"start": 10, "end": 20}, {"start": 5, "end": 50}]})
    paths = [p for p, _ in e.value.problems]
    assert "contract.cohort_payments[0].cohorts[1].start" in paths and "contract.cohort_payments[0].cohorts[1].end" in paths
    # a window running past the contract end would be measured on months in which nobody moves
    with pytest.raises(ScenarioError) as e:
        _sc(COHORT, **{"contract.cohort_payments.0.cohorts": [{"start": 0, "end": 30}]})
    assert [p for p, r in e.value.problems] == ["contract.cohort_payments[0].cohorts[0].end"]
    assert "at most 29" in e.value.problems[0][1]
    _sc(COHORT, **{"contract.cohort_payments.0.cohorts": [{"start": 0, "end": 29}]})


# -- investor finance --------------------------------------------------------------------------------

def _financed(**fin):
    d = make()
    d["contract"]["service_fee"] = None
    d["provider"]["opening_cash"] = 0
    d["provider"]["credit"] = {"limit": 0, "monthly_interest": 0.0}
    d["finance"] = {"investor": "investors", "commitment": 30000, **fin}
    return scenario_from_dict(d, "<test>")


def test_upfront_investment_arrives_at_month_0_and_is_repaid_only_from_income():
    res = simulate(_financed(drawdown="upfront", annual_return=0.0, repayment_share=0.5), seed=1, replications=10)
    led = res.ledger
    inv = led[led.kind == "investment"]
    assert (inv.month == 0).all() and (inv.amount_pence == 3_000_000).all() and len(inv) == 10
    rep = led[led.kind == "repayment"]
    income = led[(led.payee == "charity") & (led.payer == "commissioner")]
    for r in range(10):
        # cumulative repayments never exceed half of the income received so far, nor the capital
        paid_in = income[income.replication == r].groupby("month").amount_pence.sum().cumsum()
        out = rep[rep.replication == r].groupby("month").amount_pence.sum().cumsum()
        for m, v in out.items():
            assert v <= 0.5 * paid_in[paid_in.index <= m].iloc[-1] + 1
        assert out.iloc[-1] <= 3_000_000 if len(out) else True
    pr = res.per_replication
    assert (pr.investor_drawn == 30000).all()
    assert np.allclose(pr.investor_multiple, pr.investor_repaid / pr.investor_drawn)
    assert res.summary["investor"]["drawn"]["mean"] == 30000


def test_as_needed_drawdown_keeps_cash_at_the_floor_until_the_commitment_runs_out():
    res = simulate(_financed(drawdown="as_needed", cash_floor=1000, annual_return=0.08), seed=4, replications=6)
    m = res.monthly
    inv = res.ledger[res.ledger.kind == "investment"]
    drawn_by = inv.groupby(["replication", "month"]).amount_pence.sum().groupby(level=0).cumsum()
    for (r, t), drawn in drawn_by.items():
        if drawn < 3_000_000 and t < 18:
            cash = m[(m.replication == r) & (m.month == t)].cash_pence.iloc[0]
            assert cash >= 100_000  # topped up to the £1,000 floor
    assert (res.per_replication.investor_drawn <= 30000).all()
    # with an 8% return due, an investor fully repaid gets back more than it put in
    full = res.per_replication.investor_loss == 0
    assert (res.per_replication.investor_multiple[full & (res.per_replication.investor_drawn > 0)] > 1).all()


def test_finance_names_a_known_organisation_and_refuses_exact_mode():
    d = make()
    d["finance"] = {"investor": "charity", "organisation": "nobody", "commitment": 1}
    with pytest.raises(ScenarioError) as e:
        scenario_from_dict(d, "x.yaml")
    assert {p for p, _ in e.value.problems} >= {"finance.investor", "finance.organisation"}
    with pytest.raises(ExactNotApplicable, match="finance"):
        expected(_financed())


# -- first entry into any of several states ----------------------------------------------------------

def _skip_line():
    """LINE where half the clients jump straight from referred to job (skipping engaged)."""
    return {"pathway.transitions.only.full.referred": {"engaged": 0.5, "job": 0.5},
            "referrals": {"monthly": [40], "distribution": "fixed"}}


def test_a_first_entry_line_over_several_states_pays_once_whichever_is_reached_first():
    sc = _sc(LINE, **_skip_line(), **{"contract.payments": [
        {"name": "progress", "kind": "milestone", "states": ["engaged", "job"], "tariff": 50, "lag": 0},
        {"name": "engage_only", "kind": "milestone", "state": "engaged", "tariff": 1, "lag": 0},
    ]})
    res = simulate(sc, seed=3, replications=1)
    cl = res.clients
    skipped = int(cl.first_engaged.isna().sum())
    assert 0 < skipped < 40  # some clients skipped the engaged state ...
    led = res.ledger[res.ledger.item == "progress"]
    assert int(led.amount_pence.sum()) == 40 * 5000  # ... and every client is paid exactly once
    assert set(led.kind) == {"milestone"} and set(led.month) == {0}
    assert int(res.ledger[res.ledger.item == "engage_only"].amount_pence.sum()) == (40 - skipped) * 100


def test_a_set_holding_the_initial_state_pays_at_referral():
    sc = _sc(LINE, **{"contract.payments": [
        {"name": "start", "kind": "attachment", "states": ["referred", "engaged"], "tariff": 10, "lag": 0}]})
    res = simulate(sc, seed=0, replications=1)
    assert _paid(res, "start") == [(0, 1000)]


def test_exact_mode_agrees_with_the_engine_for_first_entry_into_any_of_several_states():
    d = make()
    d["contract"]["payments"][1] = {"name": "job_or_better", "kind": "milestone", "states": ["job", "sustained"],
                                    "tariff": {"easy": 200, "hard": 400}, "lag": 2, "rejection": 0.1}
    _compare(scenario_from_dict(d, "<test>"), reps=200)


def test_first_entry_lines_take_state_or_states_but_not_both_nor_max_months():
    d = make()
    d["contract"]["payments"][0]["states"] = ["engaged"]
    d["contract"]["payments"][1]["max_months"] = 2
    with pytest.raises(ScenarioError) as e:
        scenario_from_dict(d, "x.yaml")
    paths = [p for p, _ in e.value.problems]
    assert "contract.payments[0].state" in paths and "contract.payments[1].max_months" in paths
