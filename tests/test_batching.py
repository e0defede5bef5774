"""Replications run together in batches give exactly the results they give alone; the engine's fast paths
(vectorised seed keys, the transition lookup table) give exactly what the plain definitions give."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pbrsim.engine import rng
from pbrsim.engine.run import compile_model, run_batch, run_replication
from pbrsim.model.pathway import AMBIGUOUS, compile_pathway, row_index, step, step_bits
from pbrsim.scenario.schema import scenario_from_dict
from pbrsim.simulate import run_tables

from .conftest import override, scenario
from .test_golden import case_raw

REPS = 8
LATENT = {"classes": [{"name": "slow", "share": 0.4, "progress": 0.5}, {"name": "quick", "share": 0.6, "progress": 1.1}]}
SMALLER = {"referrals.rate": 20}  # fewer clients than the shipped chain: the test is about batching, not the contract


def _case(name: str, **changes):
    return lambda: scenario_from_dict(override(case_raw(name), **changes))


CASES = {
    # capacity, rejections, a cap that binds, a per-person cap
    "blended_vcs": _case("variant/cap_binding"),
    # a supply chain whose subcontractors fail (drop, transfer with a gap and a restart), guaranteed referrals
    "chain_failures": _case("variant/chain_failures", **SMALLER),
    # every policy, each under a capacity limit
    "chain_policies": _case("variant/chain_policies", **SMALLER, **{"organisations.0.capacity": 15, "organisations.1.capacity": 8}),
    # cohort payments and investor finance
    "peterborough": _case("scenarios/library/peterborough.yaml"),
    # shares that follow performance, a subcontractor's clients transferred to another subcontractor
    "chain_performance": _case("variant/chain_performance", **SMALLER),
    # the prime fails during the contract, or in the run-off
    "prime_fails": _case("variant/prime_fails"),
    "runoff_failure": _case("variant/runoff_failure"),
    # claims at referral, lines over several states, rejections of each
    "referral_claims": _case("variant/referral_claims"),
    # latent classes (each client's own draw) and graded providers: by temperature (a draw per client-month), under
    # a capacity; by protected share (first come first served among equals)
    "latent_graded": lambda: scenario(**{"segments.easy.latent_classes": LATENT, "provider.capacity": 30,
                                         "provider.policy": {"name": "graded", "temperature": 40}}),
    "latent_protected": lambda: scenario(**{"segments.hard.latent_classes": LATENT,
                                            "provider.policy": {"name": "graded", "protected_share": 0.4}}),
}
# what each case is for, checked on its tables
REACHES = {
    "blended_vcs": lambda t: t["settlements"].amount_capped_pence.sum() > 0,
    "chain_failures": lambda t: {"drop"} <= set(t["failures"].clients_to) and t["clients"].months_no_service.sum() > 0,
    "chain_policies": lambda t: t["monthly"].groupby("organisation", observed=True).n_minimal.sum().gt(0).sum() >= 3,
    "peterborough": lambda t: (t["ledger"].kind == "investment").any() and t["claims"].segment.isna().any(),
    "chain_performance": lambda t: len(t["failures"]) > 0,
    "prime_fails": lambda t: (t["failures"].clients_to == "contract_ended").any(),
    "runoff_failure": lambda t: (t["failures"].clients_to == "after the contract end").any(),
    "referral_claims": lambda t: t["claims"].rejected.sum() > 0,
    "latent_graded": lambda t: t["clients"].months_minimal.sum() > 0 and t["clients"].latent_class.nunique() == 2,
    "latent_protected": lambda t: t["clients"].months_minimal.sum() > 0 and t["clients"].latent_class.nunique() == 2,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_tables_do_not_depend_on_the_batch_size(case):
    model = compile_model(CASES[case]())
    reps = [0, 3, 1, 2, 7, 4, 5, 6][:REPS]  # any order of replication numbers
    alone = run_tables(model, 11, reps, batch=1)
    assert REACHES[case](alone), f"{case} no longer reaches the path it is for"
    for size in (7, REPS):
        together = run_tables(model, 11, reps, batch=size)
        for name, table in alone.items():
            pd.testing.assert_frame_equal(together[name], table, check_exact=True, obj=f"{case}: {name}, batch {size}")
    assert list(alone["monthly"].replication.unique()) == reps


def test_a_replication_is_the_same_in_any_batch():
    model = compile_model(scenario(**{"provider.capacity": 8}))
    batch = run_batch(model, 5, [4, 2, 9])
    alone = run_replication(model, 5, 2)
    inside = batch.replication(1)
    assert inside.replication == alone.replication == 2
    for name in ("segment", "state", "first_month", "months_full", "months_minimal", "end_month", "cash", "caseload",
                 "level_counts", "claims", "settlements"):
        assert np.array_equal(getattr(inside, name), getattr(alone, name)), name
    for col, values in alone.ledger.arrays().items():
        assert np.array_equal(inside.ledger.arrays()[col], values), col
    assert inside.client_months == alone.client_months > 0


@pytest.mark.parametrize("seed", [0, 7, 2**32 - 1, 2**32 + 5, 12345678901234567890])
def test_vectorised_seed_keys_are_numpys(seed):
    r = np.random.default_rng(seed % 1000)
    for length in (3, 5):
        spawn = r.integers(0, 2**32, size=(30, length))
        spawn[0] = 0
        want = [np.random.SeedSequence(seed, spawn_key=tuple(int(x) for x in row)).generate_state(1, np.uint64)[0] for row in spawn]
        assert np.array_equal(rng.keys(seed, spawn), np.array(want, dtype=np.uint64))
    assert rng.keys(seed, spawn[:2, :3])[1] == rng.key(seed, *map(int, spawn[1, :3]))


def test_lookup_table_transitions_equal_the_cumulative_comparison():
    pw = compile_pathway(scenario())
    S, G = pw.n_states, len(pw.segments)
    rows = np.arange(G * 2 * S)
    # random draws, and draws that land exactly on every cumulative boundary and just below it
    z = rng.mix_bits(rng.counters(np.arange(200_000)) + np.uint64(99))
    boundaries = pw.cum.reshape(-1, S)[:, : S - 1].ravel()
    exact = (np.round(boundaries * 2.0**53).astype(np.uint64)) << np.uint64(11)
    z = np.concatenate([z, exact, exact - np.uint64(1 << 11)])
    row = np.resize(rows, len(z))
    u = rng.to_uniform(z)
    seg, rest = np.divmod(row, 2 * S)
    level, state = np.divmod(rest, S)
    assert np.array_equal(step_bits(pw, row, z), step(pw, seg, state.astype(np.int16), level, u))
    assert (pw.table != AMBIGUOUS).mean() > 0.99  # nearly every draw needs only the table
    assert np.array_equal(row_index(pw, seg, level, state), row)


def test_transitions_without_the_lookup_table_are_the_same():
    """The exact comparison the table stands in for (used on its own when a pathway has 255 states or more)."""
    import dataclasses

    model = compile_model(scenario_from_dict(case_raw("variant/chain_failures")))
    plain = dataclasses.replace(model, pathway=dataclasses.replace(model.pathway, table=None, bits=0))
    a, b = run_batch(model, 3, [0, 1]), run_batch(plain, 3, [0, 1])
    for name in ("state", "first_month", "months_full", "months_minimal", "months_no_service", "end_month"):
        assert np.array_equal(a.clients[name], b.clients[name]), name
    assert np.array_equal(a.cash, b.cash) and len(a.failures) == len(b.failures) > 0


def test_a_broken_invariant_names_its_replication():
    from pbrsim.engine.run import InvariantError, _Run

    run = _Run(compile_model(scenario()), seed=0, replications=[5, 6, 7])
    run.run()
    last = run.cl.offset[2]  # the first client of replication 7
    run.cl.end_month[last] = -1 if run.cl.end_month[last] >= 0 else 3
    with pytest.raises(InvariantError, match="replication 7: end months"):
        run._check_invariants()
