"""Archetype-specific checks of the landmark contracts in scenarios/library/: each runs the real engine on the
library file (or a variant of it made with field-path overrides) with a fixed seed and a few replications, and
checks a rule of that contract against the tables the run produces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pbrsim import simulate
from pbrsim.scenario.overrides import apply_overrides
from pbrsim.scenario.schema import load_raw, scenario_from_dict

LIBRARY = Path(__file__).resolve().parents[1] / "scenarios" / "library"
SEED = 20240611


def _raw(stem: str) -> dict:
    return load_raw(LIBRARY / f"{stem}.yaml")


def _run(raw: dict, replications: int, source: str = "<variant>", seed: int = SEED):
    return simulate(scenario_from_dict(raw, source), seed=seed, replications=replications)


def _pence(pounds: float) -> int:
    return int(round(pounds * 100))


# ---------------------------------------------------------------------------------------------------------------
# Fair Chance Fund: per-person cap, project cap, investor repaid only out of outcome income


@pytest.fixture(scope="module")
def fcf_raw() -> dict:
    return _raw("fcf_aspire")


@pytest.fixture(scope="module")
def fcf(fcf_raw):
    return _run(fcf_raw, replications=4, source="fcf_aspire.yaml")


def _fcf_entitlement(raw: dict, clients: pd.DataFrame) -> pd.Series:
    """Each client's total tariff, in pence, over the payment lines it triggered (before any cap)."""
    total = pd.Series(0, index=clients.index, dtype="int64")
    for line in raw["contract"]["payments"]:
        states = [line["state"]] if "state" in line else line["states"]
        reached = clients[[f"first_{s}" for s in states]].notna().any(axis=1)
        total += reached.astype("int64") * _pence(line["tariff"])
    return total


def test_fcf_no_client_is_paid_more_than_the_per_person_cap(fcf, fcf_raw):
    cap = _pence(fcf_raw["contract"]["per_person_cap"])
    clients = fcf.clients
    entitled = _fcf_entitlement(fcf_raw, clients)
    assert (entitled > cap).any(), "the cap should bind for the clients at the top of the ladder"
    # Claims are never rejected in this file, so what the engine claimed for each client is its entitlement cut
    # at the cap; per replication the claims table must add up to exactly that.
    expected = np.minimum(entitled, cap).groupby(clients.replication).sum()
    claimed = fcf.claims.groupby("replication").amount_claimed_pence.sum()
    pd.testing.assert_series_equal(claimed.sort_index(), expected.sort_index(), check_names=False, check_dtype=False)
    assert (claimed < entitled.groupby(clients.replication).sum()).all()


def test_fcf_total_paid_never_exceeds_the_project_cap(fcf, fcf_raw):
    cap = _pence(fcf_raw["contract"]["cap"])
    led = fcf.ledger
    paid = led[led.payer == "dclg"].groupby("replication").amount_pence.sum()
    assert len(paid) == fcf.replications and (paid <= cap).all()
    # With the cap lowered below what the outcomes are worth, every replication is paid exactly the cap and the
    # rest is recorded as capped.
    low = 1_000_000
    tight = _run(apply_overrides(fcf_raw, {"contract.cap": low}, "fcf-low-cap"), replications=2)
    tl = tight.ledger
    paid_low = tl[tl.payer == "dclg"].groupby("replication").amount_pence.sum()
    assert (paid_low == _pence(low)).all()
    assert (tight.settlements.groupby("replication").amount_capped_pence.sum() > 0).all()


