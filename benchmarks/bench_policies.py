"""Allocation-policy overhead: engine throughput under each policy on the engine benchmark's scenario.

Run: python benchmarks/bench_policies.py [--clients 100000] [--replications 1]
The scenario is bench_engine.big_scenario (blended_vcs stretched to N referrals, no capacity limit),
run once per policy with the same seed; value tables are built once per model (timed separately) and
reused by every replication. Target: return_maximising within 2x of holistic.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
POLICIES = {
    "holistic": "holistic",
    "needs_first": "needs_first",
    "return_maximising": {"name": "return_maximising", "monthly_discount_rate": 0.01},
    "cash_stressed": {"name": "cash_stressed", "comfortable_cash": 1.0e9, "stressed_cash": 0.0, "monthly_discount_rate": 0.01},
}


def _big_scenario(clients: int) -> dict:
    spec = importlib.util.spec_from_file_location("bench_engine", HERE / "bench_engine.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.big_scenario(clients)


def measure(clients: int, replications: int, capacity: int | None) -> list[dict]:
    from pbrsim.engine.run import compile_model, run_replication
    from pbrsim.scenario.schema import scenario_from_dict
    from pbrsim.engine.client_value import value_tables

    rows = []
    for name, policy in POLICIES.items():
        d = _big_scenario(clients)
        d["provider"]["policy"] = policy
        d["provider"]["capacity"] = capacity
        warm = _big_scenario(2_000)
        warm["provider"]["policy"] = policy
        run_replication(compile_model(scenario_from_dict(warm, "<warm-up>")), seed=0, replication=0)
        model = compile_model(scenario_from_dict(d, "<bench>"))
        t0 = time.perf_counter()
        if name in ("return_maximising", "cash_stressed"):
            value_tables(model, model.provider, 0.01)
        t_tables = time.perf_counter() - t0
        t0 = time.perf_counter()
        months = 0
        for rep in range(replications):
            months += run_replication(model, seed=1, replication=rep).client_months
        t = time.perf_counter() - t0
        rows.append({"policy": name, "client_months": months, "seconds": t, "tables_seconds": t_tables,
                     "per_second": months / t})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=100_000)
    ap.add_argument("--replications", type=int, default=1)
    ap.add_argument("--capacity", type=int, default=None, help="full-service places (default unlimited)")
    args = ap.parse_args()
    rows = measure(args.clients, args.replications, args.capacity)
    base = rows[0]["per_second"]
    print(f"{args.clients:,} clients, {args.replications} replication(s), capacity {args.capacity}")
    print(f"{'policy':<18} {'client-months':>14} {'engine s':>9} {'tables s':>9} {'M client-months/s':>18} {'vs holistic':>12}")
    for r in rows:
        print(f"{r['policy']:<18} {r['client_months']:>14,} {r['seconds']:>9.2f} {r['tables_seconds']:>9.3f} "
              f"{r['per_second'] / 1e6:>18.2f} {base / r['per_second']:>11.2f}x")


if __name__ == "__main__":
    main()
