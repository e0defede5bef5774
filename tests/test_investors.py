"""Social investment: the IRR against closed forms and high-precision roots, and the investor terms in the
engine (waterfall, return caps, capital protection, first loss, fees, top-up, recycling), the Peterborough
archetype's return distribution, and the finance section's validation."""

from __future__ import annotations

from decimal import Decimal, getcontext

import numpy as np
import pytest

from pbrsim.analysis import returns
from pbrsim.engine.ledger import KINDS
from pbrsim.engine.run import InvariantError, _Run, compile_model, run_batch
from pbrsim.scenario.schema import ScenarioError, load_raw, load_scenario, scenario_from_dict
from pbrsim.simulate import simulate
from pbrsim.analysis.compare import metric_list
from pbrsim.stress.run import run_stress_test, unlimited

from .conftest import make

TOL = 1e-6


# -- IRR of hand-built cash flows --------------------------------------------------------------------

def _precise_monthly_root(flows, lo: str, hi: str) -> Decimal:
    """The monthly rate in [lo, hi] zeroing the flows' NPV, by 200 bisections in 60-digit decimals."""
    getcontext().prec = 60
    f = [Decimal(str(x)) for x in flows]

    def npv(r: Decimal) -> Decimal:
        v = Decimal(1) / (1 + r)
        return sum(c * v ** t for t, c in enumerate(f))

    a, b = Decimal(lo), Decimal(hi)
    fa = npv(a)
    for _ in range(200):
        m = (a + b) / 2
        fm = npv(m)
        if (fm > 0) == (fa > 0):
            a, fa = m, fm
        else:
            b = m
    return (a + b) / 2


def _annual(monthly: Decimal) -> float:
    return float((1 + monthly) ** 12 - 1)


def test_irr_equals_closed_forms():
    one_year = np.zeros(37)
    one_year[[0, 12]] = [-100, 110]  # 10% over 12 months
    two_years = np.zeros(37)
    two_years[[0, 24]] = [-100, 50]  # half back after two years: sqrt(0.5) - 1 a year
    annuity = np.r_[-100, np.full(36, 100 * 0.01 / (1 - 1.01 ** -36))]  # 1% a month exactly
    rate, status = returns.irr(np.stack([one_year, two_years, annuity]))
    assert (status == returns.OK).all()
    assert abs(rate[0] - 0.10) < TOL and abs(rate[1] - (0.5 ** 0.5 - 1)) < TOL and abs(rate[2] - (1.01 ** 12 - 1)) < TOL


def test_irr_of_irregular_flows_matches_a_high_precision_root():
    # drawdowns, a repayment, another drawdown, then repayments: several sign changes, one root
    flows = [-40000, -25000.5, 3000, -12000, 0, 0, 9000, 15000, 0, 21000.25, 30000, 16000]
    r, s = returns.irr(flows)
    assert s[0] == returns.OK
    assert abs(r[0] - _annual(_precise_monthly_root(flows, "-0.5", "0.5"))) < TOL
    # a loss: an IRR below 0
    losing = [-1000, 0, 200, 0, 300, 0, 0, 250]
    r, _ = returns.irr(losing)
    assert r[0] < 0 and abs(r[0] - _annual(_precise_monthly_root(losing, "-0.5", "0.5"))) < TOL


def test_total_loss_and_no_sign_change_are_reported_as_such():
    r, s = returns.irr(np.array([[-100.0, -50, 0, 0], [0, 0, 0, 0], [10, 20, 0, 5], [0, -3, 0, 0]]))
    assert list(s) == [returns.TOTAL_LOSS, returns.NO_SIGN_CHANGE, returns.NO_SIGN_CHANGE, returns.TOTAL_LOSS]
    assert r[0] == -1.0 and r[3] == -1.0  # the closed form's limit: nothing back is -100% a year
    assert np.isnan(r[1]) and np.isnan(r[2])  # no rate exists: not a number