def test_fcf_investor_is_repaid_only_out_of_outcome_income(fcf, fcf_raw):
    led = fcf.ledger
    investor = fcf_raw["finance"]["investor"]
    H = fcf.model.horizon
    for rep, g in led.groupby("replication"):
        def by_month(rows):
            return rows.groupby("month").amount_pence.sum().reindex(range(H), fill_value=0).cumsum()
        income = by_month(g[g.payer == "dclg"])
        repaid = by_month(g[g.payee == investor])
        drawn = by_month(g[g.payer == investor])
        assert (repaid <= income).all(), f"replication {rep}: repaid more than the outcome income received so far"
        assert drawn.iloc[-1] > 0 and drawn.iloc[-1] <= _pence(fcf_raw["finance"]["commitment"])
    inv = fcf.summary["investor"]
    reps = fcf.per_replication
    assert inv["multiple"]["mean"] == pytest.approx(reps.investor_repaid.sum() / reps.investor_drawn.sum())
    # No outcome income at all (cap 0): the investor puts money in and gets nothing back.
    none = _run(apply_overrides(fcf_raw, {"contract.cap": 0}, "fcf-no-income"), replications=2)
    nl = none.ledger
    assert nl[nl.payee == investor].amount_pence.sum() == 0
    assert (none.per_replication.investor_drawn > 0).all()
    assert none.summary["investor"]["multiple"]["mean"] == 0


# ---------------------------------------------------------------------------------------------------------------
# Troubled Families: attachment / results split by year of entry, deadweight deduction


@pytest.fixture(scope="module")
def tf_raw() -> dict:
    return _raw("troubled_families")


def _tf_cohort(tf_raw: dict, entry_month: int, families: int = 4):
    """``families`` families all attached in ``entry_month``, every one reaching the education + crime/ASB result
    as soon as the measurement period ends."""
    over = {
        "referrals.monthly": [0] * entry_month + [families],
        "referrals.distribution": "fixed",
        "pathway.transitions.families.full.measuring_5": {"ed_crime_result": 1.0},
        "pathway.transitions.families.minimal.ed_crime_result": {"case_closed": 1.0},
    }
    res = _run(apply_overrides(tf_raw, over, f"tf-entry-{entry_month}"), replications=1)
    paid = res.ledger[res.ledger.payer == "dclg"].groupby("item", observed=True).amount_pence.sum()
    return paid / families


def test_tf_year3_family_earns_less_attachment_and_more_for_results_than_year1(tf_raw):
    year1, year3 = _tf_cohort(tf_raw, 0), _tf_cohort(tf_raw, 24)
    assert year3["attachment_fee"] < year1["attachment_fee"]
    assert year3["ed_crime_asb_result"] > year1["ed_crime_asb_result"]
    lines = {p["name"]: p for p in tf_raw["contract"]["payments"]}
    for name in ("attachment_fee", "ed_crime_asb_result"):  # the year of entry picks the tariff, less the deadweight
        dw = lines[name]["deadweight"]
        assert year1[name] == _pence(lines[name]["tariff_by_year"][0] * (1 - dw))
        assert year3[name] == _pence(lines[name]["tariff_by_year"][2] * (1 - dw))
    # Whatever the year of entry, a family brings at most the per-family maximum.
    assert year1.sum() <= _pence(tf_raw["contract"]["per_person_cap"])
    assert year3.sum() <= _pence(tf_raw["contract"]["per_person_cap"])


def test_tf_payments_are_reduced_by_the_deadweight_share(tf_raw):
    lines = tf_raw["contract"]["payments"]
    dw = lines[0]["deadweight"]
    assert dw > 0 and all(p["deadweight"] == dw for p in lines)
    # The same families without the deduction, and with the cap at the undeducted £4,000 a family.
    over = {f"contract.payments[{i}].deadweight": 0.0 for i in range(len(lines))}
    over["contract.per_person_cap"] = tf_raw["contract"]["per_person_cap"] / (1 - dw)
    base = _run(tf_raw, replications=2, source="troubled_families.yaml")
    gross = _run(apply_overrides(tf_raw, over, "tf-no-deadweight"), replications=2)
    for name in [p["name"] for p in lines] + [None]:
        b, g = base.claims, gross.claims
        if name is not None:
            b, g = b[b.item == name], g[g.item == name]
        nb, ng = b.amount_claimed_pence.sum(), g.amount_claimed_pence.sum()
        assert ng > 0 and b.claims.sum() == g.claims.sum()  # the same families trigger the same lines
        assert abs(nb - (1 - dw) * ng) <= b.claims.sum() + 1  # within a penny a claim (rounding)


# ---------------------------------------------------------------------------------------------------------------
# Peterborough: cohort threshold payments


@pytest.fixture(scope="module")
def pb_raw() -> dict:
    return _raw("peterborough")


