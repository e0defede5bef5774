"""Engine behaviour: payment timing, each payment type, caps, rejection, capacity, insolvency, invariants."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from pbrsim.engine.run import InvariantError, _Run, compile_model
from pbrsim.simulate import simulate

from .conftest import override, scenario
from pbrsim.scenario.schema import scenario_from_dict

# A deterministic pathway: one client referred in month 0 walks referred -> engaged -> job and stays in a
# job until forced exit after 5 transitions.
LINE = {
    "name": "line",
    "months": 8,
    "referrals": {"monthly": [1], "distribution": "fixed"},
    "segments": {"only": {"share": 1.0}},
    "pathway": {
        "states": ["referred", "engaged", "job", "exited"],
        "initial_state": "referred",
        "absorbing": ["exited"],
        "exit_state": "exited",
        "max_months_on_programme": 5,
        "transitions": {"only": {
            "full": {"referred": {"engaged": 1.0}, "engaged": {"job": 1.0}, "job": {"job": 1.0}},
            "minimal": {"referred": {"referred": 1.0}, "engaged": {"engaged": 1.0}, "job": {"job": 1.0}},
        }},
    },
    "contract": {
        "payments": [
            {"name": "attach", "kind": "attachment", "state": "referred", "tariff": 10, "lag": 0},
            {"name": "engage", "kind": "milestone", "state": "engaged", "tariff": 20, "lag": 1},
            {"name": "job_start", "kind": "outcome", "state": "job", "tariff": 300, "lag": 2},
            {"name": "in_work", "kind": "sustainment", "states": ["job"], "max_months": 3, "tariff": 7, "lag": 1},
        ],
        "service_fee": {"amounts": [100, 0, 0, 50], "lag": 1},
    },
    "provider": {"name": "p", "opening_cash": 1000, "overhead_per_month": 1, "cost_per_client_month": {"full": 5, "minimal": 2}},
}


def _line(**changes):
    return scenario_from_dict(override(LINE, **changes), "<line>")


def test_each_payment_type_arrives_in_the_month_the_rules_say():
    res = simulate(_line(), seed=0, replications=1)
    comm = res.ledger[res.ledger.payer == "commissioner"]
    got = sorted((int(r.month), str(r.item), int(r.amount_pence)) for r in comm.itertuples())
    assert got == sorted([
        (0, "attach", 1000),        # referral in month 0, lag 0
        (1, "engage", 2000),        # engaged during month 0, lag 1
        (1, "service_fee", 10000),  # due month 0, paid in arrears (lag 1)
        (3, "job_start", 30000),    # job during month 1, lag 2
        (2, "in_work", 700),        # month 1 ends in a job: sustainment 1, lag 1
        (3, "in_work", 700),        # month 2
        (4, "in_work", 700),        # month 3: the third and last (max_months 3); month 4 ends in exit
        (4, "service_fee", 5000),   # due month 3
    ])
    c = res.clients.iloc[0]
    assert c.first_engaged == 0 and c.first_job == 1 and c.first_exited == 4  # forced exit at the 5th transition
    assert c.final_state == "exited" and c.end_month == 4


def test_provider_costs_and_cash_follow_the_ledger():
    res = simulate(_line(), seed=0, replications=1)
    m = res.monthly.set_index("month")
    # one client in service months 0..4 at full cost (5.00), overhead 1.00 in months 0..7
    assert list(m.cost_delivery_pence[:8]) == [500, 500, 500, 500, 500, 0, 0, 0]
    assert list(m.cost_overhead_pence[:8]) == [100] * 8
    income = m[[c for c in m.columns if c.startswith("income_")]].sum(axis=1)
    costs = m[["cost_delivery_pence", "cost_overhead_pence", "cost_interest_pence"]].sum(axis=1)
    assert (m.cash_pence == 100000 + (income - costs).cumsum()).all()


def test_the_months_of_service_count_every_month_in_service():
    res = simulate(_line(), seed=0, replications=1)
    c = res.clients.iloc[0]
    assert c.months_full + c.months_minimal == 5  # referred month 0, active through month 4


def test_same_seed_same_results_and_different_seed_different_results():
    sc = scenario()
    a = simulate(sc, seed=3, replications=5)
    b = simulate(sc, seed=3, replications=5)
    c = simulate(sc, seed=4, replications=5)
    for name, df in a.tables().items():
        pd.testing.assert_frame_equal(df, b.tables()[name], check_exact=True)
    assert not a.clients.equals(c.clients)


def test_changing_a_price_does_not_change_which_clients_arrive_or_how_they_move():
    a = simulate(scenario(), seed=5, replications=3)
    b = simulate(scenario(**{"contract.payments.3.tariff": 5000, "contract.payments.1.rejection": 0.5}), seed=5, replications=3)
    pd.testing.assert_frame_equal(a.clients, b.clients)
    assert a.ledger.amount_pence.sum() != b.ledger.amount_pence.sum()


def test_rejected_claims_are_never_paid_and_rates_match_the_probability():
    res = simulate(scenario(**{"contract.payments.1.rejection": 0.3}), seed=1, replications=100)
    cl = res.claims[res.claims.item == "job_start"]
    n, k = cl.claims.sum(), cl.rejected.sum()
    se = np.sqrt(0.3 * 0.7 / n)
    assert abs(k / n - 0.3) < 4 * se
    paid = res.ledger[res.ledger["item"] == "job_start"].amount_pence.sum()
    assert paid == (cl.amount_claimed_pence - cl.amount_rejected_pence).sum()
    none = simulate(scenario(**{"contract.payments.1.rejection": 1.0}), seed=1, replications=3)
    assert none.ledger[none.ledger["item"] == "job_start"].empty


def test_claims_settle_exactly_lag_months_later():
    res = simulate(scenario(), seed=2, replications=5)
    for rule in res.model.contract.rules:
        cl = res.claims[res.claims["item"] == rule.name]
        accepted = (cl.amount_claimed_pence - cl.amount_rejected_pence).groupby([cl.replication, cl.month + rule.lag]).sum()
        st = res.settlements[res.settlements["item"] == rule.name]
        due = st.groupby([st.replication, st.month]).amount_due_pence.sum()
        pd.testing.assert_series_equal(accepted[accepted > 0], due, check_names=False, check_index_type=False)


def test_cap_stops_payments_and_reports_the_rest_as_capped():
    res = simulate(scenario(**{"contract.cap": 30000}), seed=1, replications=20)
    comm = res.ledger[res.ledger.payer == "commissioner"]
    per_rep = comm.groupby("replication").amount_pence.sum()
    assert (per_rep <= 3000000).all()
    st = res.settlements
    assert (st.amount_paid_pence + st.amount_capped_pence == st.amount_due_pence).all()
    capped_reps = st[st.amount_capped_pence > 0].replication.unique()
    assert len(capped_reps) > 0
    assert (per_rep.loc[capped_reps] == 3000000).all()  # capped runs pay exactly the cap
    # once a run hits the cap, nothing after that settlement is paid
    for r in capped_reps:
        s = st[st.replication == r].reset_index(drop=True)
        first = s.index[s.amount_capped_pence > 0][0]
        assert (s.amount_paid_pence[first + 1:] == 0).all()
    assert res.summary["commissioner"]["cap_reached"]["mean"] == len(capped_reps) / 20


def test_service_fee_schedules_add_up_to_the_fee():
    for sched, months in (("monthly", list(range(18))), ("quarterly", [0, 3, 6, 9, 12, 15]), ("upfront", [0]), ([2, 5], [2, 5])):
        res = simulate(scenario(**{"contract.service_fee": {"total": 1000.01, "schedule": sched, "lag": 2}}), seed=0, replications=1)
        fee = res.ledger[res.ledger.kind == "service_fee"]
        assert fee.amount_pence.sum() == 100001
        assert sorted(fee.month.unique()) == [m + 2 for m in months]


def test_capacity_gives_full_service_first_come_first_served():
    res = simulate(scenario(**{"provider.capacity": 8, "referrals.rate": 30}), seed=1, replications=3)
    assert res.monthly.n_full.max() == 8
    assert (res.monthly.n_full <= 8).all()
    # in month 0 everyone is new; later months full service goes to earlier referrals first
    cl = res.clients[res.clients.replication == 0]
    early = cl[cl.referral_month == 0]
    late = cl[cl.referral_month >= 5]
    assert early.months_full.mean() > late.months_full.mean()


def test_insolvency_stops_referrals_drops_clients_and_ends_the_service_fee():
    sc = scenario(**{
        "provider.opening_cash": 1000,
        "provider.credit": {"limit": 2000, "monthly_interest": 0.02},
        "contract.service_fee": None,
    })
    res = simulate(sc, seed=1, replications=10)
    assert len(res.failures) == 10
    for f in res.failures.itertuples():
        m = res.monthly[res.monthly.replication == f.replication].set_index("month")
        assert m.cash_pence[f.failure_month] < -200000
        assert (m.cash_pence[: f.failure_month] >= -200000).all()
        assert m.referrals[f.failure_month + 1:].sum() == 0
        assert (m.cost_delivery_pence[f.failure_month + 1:] == 0).all() and (m.cost_overhead_pence[f.failure_month + 1:] == 0).all()
        cl = res.clients[res.clients.replication == f.replication]
        dropped = cl[cl.final_state == "dropped_provider_failure"]
        assert len(dropped) == f.clients_affected > 0
        assert (dropped.end_month == f.failure_month).all()
        assert (cl.referral_month <= f.failure_month).all()
    assert res.summary["organisations"][0]["ran_out_of_cash"]["mean"] == 1.0
    # interest is charged on the overdrawn balance at each month end
    m = res.monthly[res.monthly.replication == 0].reset_index(drop=True)
    for t in range(1, len(m)):
        before = m.cash_pence[t - 1] + m.loc[t, [c for c in m.columns if c.startswith("income_")]].sum() - m.cost_delivery_pence[t] - m.cost_overhead_pence[t]
        expected = round(-before * 0.02) if before < 0 else 0
        assert m.cost_interest_pence[t] == expected


def test_fee_stops_after_failure():
    sc = scenario(**{"provider.opening_cash": 0, "provider.credit": {"limit": 100, "monthly_interest": 0},
                     "contract.service_fee": {"total": 1800, "schedule": "monthly", "lag": 0}})
    res = simulate(sc, seed=1, replications=3)
    for f in res.failures.itertuples():
        fee = res.ledger[(res.ledger.replication == f.replication) & (res.ledger.kind == "service_fee")]
        assert fee.month.max() == f.failure_month


def test_invariant_check_catches_a_ledger_that_does_not_match_the_cash():
    run = _Run(compile_model(scenario()), seed=0, replication=0)
    run.run()
    run.ledger.amounts[0] = run.ledger.amounts[0] + 1  # a penny appears from nowhere
    with pytest.raises(InvariantError, match="cash of charity from the ledger"):
        run._check_invariants()


def test_invariant_check_catches_a_lost_client():
    run = _Run(compile_model(scenario()), seed=0, replication=0)
    run.run()
    run.cl.end_month[0] = -1 if run.cl.end_month[0] >= 0 else 3
    with pytest.raises(InvariantError, match="end months"):
        run._check_invariants()


PENCE = r"-?£[\d,]+\.\d\d"


@pytest.mark.parametrize("tamper, what", [
    (lambda run: setattr(run, "clawed", run.clawed + 123), "clawbacks"),
    (lambda run: setattr(run, "scheduled_transfers", run.scheduled_transfers + 1), "payments down the chain"),
    (lambda run: run.settlements.add(np.array([0]), month=0, item=0, segment=0, organisation=0, amount_due=5, amount_paid=0,
                                     amount_capped=5), "claims are not all settled"),
    (lambda run: run.ledger.balance.__setitem__((0, 0), run.ledger.balance[0, 0] - 7), "balance of commissioner"),
])
def test_every_money_invariant_shows_both_sides_to_the_penny_and_the_difference(tamper, what):
    run = _Run(compile_model(scenario()), seed=0, replication=0)
    run.run()
    tamper(run)
    with pytest.raises(InvariantError) as err:
        run._check_invariants()
    msg = str(err.value)
    assert msg.startswith(f"replication 0: {what}")
    sides = re.fullmatch(rf".*: [a-z ]+ ({PENCE}), [a-z ]+ ({PENCE}) \(difference ({PENCE})\)", msg)
    assert sides, msg
    a, b, diff = (int(s.replace("£", "").replace(",", "").replace(".", "")) for s in sides.groups())
    assert a - b == diff != 0
