"""Golden results: every shipped scenario (and a few variants that reach rarer code paths) run with a
fixed seed must give exactly the tables recorded in ``fixtures/golden/tables.json``.

The engine's results are a function of the scenario and the seed alone (docs/model.md §12); a change
that alters any table, even by a penny or one client's month, fails here. Tables are hashed by value:
column names and values in row order (column order and numeric dtype aside, so that an integer column
stored as floats hashes the same); non-integer numbers count to 12 significant digits.

After a deliberate change to the model's results, record the new tables with
``PYTHONPATH=src python -m tests.test_golden --update`` and say why in the commit.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from pbrsim.scenario.schema import load_raw, scenario_from_dict
from pbrsim.simulate import simulate

from .conftest import override

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).parent / "fixtures" / "golden" / "tables.json"
SEED = 20240607
REPLICATIONS = 3
NOT_SCENARIOS = ("experiments", "stress", "targets", "portfolios", "design")  # experiment, stress, target, portfolio, design problem files

# Variants of shipped scenarios for paths the shipped files do not reach with this seed: a binding cap
# and per-person cap; a subcontractor that fails and drops its clients; guaranteed referrals; every
# allocation policy under a capacity limit in one supply chain; a prime that fails, during the contract
# and in the run-off; allocation shares that follow performance; claims at referral with rejections.
_CHAIN = "scenarios/supply_chain/blended.yaml"
CLAWBACK_CAP = 80_000_000  # pounds: binds before the last year's clawback
VARIANTS = {
    "variant/cap_binding": ("scenarios/blended_vcs.yaml", {"contract.cap": 60000, "contract.per_person_cap": 900}),
    "variant/chain_failures": (_CHAIN, {
        "organisations.1.opening_cash": 0, "organisations.1.on_failure": {"action": "drop"},
        "organisations.2.opening_cash": 0, "organisations.2.terms": {
            "fee_for_service": {"per_client_month": 35}, "pass_through": {"outcome": 0.5}, "extra_lag": 1, "guaranteed_referrals": 25},
        "organisations.3.opening_cash": 2000,
    }),
    "variant/chain_policies": (_CHAIN, {
        "organisations.0.policy": "needs_first", "organisations.0.capacity": 60,
        "organisations.1.policy": {"name": "return_maximising", "monthly_discount_rate": 0.01}, "organisations.1.capacity": 30,
        "organisations.2.policy": {"name": "cash_stressed", "comfortable_cash": 15000, "stressed_cash": 5000},
        "organisations.3.policy": "return_maximising",
    }),
    "variant/prime_fails": ("scenarios/blended_vcs.yaml", {"provider.opening_cash": 2000, "provider.credit": {"limit": 5000, "monthly_interest": 0.02}}),
    "variant/runoff_failure": ("scenarios/blended_vcs.yaml", {
        "provider.opening_cash": 2000, "provider.credit": {"limit": 60000, "monthly_interest": 0.1}, "contract.service_fee.lag": 0,
        "contract.payments.0.lag": 0, "contract.payments.1.lag": 0, "contract.payments.2.lag": 12, "contract.payments.2.tariff": 1,
        "contract.payments.3.lag": 0}),
    "variant/chain_performance": (_CHAIN, {
        "supply_chain.allocation": {"method": "performance", "review_every": 2, "step": 0.3, "shares": {
            "prime_plc": 0.4, "east_charity": 0.2, "west_charity": 0.2, "complex_needs_specialist": 0.2}},
        "organisations.1.opening_cash": 0, "organisations.1.on_failure": {"action": "transfer", "to": "west_charity", "gap_months": 1},
    }),
    "variant/referral_claims": ("scenarios/blended_vcs.yaml", {"contract.payments": [
        {"name": "start", "kind": "attachment", "state": "referred", "tariff": 40, "lag": 0, "rejection": 0.3},
        {"name": "start_or_engaged", "kind": "attachment", "states": ["referred", "engaged"], "tariff": 25, "lag": 1, "rejection": 0.2},
        {"name": "any_job", "kind": "milestone", "states": ["job_start", "sustained_3m"], "tariff": 300, "lag": 2, "rejection": 0.1},
        {"name": "in_work", "kind": "sustainment", "states": ["sustained_3m", "sustained_6m"], "max_months": 2, "tariff": 90, "lag": 1,
         "rejection": 0.25},
    ]}),
    "variant/clawback_capped": ("scenarios/library/tr_crc_volume_shortfall.yaml", {"contract.cap": CLAWBACK_CAP}),
}


def scenario_files() -> list[str]:
    """Every scenario file shipped under scenarios/ (sub-folders included), as paths relative to the repository."""
    files = sorted((ROOT / "scenarios").rglob("*.yaml"))
    return [p.relative_to(ROOT).as_posix() for p in files
            if not set(p.relative_to(ROOT / "scenarios").parts[:-1]) & set(NOT_SCENARIOS) and not p.name.endswith(".targets.yaml")]


def case_raw(case: str) -> dict:
    if case in VARIANTS:
        path, changes = VARIANTS[case]
        return override(load_raw(ROOT / path), **changes)
    return load_raw(ROOT / case)


def column_digest(s: pd.Series) -> bytes:
    """A digest of one column's values (nulls included) that does not depend on how they are stored."""
    if isinstance(s.dtype, pd.CategoricalDtype) or s.dtype == object or pd.api.types.is_string_dtype(s.dtype):
        text = "\x1f".join("\x00" if pd.isna(v) else str(v) for v in s.astype(object))
        return b"s" + hashlib.sha256(text.encode()).digest()
    a = s.astype("float64").to_numpy(na_value=np.nan)
    null = np.isnan(a)
    finite = a[~null]
    if np.all(finite == np.round(finite)) and np.all(np.abs(finite) < 2.0**53):
        body = np.where(null, 0, a).astype(np.int64).tobytes() + null.tobytes()
        return b"i" + hashlib.sha256(body).digest()
    text = "\x1f".join("nan" if np.isnan(v) else f"{v:.12g}" for v in a)
    return b"f" + hashlib.sha256(text.encode()).digest()