def _pb_variant(pb_raw: dict, engaged_monthly_rate: float, cap_off: bool = False) -> dict:
    row_r = {"in_support": 1 - engaged_monthly_rate, "reconvicted": engaged_monthly_rate}
    over = {"pathway.transitions.engaged.full.released": row_r, "pathway.transitions.engaged.full.in_support": row_r}
    if cap_off:
        over["contract.cap"] = None
    return apply_overrides(pb_raw, over, f"pb-{engaged_monthly_rate}")


def _pb_expected_payment(raw: dict, clients: pd.DataFrame) -> pd.Series:
    """What the cohort rule should pay in each replication, in pence, from the clients table alone."""
    rule = raw["contract"]["cohort_payments"][0]
    b, w, price = rule["baseline_rate"], rule["window_months"], _pence(rule["price_per_event_avoided"])
    first = clients[f"first_{rule['event_state']}"]
    event = (first.astype("float") <= clients.referral_month.astype("float") + w - 1).fillna(False).astype(bool)
    out = {}
    for rep, g in clients.assign(event=event).groupby("replication"):
        paid, n_all, e_all = 0, 0, 0
        for k, co in enumerate(rule["cohorts"]):
            in_k = (g.referral_month >= co["start"]) & (g.referral_month < co["end"])
            n, e = int(in_k.sum()), int(g.event[in_k].sum())
            n_all, e_all = n_all + n, e_all + e
            due = round(price * (b * n - e)) if 1 - e / n / b >= rule["threshold"] - 1e-12 else 0
            if k == len(rule["cohorts"]) - 1 and 1 - e_all / n_all / b >= rule["threshold_all"] - 1e-12:
                due = max(due, round(price * (b * n_all - e_all)) - paid)
            paid += max(due, 0)
        cap = raw["contract"].get("cap")
        out[rep] = min(paid, _pence(cap)) if cap is not None else paid
    return pd.Series(out)


def _pb_paid(res) -> pd.Series:
    led = res.ledger
    rows = led[led.item == "reconviction_reduction"]
    return rows.groupby("replication").amount_pence.sum().reindex(range(res.replications), fill_value=0)


def test_peterborough_pays_nothing_when_the_reduction_is_below_the_thresholds(pb_raw):
    # Engaged prisoners reconvicted at the baseline's monthly rate: no reduction to pay for.
    baseline_rate = pb_raw["pathway"]["transitions"]["not_engaged"]["full"]["released"]["reconvicted"]
    raw = _pb_variant(pb_raw, baseline_rate)
    res = _run(raw, replications=3)
    assert (_pb_paid(res) == 0).all()
    assert (_pb_expected_payment(raw, res.clients) == 0).all()
    assert res.per_replication.investor_repaid.sum() == 0


def test_peterborough_payments_follow_the_cohort_rule(pb_raw):
    res = _run(pb_raw, replications=4, source="peterborough.yaml")
    expected = _pb_expected_payment(pb_raw, res.clients)
    pd.testing.assert_series_equal(_pb_paid(res), expected.reindex(range(4)), check_names=False, check_dtype=False)


def test_peterborough_payment_rises_with_the_reduction(pb_raw):
    # Monthly reconviction of engaged prisoners: ~9% overall reduction (the file), then ~13% and ~17%.
    h = pb_raw["pathway"]["transitions"]["engaged"]["full"]["released"]["reconvicted"]
    paid = [_pb_paid(_run(_pb_variant(pb_raw, rate, cap_off=True), replications=3)) for rate in (h, h - 0.005, h - 0.01)]
    for weaker, stronger in zip(paid, paid[1:]):
        assert (stronger >= weaker).all()  # same seed: fewer reconvictions client by client, never a smaller payment
        assert stronger.sum() > weaker.sum()


# ---------------------------------------------------------------------------------------------------------------
# Transforming Rehabilitation: volume band reconciliation


