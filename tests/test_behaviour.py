"""Allocation policies and the parking metrics: the levers, needs-first, return-maximising, cash stress."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from pbrsim.engine import behaviour
from pbrsim.engine.behaviour import Review, blended_scores, cash_weight, make_policy
from pbrsim.engine.run import compile_model
from pbrsim.analysis.parking import per_replication_columns, ratio_of_ratios_ci, summary
from pbrsim.scenario.schema import ReturnMaximisingPolicy, load_raw, load_scenario, scenario_from_dict
from pbrsim.simulate import simulate

from .conftest import scenario

PARKING = Path(__file__).resolve().parents[1] / "scenarios" / "parking"
SEED, REPS = 7, 30


def parking(sc, reps=REPS, seed=SEED):
    r = simulate(sc, seed=seed, replications=reps)
    per_rep = per_replication_columns(r.model, r.clients, r.monthly, r.ledger)
    return r, per_rep, summary(per_rep, r.model)


def seg_rate(s: dict, seg: str, key: str = "parking_rate") -> float:
    return next(row for row in s["segments"] if row["segment"] == seg)[key]["mean"]


@pytest.fixture(scope="module")
def outcome_only():
    return parking(load_scenario(PARKING / "outcome_only.yaml"))


@pytest.fixture(scope="module")
def cash_stressed_base():
    return parking(load_scenario(PARKING / "cash_stressed.yaml"))


# -- the shipped scenarios: an outcome-only contract parks most complex clients; each lever reduces it --


def test_outcome_only_parks_most_complex_clients(outcome_only):
    _, _, s = outcome_only
    assert seg_rate(s, "complex") > 0.5
    assert seg_rate(s, "complex") > seg_rate(s, "moderate") > seg_rate(s, "job_ready")
    assert seg_rate(s, "complex", "dropped_rate") > 0.5
    assert s["equity_ratio"]["hi"] < 0.15  # complex clients' outcome rate far below job-ready clients'


@pytest.mark.parametrize("lever", ["complex_milestones", "differential_pricing"])
def test_contract_levers_reduce_complex_parking(outcome_only, lever):
    _, _, base = outcome_only
    _, _, s = parking(load_scenario(PARKING / f"{lever}.yaml"))
    assert s["segments"][2]["segment"] == "complex"
    assert seg_rate(s, "complex") < seg_rate(base, "complex") - 0.2
    assert s["segments"][2]["parking_rate"]["hi"] < base["segments"][2]["parking_rate"]["lo"]
    assert seg_rate(s, "complex", "dropped_rate") < seg_rate(base, "complex", "dropped_rate")
    assert s["equity_ratio"]["mean"] > base["equity_ratio"]["mean"]


def test_upfront_share_reduces_parking_by_a_cash_stressed_provider(cash_stressed_base):
    r0, _, base = cash_stressed_base
    r1, _, s = parking(load_scenario(PARKING / "upfront_share.yaml"))
    assert seg_rate(base, "complex") > 0.5
    assert seg_rate(s, "complex") < seg_rate(base, "complex") - 0.1
    assert s["segments"][2]["parking_rate"]["hi"] < base["segments"][2]["parking_rate"]["lo"]
    assert r1.summary["organisations"][0]["lowest_cash"]["mean"] > r0.summary["organisations"][0]["lowest_cash"]["mean"]


def test_upfront_share_cannot_move_a_pure_return_maximiser(outcome_only):
    """A fee paid whatever happens to clients changes no client's value: the same clients are parked."""
    r0, _, _ = outcome_only
    d = yaml.safe_load((PARKING / "outcome_only.yaml").read_text())
    d["contract"]["service_fee"] = {"share_of_value": 0.3, "schedule": "monthly", "lag": 1}
    r1 = simulate(scenario_from_dict(d), seed=SEED, replications=REPS)
    for col in ("months_full", "months_minimal", "final_state"):
        assert (r0.clients[col].to_numpy() == r1.clients[col].to_numpy()).all()


