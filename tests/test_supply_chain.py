"""Supply chains: terms between prime and subcontractors, referral allocation, failure, chain conservation."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pbrsim.scenario.schema import load_scenario, scenario_from_dict
from pbrsim.simulate import simulate

from .conftest import make, override

ROOT = Path(__file__).resolve().parents[1] / "scenarios" / "supply_chain"


def chain(**changes) -> dict:
    """BASE (tests/conftest.py) with a prime and two subcontractors on outcome pass-through."""
    d = make(**changes)
    prov = d.pop("provider")
    d["organisations"] = [
        {**copy.deepcopy(prov), "name": "prime", "role": "prime", "opening_cash": 100000},
        {**copy.deepcopy(prov), "name": "sub_a", "terms": {"pass_through": {"outcome": 1.0, "milestone": 0.5, "service_fee": 0.2},
                                                           "management_fee": 0.1, "extra_lag": 2}},
        {**copy.deepcopy(prov), "name": "sub_b", "terms": {"fee_for_service": {"per_start": 30, "per_client_month": 12.5}, "extra_lag": 1}},
    ]
    d["supply_chain"] = {"allocation": {"method": "fixed_shares", "shares": {"prime": 0.5, "sub_a": 0.3, "sub_b": 0.2}}}
    return d


def sc_from(d):
    return scenario_from_dict(d, "<chain>")


@pytest.fixture(scope="module")
def chain_run():
    return simulate(sc_from(chain()), seed=4, replications=30)


def test_pass_through_is_the_share_after_the_management_fee_paid_after_the_extra_lag(chain_run):
    res = chain_run
    st = res.settlements[res.settlements.organisation == "sub_a"]
    led = res.ledger[(res.ledger.payer == "prime") & (res.ledger.payee == "sub_a")]
    shares = {"outcome": 1.0, "milestone": 0.5, "service_fee": 0.2}
    expected = []
    for r in st.itertuples():
        share = shares.get(str(r.kind), 0.0) * 0.9
        if share and int(r.amount_paid_pence * share):
            expected.append((r.replication, r.month + 2, str(r.item), int(r.amount_paid_pence * share)))
    # the service fee is passed on from every instalment the prime receives (settled as the prime's)
    fee = res.settlements[(res.settlements.kind == "service_fee")]
    for r in fee.itertuples():
        expected.append((r.replication, r.month + 2, "service_fee", int(r.amount_paid_pence * 0.2 * 0.9)))
    got = sorted((int(r.replication), int(r.month), str(r.item), int(r.amount_pence)) for r in led.itertuples())
    assert got == sorted(expected)
    assert not led.kind.isin(["attachment", "sustainment"]).any()  # kinds not passed through


def test_fee_for_service_is_paid_per_start_and_per_client_month_whatever_the_outcomes(chain_run):
    res = chain_run
    m = res.monthly[res.monthly.organisation == "sub_b"].set_index(["replication", "month"])
    led = res.ledger[(res.ledger.payee == "sub_b")]
    assert set(led.kind.unique()) == {"fee_for_service"}
    got = led.groupby(["replication", "month"]).amount_pence.sum()
    months = m.n_full + m.n_minimal
    due = (m.referrals * 3000 + months * 1250).groupby(level=0).shift(1).fillna(0).astype(int)  # extra lag 1
    due = due[due > 0]
    pd.testing.assert_series_equal(got.sort_index(), due.sort_index(), check_names=False, check_dtype=False)


def test_chain_conservation_commissioner_pays_what_the_prime_keeps_plus_what_the_subs_receive(chain_run):
    res = chain_run
    led = res.ledger
    for rep, g in led.groupby("replication"):
        paid = g[g.payer == "commissioner"].amount_pence.sum()
        to_subs = g[(g.payer == "prime") & g.payee.isin(["sub_a", "sub_b"])].amount_pence.sum()
        prime_in = g[(g.payee == "prime") & (g.payer == "commissioner")].amount_pence.sum()
        assert prime_in == paid
        kept = prime_in - g[(g.payer == "prime") & (g.payee == "sub_a")].amount_pence.sum() - g[(g.payer == "prime") & (g.payee == "sub_b")].amount_pence.sum()
        assert kept + to_subs == paid
    pr = res.per_replication
    assert np.allclose(pr.prime_kept + pr.paid_to_subcontractors, pr.paid_total)


def test_fixed_shares_allocate_referrals_in_proportion(chain_run):
    cl = chain_run.clients
    n = len(cl)
    for org, share in (("prime", 0.5), ("sub_a", 0.3), ("sub_b", 0.2)):
        k = (cl.referred_to == org).sum()
        assert abs(k / n - share) < 4 * np.sqrt(share * (1 - share) / n)


def test_by_segment_allocation_sends_each_segment_where_the_scenario_says():
    d = chain()
    d["supply_chain"] = {"allocation": {"method": "by_segment", "by_segment": {"easy": {"prime": 1.0}, "hard": {"sub_a": 0.5, "sub_b": 0.5}}}}
    res = simulate(sc_from(d), seed=1, replications=5)
    cl = res.clients
    assert (cl[cl.segment == "easy"].referred_to == "prime").all()
    hard = cl[cl.segment == "hard"]
    assert set(hard.referred_to.unique()) == {"sub_a", "sub_b"}


def test_guaranteed_referrals_are_met_from_the_primes_share():
    d = chain()
    d["organisations"][2]["terms"]["guaranteed_referrals"] = 8
    d["supply_chain"]["allocation"]["shares"] = {"prime": 0.9, "sub_a": 0.05, "sub_b": 0.05}
    res = simulate(sc_from(d), seed=2, replications=10)
    m = res.monthly
    sub_b = m[(m.organisation == "sub_b") & (m.month < 10)]
    prime = m[(m.organisation == "prime") & (m.month < 10)].set_index(["replication", "month"]).referrals
    b = sub_b.set_index(["replication", "month"]).referrals
    total = m[m.month < 10].groupby(["replication", "month"]).referrals.sum()
    # sub_b gets at least 8 whenever there were enough referrals that month
    assert (b[total >= 8 + 4] >= 8).all()
    # and the top-up came from the prime: without the guarantee sub_b would average 5% of ~20
    assert b.mean() > 7


def test_performance_allocation_moves_referrals_towards_better_outcome_rates():
    d = chain(**{"months": 30, "referrals.end": 30})
    d["organisations"][1]["capacity"] = 0  # sub_a can give no full service: its outcome rate is worse
    d["supply_chain"]["allocation"] = {"method": "performance", "shares": {"prime": 0.34, "sub_a": 0.33, "sub_b": 0.33}, "review_every": 3, "step": 0.5}
    res = simulate(sc_from(d), seed=3, replications=10)
    m = res.monthly[res.monthly.month < 30]
    share = m.pivot_table(index="month", columns="organisation", values="referrals", aggfunc="sum", observed=True)
    share = share.div(share.sum(axis=1), axis=0)
    assert share["sub_a"][:3].mean() > 0.25
    assert share["sub_a"][20:].mean() < share["sub_a"][:3].mean() - 0.05


def _failing_sub(action: dict) -> dict:
    d = chain()
    d["organisations"][1].update({"opening_cash": 0, "credit": {"limit": 100, "monthly_interest": 0}, "on_failure": action})
    d["organisations"][1]["terms"] = {"pass_through": {"outcome": 1.0}}
    return d


def test_failed_subcontractor_clients_transfer_after_a_gap_and_lose_progress():
    d = _failing_sub({"action": "transfer", "to": "sub_b", "gap_months": 2, "restart_state": "referred"})
    res = simulate(sc_from(d), seed=5, replications=5)
    f = res.failures
    assert (f.organisation == "sub_a").all() and len(f) == 5
    for row in f.itertuples():
        cl = res.clients[res.clients.replication == row.replication]
        moved = cl[(cl.referred_to == "sub_a") & (cl.organisation == "sub_b")]
        assert len(moved) == row.clients_affected > 0
        assert (moved.months_no_service > 0).any()
        assert row.clients_to == "transfer to sub_b"
        later = cl[cl.referral_month > row.failure_month]
        assert (later.referred_to != "sub_a").all()  # no referrals to a failed organisation
        m = res.monthly[(res.monthly.replication == row.replication) & (res.monthly.organisation == "sub_a")].set_index("month")
        assert (m.cost_delivery_pence[row.failure_month + 1:] == 0).all()
    assert res.summary["organisations"][1]["ran_out_of_cash"]["mean"] == 1.0
    assert res.summary["organisations"][0]["ran_out_of_cash"]["mean"] == 0.0


def test_failed_subcontractor_clients_can_be_dropped():
    res = simulate(sc_from(_failing_sub({"action": "drop"})), seed=5, replications=3)
    for row in res.failures.itertuples():
        cl = res.clients[res.clients.replication == row.replication]
        dropped = cl[cl.final_state == "dropped_provider_failure"]
        assert len(dropped) == row.clients_affected and (dropped.organisation == "sub_a").all()


def test_prime_failure_ends_the_contract_for_everyone():
    d = chain()
    d["organisations"][0].update({"opening_cash": 0, "credit": {"limit": 100, "monthly_interest": 0}})
    d["contract"]["service_fee"] = None
    res = simulate(sc_from(d), seed=6, replications=3)
    for row in res.failures[res.failures.organisation == "prime"].itertuples():
        cl = res.clients[res.clients.replication == row.replication]
        assert (cl.referral_month <= row.failure_month).all()
        active_then = cl[cl.final_state == "dropped_provider_failure"]
        assert len(active_then) == row.clients_affected
        m = res.monthly[res.monthly.replication == row.replication]
        assert (m[m.month > row.failure_month].cost_overhead_pence == 0).all()


# --- the shipped three-variant scenario: who carries the cash-flow risk -------------------------------

@pytest.fixture(scope="module")
def variants():
    out = {}
    for v in ("outcome_pass_through", "fee_for_service", "blended"):
        out[v] = simulate(load_scenario(ROOT / f"{v}.yaml"), seed=11, replications=80)
    return out


SUBS = ("east_charity", "west_charity", "complex_needs_specialist")


def test_outcome_pass_through_puts_the_failure_risk_on_the_subcontractors(variants):
    opt, ffs = variants["outcome_pass_through"].per_replication, variants["fee_for_service"].per_replication
    for sub in SUBS:
        assert ffs[f"failed[{sub}]"].sum() == 0
    # pooled over the three subs: 240 sub-runs each; a two-proportion z-test at far beyond 4 SE
    k_opt = sum(opt[f"failed[{s}]"].sum() for s in SUBS)
    p = k_opt / 240
    assert p > 4 * np.sqrt(p * (1 - p) / 240)


def test_subcontractor_cash_spread_is_wider_under_outcome_pass_through(variants):
    opt, ffs = variants["outcome_pass_through"].per_replication, variants["fee_for_service"].per_replication
    for sub in SUBS:
        spread = lambda pr: pr[f"lowest_cash[{sub}]"].std()  # noqa: E731
        assert spread(opt) > 2 * spread(ffs)
        assert opt[f"lowest_cash[{sub}]"].median() < ffs[f"lowest_cash[{sub}]"].median()


def test_fee_for_service_moves_the_cash_flow_risk_to_the_prime(variants):
    opt, ffs = variants["outcome_pass_through"].per_replication, variants["fee_for_service"].per_replication
    low = "lowest_cash[prime_plc]"
    # paired by replication (common random numbers): the prime's trough is deeper under fee for service
    diff = ffs[low] - opt[low]
    assert diff.mean() + 4 * diff.std(ddof=1) / np.sqrt(len(diff)) < 0
    assert ffs[low].std() > opt[low].std()


def test_blended_terms_sit_between_the_two(variants):
    pr = {k: v.per_replication for k, v in variants.items()}
    for sub in ("east_charity", "west_charity"):
        col = f"lowest_cash[{sub}]"
        assert pr["outcome_pass_through"][col].median() < pr["blended"][col].median() < pr["fee_for_service"][col].median()


def test_a_restart_state_is_recorded_as_visited_so_a_later_return_is_not_a_first_entry():
    # two clients, stuck at `referred` with a subcontractor that fails at the end of month 0; the prime takes them
    # and restarts them in `job`, a state they have never been in; from there they go job -> engaged -> job ...
    from .test_engine import LINE

    d = override(LINE, **{"referrals": {"monthly": [2], "distribution": "fixed"}, "months": 4, "pathway.max_months_on_programme": 12})
    rows = {"referred": {"referred": 1.0}, "engaged": {"job": 1.0}, "job": {"engaged": 1.0}}
    d["pathway"]["transitions"]["only"] = {"full": rows, "minimal": rows}
    d["contract"]["payments"].append({"name": "job_or_exit", "kind": "outcome", "states": ["job", "exited"], "tariff": 50})
    prov = d.pop("provider")
    d["organisations"] = [
        {**copy.deepcopy(prov), "name": "prime", "role": "prime", "opening_cash": 100000},
        {**copy.deepcopy(prov), "name": "sub", "opening_cash": 0, "credit": {"limit": 0}, "terms": {"pass_through": {}},
         "on_failure": {"action": "transfer", "restart_state": "job"}},
    ]
    d["supply_chain"] = {"allocation": {"method": "fixed_shares", "shares": {"prime": 0.0, "sub": 1.0}}}
    res = simulate(sc_from(d), seed=0, replications=1)
    assert res.failures.failure_month.tolist() == [0]
    cl = res.clients
    assert (cl.first_job == 0).all() and (cl.first_engaged == 1).all() and (cl.final_state == "engaged").all()
    claimed = res.claims.groupby("item", observed=True).claims.sum()
    assert claimed["engage"] == 2  # month 1: a real first entry into `engaged`
    assert "job_start" not in claimed and "job_or_exit" not in claimed  # month 2: back in `job`, where they had been
    assert claimed["in_work"] == 2  # sustainment still pays each month ending in `job` (month 2 here)