def test_several_roots_report_the_one_nearest_zero():
    # NPV = -1 + 2.3 v - 1.32 v^2 is zero at 10% and at 20% a month; the documented choice is the root nearest 0%
    for flows in ([-1, 2.3, -1.32], [1, -2.3, 1.32]):
        r, s = returns.irr(flows)
        assert s[0] == returns.SEVERAL_ROOTS
        assert abs(r[0] - (1.1 ** 12 - 1)) < TOL


def test_irr_of_a_batch_equals_each_row_alone():
    rng = np.random.default_rng(5)
    F = np.round(rng.normal(0, 100, size=(40, 30)), 2)
    F[:, 0] = -500
    rate, status = returns.irr(F)
    for i in range(0, 40, 7):
        r, s = returns.irr(F[i])
        assert s[0] == status[i] and (np.isnan(r[0]) and np.isnan(rate[i]) or abs(r[0] - rate[i]) < 1e-12)


def test_payback_month_and_multiple():
    f = np.array([[-100, 0, 60, 50, -20, 30, 0], [-100, 0, 50, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0]], dtype=float)
    assert list(returns.payback_month(f)[:1]) == [5.0]  # out of pocket again in month 4, even from month 5
    assert np.isnan(returns.payback_month(f)[1:]).all()
    m = returns.money_multiple(f)
    assert m[0] == pytest.approx(140 / 120) and m[1] == 0.5 and np.isnan(m[2])


# -- terms in the engine ------------------------------------------------------------------------------

def _financed(finance: dict, tariff_scale: float = 1.0, **changes):
    return scenario_from_dict(_financed_raw(finance, tariff_scale, **changes), "<test>")


def _financed_raw(finance: dict, tariff_scale: float = 1.0, **changes) -> dict:
    d = make(**changes)
    d["contract"]["service_fee"] = None
    for p in d["contract"]["payments"]:
        t = p["tariff"]
        p["tariff"] = {k: v * tariff_scale for k, v in t.items()} if isinstance(t, dict) else t * tariff_scale
    d["provider"]["opening_cash"] = 0
    d["provider"]["credit"] = {"limit": 0, "monthly_interest": 0.0}
    d["finance"] = finance
    return d


def _flows_of(res, party: str) -> dict:
    led = res.ledger
    into = led[led.payee == party].groupby("replication").amount_pence.sum()
    out = led[led.payer == party].groupby("replication").amount_pence.sum()
    return into, out


def test_annual_cap_bounds_every_runs_irr_and_the_multiple_cap_bounds_what_comes_back():
    sc = _financed({"investor": "fund", "commitment": 40000, "drawdown": "upfront", "annual_return": None,
                    "return_cap": {"annual": 0.13, "multiple": 1.25}}, tariff_scale=3.0)
    res = simulate(sc, seed=3, replications=40)
    pr = res.per_replication
    assert (pr.investor_drawn > 0).all()
    assert pr.investor_irr.max() <= 0.13 + 1e-9
    assert (pr.investor_repaid <= 1.25 * pr.investor_drawn + 0.01).all()
    # the caps bind: without them some runs earn more
    free = simulate(_financed({"investor": "fund", "commitment": 40000, "drawdown": "upfront", "annual_return": None},
                              tariff_scale=3.0), seed=3, replications=40).per_replication
    assert free.investor_irr.max() > 0.13 and (free.investor_repaid > 1.25 * free.investor_drawn).any()


def _tranched(protection: float, first_loss: float = 0.0, tariff_scale: float = 0.5, **extra):
    fin = {"tranches": [{"investor": "senior", "commitment": 24000, "annual_return": 0.05, "protection": protection},
                        {"investor": "junior", "commitment": 16000, "annual_return": 0.12}],
           "drawdown": "upfront", "guarantee": {"guarantor": "foundation", "first_loss": first_loss}, **extra}
    if not protection and not first_loss:
        del fin["guarantee"]
    return _financed(fin, tariff_scale=tariff_scale)