def table_digest(df: pd.DataFrame) -> str:
    h = hashlib.sha256()
    for col in sorted(df.columns, key=str):
        h.update(str(col).encode() + b"\x1e" + column_digest(df[col]))
    return f"{len(df)}:{h.hexdigest()[:20]}"


def result_digests(res) -> dict[str, str]:
    tables = {name: getattr(res, name) for name in ("clients", "ledger", "monthly", "claims", "settlements", "failures")}
    tables["per_replication"] = res.per_replication.reset_index()
    return {name: table_digest(df.reset_index(drop=True)) for name, df in tables.items()}


def run_case(case: str):
    sc = scenario_from_dict(case_raw(case), case)
    return simulate(sc, seed=SEED, replications=REPLICATIONS)


# what each variant is for, checked on its own run
REACHES = {
    "variant/cap_binding": lambda r: r.settlements.amount_capped_pence.sum() > 0,
    "variant/chain_failures": lambda r: (r.failures.clients_to == "drop").any()
    and r.failures.clients_to.astype(str).str.startswith("transfer").any() and r.clients.months_no_service.sum() > 0,
    "variant/chain_policies": lambda r: r.clients.months_minimal.sum() > 0,
    "variant/prime_fails": lambda r: (r.failures.clients_to == "contract_ended").any(),
    "variant/runoff_failure": lambda r: (r.failures.clients_to == "after the contract end").any(),
    "variant/chain_performance": lambda r: r.failures.clients_to.astype(str).str.contains("west_charity").any()
    and r.monthly.groupby("organisation", observed=True).referrals.sum().gt(0).all(),
    "variant/clawback_capped": lambda r: (r.settlements[r.settlements.item == "volume_reconciliation"].amount_capped_pence < 0).any(),
    "variant/referral_claims": lambda r: r.claims[r.claims.item.isin(["start", "start_or_engaged"])].rejected.sum() > 0,
}


CASES = scenario_files() + list(VARIANTS)


def test_every_shipped_scenario_has_a_golden_record():
    recorded = json.loads(FIXTURE.read_text())
    assert sorted(recorded) == sorted(CASES), "record the golden tables of new scenarios (module docstring)"
    assert len(scenario_files()) >= 19


@pytest.mark.parametrize("case", CASES)
def test_tables_match_the_golden_record(case):
    expected = json.loads(FIXTURE.read_text())[case]
    res = run_case(case)
    got = result_digests(res)
    differ = {t: (expected.get(t), got[t]) for t in got if expected.get(t) != got[t]}
    assert not differ, f"{case}: tables differ from the golden record (table: (recorded, now)): {differ}"
    if case in REACHES:
        assert REACHES[case](res), f"{case} no longer reaches the path it is for"
    # the Parquet files are written from the engine's columns without pandas: each table must be exactly what
    # pandas' own conversion of the DataFrame gives (values, types, and the metadata pd.read_parquet restores)
    frames = {**res.tables()}
    for name, table in res.arrow_tables().items():
        assert table.equals(pa.Table.from_pandas(frames[name], preserve_index=False), check_metadata=True), (case, name)


if __name__ == "__main__" and "--update" in sys.argv:
    # --update records every case; --update --new only the cases not yet recorded
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    recorded = json.loads(FIXTURE.read_text()) if FIXTURE.exists() and "--new" in sys.argv else {}
    recorded.update({c: result_digests(run_case(c)) for c in CASES if c not in recorded})
    FIXTURE.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
    print(f"wrote {FIXTURE} ({len(recorded)} cases)")