def test_tr_volume_shortfall_is_clawed_back_and_lowers_the_crc_cash():
    """The paid volume falls a third below expectation while the caseload rises a fifth above it: the band sees
    only the paid cases (claws back every year), the CRC supervises and pays for more cases than in the base."""
    base_raw, short_raw = _raw("tr_crc"), _raw("tr_crc_volume_shortfall")
    base = _run(base_raw, replications=2, source="tr_crc.yaml")
    short = _run(short_raw, replications=2, source="tr_crc_volume_shortfall.yaml")
    fee = base_raw["contract"]["service_fee"]
    band = fee["volume_band"]
    unit = fee["total"] / (base_raw["months"] / 12) / band["expected_per_year"]  # pounds per case
    assert base.ledger[base.ledger.kind == "clawback"].empty  # volumes as expected: inside the band
    claw = short.ledger[short.ledger.kind == "clawback"]
    assert len(claw) and (claw.payer == "crc").all() and (claw.payee == "moj").all()
    years = base_raw["months"] // 12
    paid_segments = short.model.scenario.contract.service_fee.volume_band.segments
    assert paid_segments == ["offenders"]
    for rep, g in short.clients.groupby("replication"):
        # the caseload: about 1.2 x the expected 6,000 new cases in every year (the NAO's fifth more supervised)
        everyone = np.bincount(g.referral_month // 12, minlength=years)
        assert (everyone > 1.1 * band["expected_per_year"]).all()
        # each contract year: the unit price times the shortfall of the PAID cases below the band's lower edge
        paid = np.bincount(g[g.segment.isin(paid_segments)].referral_month // 12, minlength=years)
        assert (paid < 0.75 * band["expected_per_year"]).all()
        want = [_pence(unit * (band["expected_per_year"] * (1 - band["band"]) - a)) for a in paid]
        got = claw[claw.replication == rep].sort_values("month")
        assert list(got.month) == [12 * y + 11 + band["lag"] for y in range(years)]
        assert np.allclose(got.amount_pence.to_numpy(), want, atol=1)
    pb, ps = base.per_replication, short.per_replication
    assert (ps["referrals"] > 1.1 * pb["referrals"]).all()
    assert (ps["costs[crc]"] > pb["costs[crc]"]).all()  # more cases supervised cost more ...
    assert (ps["final_cash[crc]"] < pb["final_cash[crc]"]).all()  # ... while the fee is clawed back
    assert (ps["lowest_cash[crc]"] < pb["lowest_cash[crc]"]).all()


def test_tr_volume_band_counting_every_referral_would_top_up_instead():
    """Without `segments` the band counts the whole (grown) caseload: a top-up above the band, no clawback."""
    raw = _raw("tr_crc_volume_shortfall")
    del raw["contract"]["service_fee"]["volume_band"]["segments"]
    res = _run(raw, replications=1, source="<all counted>")
    assert res.ledger[res.ledger.kind == "clawback"].empty
    top_up = res.ledger[res.ledger["item"] == "volume_reconciliation"]
    assert len(top_up) == raw["months"] // 12 and (top_up.payer == "moj").all()


def test_work_programme_supply_chain_experiment_changes_only_the_specialists_terms():
    """The shipped experiment re-runs the Work Programme under other subcontract terms: DWP's payments and
    the clients are the same in every design; paying the specialist at cost shields it in every run."""
    from pbrsim.experiments.experiment import load_experiment
    from pbrsim.simulate import simulate

    exp = load_experiment(Path(__file__).resolve().parents[1] / "scenarios" / "experiments" / "work_programme_supply_chain.yaml")
    assert [d.name for d in exp.designs] == ["as_modelled", "paid_at_cost", "fewer_referrals"]
    base = exp.baseline.scenario
    for d in exp.designs:
        assert (d.scenario.contract, d.scenario.pathway, d.scenario.referrals) == (base.contract, base.pathway, base.referrals)
    runs = {d.name: simulate(d.scenario, seed=exp.seed, replications=3) for d in exp.designs[:2]}
    pr = {k: r.per_replication for k, r in runs.items()}
    # same clients and the same commissioner spend per replication (common random numbers, same contract)
    assert (pr["as_modelled"]["referrals"] == pr["paid_at_cost"]["referrals"]).all()
    margin = "margin[esa_specialist]"
    assert (pr["paid_at_cost"][margin] > pr["as_modelled"][margin]).all()
    assert (pr["paid_at_cost"]["margin[prime_contractor]"] < pr["as_modelled"]["margin[prime_contractor]"]).all()