def test_a_60_percent_protected_tranche_never_loses_more_than_40_percent():
    res = simulate(_tranched(0.6, tariff_scale=0.25), seed=2, replications=40)
    pr = res.per_replication
    drawn, repaid = pr["investor_drawn[senior]"], pr["investor_repaid[senior]"]
    assert (drawn == 24000).all()
    assert (drawn - repaid <= 0.4 * drawn + 1e-9).all()
    # the protection is what holds it: unprotected, the same runs lose more than 40%
    bare = simulate(_tranched(0.0, tariff_scale=0.25), seed=2, replications=40).per_replication
    assert ((bare["investor_drawn[senior]"] - bare["investor_repaid[senior]"]) > 0.4 * 24000).any()
    assert pr.investor_guaranteed.max() > 0


def test_waterfall_pays_the_senior_tranche_first_and_draws_pro_rata():
    res = simulate(_tranched(0.0, tariff_scale=0.4), seed=2, replications=40)
    pr = res.per_replication
    assert (pr["investor_drawn[junior]"] == 16000).all() and (pr["investor_drawn[senior]"] == 24000).all()
    junior_paid = pr["investor_repaid[junior]"] > 0
    assert junior_paid.any() and (~junior_paid).any()
    # whenever the junior tranche received anything, the senior one had all its capital back with its return
    assert (pr["investor_repaid[senior]"][junior_paid] > 24000).all()
    assert (pr["investor_repaid[senior]"][~junior_paid] < 24000 * 1.05).all()
    led = res.ledger
    coupons = led[(led["item"] == "coupon")]
    assert set(coupons.payee.astype(str)) <= {"senior", "junior"} and len(coupons)


def test_first_loss_covers_the_first_losses_senior_first():
    res = simulate(_tranched(0.0, first_loss=5000), seed=2, replications=30)
    pr = res.per_replication
    led = res.ledger
    fl = led[led["item"] == "first_loss"].groupby("replication").amount_pence.sum().reindex(pr.index, fill_value=0) / 100
    bare = simulate(_tranched(0.0), seed=2, replications=30).per_replication
    # each tranche's capital not repaid (a junior loss is not netted against a senior coupon)
    loss_before = sum((bare[f"investor_drawn[{t}]"] - bare[f"investor_repaid[{t}]"]).clip(lower=0) for t in ("senior", "junior"))
    assert np.allclose(fl, np.minimum(loss_before, 5000)) and (loss_before > 5000).any() and (loss_before < 5000).any()
    senior_loss = (bare["investor_drawn[senior]"] - bare["investor_repaid[senior]"]).clip(lower=0)
    got_senior = led[(led["item"] == "first_loss") & (led.payee == "senior")].groupby("replication").amount_pence.sum()
    assert np.allclose(got_senior.reindex(pr.index, fill_value=0) / 100, np.minimum(senior_loss, 5000))


def test_management_fee_and_top_up_and_recycling():
    sc = _financed({"investor": "fund", "commitment": 40000, "drawdown": "as_needed", "annual_return": 0.05, "recycle": True,
                    "intermediary": {"name": "spv", "management_fee": 1200},
                    "top_up": {"funder": "lcf", "share": 0.2, "kinds": ["outcome"]}}, tariff_scale=2.0)
    res = simulate(sc, seed=6, replications=12)
    pr, led = res.per_replication, res.ledger
    # the fee: £100 a contract month out of the commitment, counted as drawn
    assert np.allclose(pr.intermediary_fees, 100 * 18)
    fees = led[led.payee == "spv"]
    assert (fees.payer == "fund").all() and (fees.month < 18).all()
    # the top-up funder pays 20% of each outcome payment, rounded down, to the commissioner
    paid = led[(led.payer == "commissioner") & (led.kind == "outcome")]
    due = np.floor(paid.amount_pence * 0.2).groupby(paid.replication).sum()
    assert np.allclose(pr.topped_up, due.reindex(pr.index, fill_value=0) / 100)
    assert (led[led.payer == "lcf"].payee == "commissioner").all()
    # recycling: nothing is repaid before the contract ends
    rep = led[led.kind == "repayment"]
    assert len(rep) and (rep.month >= 18).all()