def _differences(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in set(a) | set(b):
            out += _differences(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
        return out
    return [] if a == b else [path]


@pytest.mark.parametrize("lever, base, allowed", [
    ("complex_milestones", "outcome_only", {"name", "description", "contract.payments"}),
    ("differential_pricing", "outcome_only", {"name", "description", "contract.payments"}),
    ("cash_stressed", "outcome_only", {"name", "description", "provider.name", "provider.policy.name",
                                       "provider.policy.comfortable_cash", "provider.policy.stressed_cash"}),
    ("upfront_share", "cash_stressed", {"name", "description", "contract.service_fee", "contract.payments"}),
])
def test_lever_files_change_only_their_lever(lever, base, allowed):
    a, b = load_raw(PARKING / f"{base}.yaml"), load_raw(PARKING / f"{lever}.yaml")
    assert set(_differences(a, b)) <= allowed
    assert yaml.safe_load((PARKING / f"{lever}.yaml").read_text())["extends"] == f"{base}.yaml"


# -- needs_first ----------------------------------------------------------------------------------


def test_needs_first_serves_complex_clients_more_than_holistic_under_shortage():
    _, _, hol = parking(scenario(**{"provider.capacity": 12}), reps=10)
    _, _, nf = parking(scenario(**{"provider.capacity": 12, "provider.policy": "needs_first"}), reps=10)
    assert hol["parking_rate"]["mean"] > 0.2  # capacity really is short
    assert seg_rate(nf, "hard") < seg_rate(hol, "hard") - 0.2
    assert seg_rate(nf, "easy") > seg_rate(hol, "easy")


def test_needs_first_is_holistic_when_places_suffice():
    m = compile_model(scenario(**{"provider.policy": "needs_first"}))
    pol = make_policy(m.provider.policy, m, m.provider)
    r = _review(m, capacity=None)
    assert pol(r).all()
    full = pol(_review(m, capacity=3))
    assert full.sum() == 3 and (r.segment[full] == 1).all()  # 'hard' (listed second) ranks as more complex


# -- return_maximising ------------------------------------------------------------------------------


def _review(model, month=4, capacity=None, cash=0) -> Review:
    """Every (segment, service state, referral month) combination as a candidate, in that order."""
    pw = model.pathway
    seg, st, ref = np.meshgrid(np.arange(len(pw.segments)), np.flatnonzero(pw.service), np.arange(month + 1), indexing="ij")
    seg, st, ref = seg.ravel(), st.ravel(), ref.ravel()
    return Review(month=month, candidates=np.arange(len(seg)), segment=seg.astype(np.int16), state=st.astype(np.int16),
                  ref_month=ref.astype(np.int16), capacity=capacity, cash=cash)


def _recording(monkeypatch, name):
    """Wrap policy ``name`` so that every review and decision of a run is kept."""
    calls = []
    inner = behaviour.FACTORIES[name]

    def factory(spec, model, org):
        pol = inner(spec, model, org)

        def recorded(review):
            full = pol(review)
            calls.append((review, full, pol.tables.lookup(review.month, review.segment, review.state, review.ref_month)))
            return full
        recorded.tables = pol.tables
        return recorded

    monkeypatch.setitem(behaviour.FACTORIES, name, factory)
    return calls


def test_return_maximising_never_parks_positive_value_when_places_are_free(monkeypatch):
    calls = _recording(monkeypatch, "return_maximising")
    simulate(load_scenario(PARKING / "outcome_only.yaml"), seed=SEED, replications=2)
    assert calls
    parked_some = False
    for review, full, net in calls:
        assert review.capacity is None
        assert full[net > 0].all()
        assert not full[net < -behaviour.TIE_TOLERANCE].any()
        parked_some |= (~full).any()
    assert parked_some


def test_return_maximising_fills_scarce_places_best_first():
    m = compile_model(scenario(**{"provider.policy": {"name": "return_maximising"}}))
    pol = make_policy(m.provider.policy, m, m.provider)
    r = _review(m, capacity=5)
    net = pol.tables.lookup(r.month, r.segment, r.state, r.ref_month)
    full = pol(r)
    assert full.sum() == 5
    assert net[full].min() >= net[~full].max()
    # ties keep first-come order: the chosen ones among equal values are the earliest candidates
    cut = net[full].min()
    tied = np.flatnonzero(net == cut)
    assert (full[tied] == (np.arange(len(tied)) < full[tied].sum())).all()


# -- cash_stressed ----------------------------------------------------------------------------------


def test_cash_weight_and_scores():
    assert cash_weight(50_00, 40_00, 0) == 0.0
    assert cash_weight(-1, 40_00, 0) == 1.0
    assert cash_weight(10_00, 40_00, 0) == pytest.approx(0.75)
    assert cash_weight(5, 5, 5) == 1.0 and cash_weight(6, 5, 5) == 0.0
    net = np.array([-100.0, 0.0, 50.0])
    assert (blended_scores(net, 0.0, 30) == 30).all()
    assert (blended_scores(net, 1.0, 30) == net).all()


def test_cash_stressed_is_monotone_in_cash():
    spec = {"name": "cash_stressed", "comfortable_cash": 1000, "stressed_cash": -1000}
    m = compile_model(scenario(**{"provider.policy": spec}))
    pol = make_policy(m.provider.policy, m, m.provider)
    rm = make_policy(ReturnMaximisingPolicy(name="return_maximising"), m, m.provider)
    for capacity in (None, 20):
        previous, served_before = None, None
        for cash in np.linspace(200_000, -200_000, 81).astype(int):  # pence, falling
            full = pol(_review(m, capacity=capacity, cash=int(cash)))
            if previous is not None:
                assert full.sum() <= previous
                if capacity is None:
                    assert not (full & ~served_before).any()  # nobody is taken back on as cash falls
            previous, served_before = full.sum(), full
        high = pol(_review(m, capacity=capacity, cash=100_000))
        low = pol(_review(m, capacity=capacity, cash=-100_000))
        assert (high == behaviour.holistic(_review(m, capacity=capacity))).all()
        assert (low == rm(_review(m, capacity=capacity))).all()


def test_less_cash_means_more_parking_in_a_run():
    d = load_raw(PARKING / "cash_stressed.yaml")
    d["provider"]["opening_cash"] = 200000
    _, _, rich = parking(scenario_from_dict(d), reps=10)
    _, _, poor = parking(load_scenario(PARKING / "cash_stressed.yaml"), reps=10)
    assert poor["parking_rate"]["mean"] > rich["parking_rate"]["mean"]


def test_cash_stressed_rejects_inverted_thresholds():
    from pbrsim.scenario.schema import ScenarioError

    with pytest.raises(ScenarioError) as err:
        scenario(**{"provider.policy": {"name": "cash_stressed", "comfortable_cash": 0, "stressed_cash": 10}})
    assert any(path == "provider.policy.cash_stressed" or path.startswith("provider.policy") for path, _ in err.value.problems)
    assert "comfortable_cash must be at least stressed_cash" in str(err.value)


# -- parking metrics --------------------------------------------------------------------------------


def test_metrics_agree_with_the_monthly_table_and_definitions(outcome_only):
    r, per_rep, s = outcome_only
    org = r.model.provider.name
    assert np.allclose(per_rep["parking_rate"], per_rep[f"org_parking_rate[{org}]"])
    assert (per_rep["service_months"] == per_rep[[f"service_months[{g}]" for g in r.model.pathway.segments]].sum(axis=1)).all()
    assert s["organisations"][0]["parking_rate"]["mean"] == pytest.approx(s["parking_rate"]["mean"])
    assert s["most_complex"] == ["complex"] and s["least_complex"] == ["job_ready"]
    # recount 'dropped' from the clients table for one replication
    c = r.clients[r.clients.replication == 0]
    service = c.months_full + c.months_minimal
    dropped = c.end_month.notna() & c.first_sustained_6m.isna() & (service > 0) & (c.months_full < 0.25 * service)
    assert per_rep.loc[0, "dropped"] == dropped.sum()
    rate = lambda seg: (c[c.segment == seg].first_sustained_6m.notna().mean())  # noqa: E731
    assert per_rep.loc[0, "equity_ratio"] == pytest.approx(rate("complex") / rate("job_ready"))


def test_no_parking_or_dropping_under_holistic_with_free_places():
    _, per_rep, s = parking(scenario(), reps=3)
    assert (per_rep["parking_rate"] == 0).all() and (per_rep["dropped"] == 0).all()
    assert s["parking_rate"]["mean"] == 0


def test_ratio_of_ratios_interval():
    a, b, c, d = [3, 4, 5], [30, 40, 50], [6, 8, 10], [20, 20, 20]
    out = ratio_of_ratios_ci(a, b, c, d)
    assert out["mean"] == pytest.approx((12 / 120) / (24 / 60))
    assert out["lo"] <= out["mean"] <= out["hi"]
    assert ratio_of_ratios_ci([1], [2], [0], [5])["mean"] is None


def test_equity_ratio_undefined_with_one_complexity_level():
    sc = scenario(**{"segments.easy.complexity": 1, "segments.hard.complexity": 1})
    r = simulate(sc, seed=1, replications=2)
    per_rep = per_replication_columns(r.model, r.clients, r.monthly, r.ledger)
    assert per_rep["equity_ratio"].isna().all()
    assert summary(per_rep)["equity_ratio"]["mean"] is None


def test_policies_accept_an_empty_review():
    for spec in ("needs_first", {"name": "return_maximising"},
                 {"name": "cash_stressed", "comfortable_cash": 10, "stressed_cash": 0}):
        m = compile_model(scenario(**{"provider.policy": spec, "provider.capacity": 3}))
        pol = make_policy(m.provider.policy, m, m.provider)
        empty = np.array([], dtype=np.int16)
        assert len(pol(Review(month=2, candidates=empty, segment=empty, state=empty, ref_month=empty, capacity=3, cash=0))) == 0


def test_parking_by_organisation_in_a_supply_chain():
    """Subcontractors value clients with their pass-through share and lag; parking adds up across the chain."""
    d = load_raw(PARKING.parent / "supply_chain" / "outcome_pass_through.yaml")
    for o in d["organisations"]:
        o["policy"] = {"name": "return_maximising"}
    r = simulate(scenario_from_dict(d), seed=SEED, replications=2)
    per_rep = per_replication_columns(r.model, r.clients, r.monthly, r.ledger)
    names = [o.name for o in r.model.organisations]
    assert (per_rep[[f"org_minimal_months[{n}]" for n in names]].sum(axis=1) == per_rep["minimal_months"]).all()
    assert (per_rep[[f"org_service_months[{n}]" for n in names]].sum(axis=1) == per_rep["service_months"]).all()
    assert per_rep["parking_rate"].gt(0).all()