def test_investor_money_does_not_depend_on_the_batch():
    sc = _financed({"tranches": [{"investor": "senior", "commitment": 24000, "annual_return": 0.05, "protection": 0.6},
                                 {"investor": "junior", "commitment": 16000, "annual_return": None}],
                    "return_cap": {"annual": 0.2, "multiple": 1.5}, "drawdown": "as_needed", "cash_floor": 500,
                    "intermediary": {"name": "spv", "management_fee": 600}, "guarantee": {"guarantor": "trust", "first_loss": 2000},
                    "top_up": {"funder": "lcf", "share": 0.3}}, tariff_scale=0.25)
    model = compile_model(sc)
    together = run_batch(model, 5, range(6))
    for b in range(6):
        alone = run_batch(model, 5, [b]).replication(0).ledger.arrays()
        both = together.replication(b).ledger.arrays()
        assert all(np.array_equal(alone[k], both[k]) for k in alone)
    kinds = set(np.asarray(together.ledger["kind"]).tolist())
    assert {KINDS.index(k) for k in ("investment", "repayment", "fee", "guarantee", "top_up")} <= kinds


def test_invariants_catch_books_that_disagree_with_the_ledger():
    model = compile_model(_tranched(0.6))
    run = _Run(model, 1, replications=[0, 1])
    run.run()
    run.investors.received[1, 0] += 1
    with pytest.raises(InvariantError, match="replication 1: senior"):
        run._check_invariants()


def test_peterborough_investor_irr_distribution():
    sc = load_scenario("scenarios/library/peterborough.yaml")
    fin = sc.finance
    assert fin.return_cap.annual == 0.13
    raw = load_raw("scenarios/library/peterborough.yaml")
    raw.pop("value", None)  # the public value section does not touch the investors; leaving it out halves the time
    pr = simulate(scenario_from_dict(raw, "peterborough.yaml"), seed=1, replications=400).per_replication
    irr = pr.investor_irr
    assert 0.02 <= irr.median() <= 0.045  # capital back plus just over 3% a year
    assert irr.max() <= 0.13 + 1e-9  # the 13% cap
    assert 0.1 < pr.investor_lost.mean() < 0.6  # investors carried real risk


def test_stress_and_compare_report_the_runs_investor_figures():
    raw = _financed_raw({"investor": "fund", "commitment": 40000, "drawdown": "upfront", "annual_return": 0.08}, tariff_scale=0.5)
    result = run_stress_test(raw, "charity", replications=16, seed=3, executor="serial", only=["shortfall_25"])
    fig = result.figures["base"]
    # the same runs as `pbrsim run` with the overdraft unlimited: the same IRR, run by run
    pr = simulate(scenario_from_dict(unlimited(raw, "charity"), "<test>"), seed=3, replications=16).per_replication
    assert np.allclose(fig["investor_irr"].to_numpy(), pr["investor_irr"].to_numpy(), equal_nan=True)
    row = result.rows[1]
    assert row["investors"]["lost_capital"]["mean"] >= result.rows[0]["investors"]["lost_capital"]["mean"]
    assert "investors_lost_capital" in row["change"]
    names = {m.name for m in metric_list(pr.columns)}
    assert {"investor_irr", "investor_lost", "investor_multiple", "investor_below_hurdle"} <= names


# -- validation ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("finance, path", [
    ({"investor": "fund", "commitment": 1, "protection": 0.5}, "finance.guarantee"),
    ({"tranches": [{"investor": "a", "commitment": 1}, {"investor": "a", "commitment": 1}]}, "finance.tranches[1].investor"),
    ({"tranches": [{"investor": "a", "commitment": 1}], "investor": "b"}, "finance.investor"),
    ({"investor": "fund", "commitment": 1, "top_up": {"funder": "commissioner", "share": 0.2}}, "finance.top_up.funder"),
    ({"investor": "fund", "commitment": 1, "return_cap": {}}, "finance.return_cap"),
    ({"commitment": 1}, "finance.investor"),
])
def test_finance_rules(finance, path):
    d = make()
    d["finance"] = finance
    with pytest.raises(ScenarioError) as e:
        scenario_from_dict(d, "x.yaml")
    assert path in {p for p, _ in e.value.problems}
