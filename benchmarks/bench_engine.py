"""Engine throughput: client-months per second and peak memory for large contracts.

Run: python benchmarks/bench_engine.py [--clients 100000 1000000]
Each size runs in a fresh process so that peak memory (ru_maxrss) belongs to that size alone.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
MONTHS = 60


def big_scenario(clients: int) -> dict:
    """blended_vcs (3 segments, 8 states) stretched to ``clients`` referrals over 60 months, no capacity limit."""
    d = yaml.safe_load((ROOT / "scenarios" / "blended_vcs.yaml").read_text())
    d = copy.deepcopy(d)
    d["months"] = MONTHS
    d["referrals"] = {"rate": clients / 48, "start": 0, "end": 48, "distribution": "fixed"}
    d["contract"]["value"] = clients * 1000.0
    d["contract"]["cap"] = None
    d["provider"]["opening_cash"] = clients * 500.0
    d["provider"]["capacity"] = None
    return d


def chain_scenario(clients: int, subs: int = 5) -> dict:
    """The same contract delivered by a prime and ``subs`` subcontractors on blended pass-through terms."""
    d = big_scenario(clients)
    prov = d.pop("provider")
    orgs = [{**prov, "name": "prime", "role": "prime"}]
    for i in range(subs):
        orgs.append({**prov, "name": f"sub_{i}", "opening_cash": prov["opening_cash"] / 10,
                     "terms": {"pass_through": {"outcome": 1.0, "milestone": 0.5}, "management_fee": 0.1,
                               "fee_for_service": {"per_client_month": 20}, "extra_lag": 1}})
    share = 1 / (subs + 1)
    shares = {o["name"]: share for o in orgs}
    shares["prime"] = 1 - share * subs
    d["organisations"] = orgs
    d["supply_chain"] = {"allocation": {"method": "fixed_shares", "shares": shares}}
    return d


def measure(clients: int, replications: int = 1, variant: str = "single") -> dict:
    from pbrsim.engine.run import compile_model, run_replication
    from pbrsim.engine.records import replication_columns
    from pbrsim.scenario.schema import scenario_from_dict

    run_replication(compile_model(scenario_from_dict(big_scenario(2_000), "<warm-up>")), seed=0, replication=0)
    build = chain_scenario if variant == "chain" else big_scenario
    model = compile_model(scenario_from_dict(build(clients), "<bench>"))
    t0 = time.perf_counter()
    months = 0
    for rep in range(replications):
        r = run_replication(model, seed=1, replication=rep)
        months += r.client_months
    t_engine = time.perf_counter() - t0
    replication_columns(model, r)
    t_total = time.perf_counter() - t0
    return {
        "clients": int(len(r.segment)),
        "client_months": int(months),
        "engine_seconds": round(t_engine, 3),
        "with_tables_seconds": round(t_total, 3),
        "client_months_per_second": round(months / t_engine),
        "peak_memory_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--clients", type=int, nargs="*", default=[100_000, 1_000_000])
    ap.add_argument("--variants", nargs="*", default=["single", "chain"], help="single provider; chain = prime + 5 subcontractors")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--variant", default="single", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, variant=args.variant)))
        return
    print(f"{'variant':>8} {'clients':>10} {'client-months':>14} {'engine s':>9} {'+tables s':>10} {'M client-months/s':>18} {'peak MiB':>9}")
    for variant in args.variants:
        for n in args.clients:
            out = subprocess.run([sys.executable, __file__, "--one", str(n), "--variant", variant], capture_output=True, text=True, check=True)
            m = json.loads(out.stdout)
            print(f"{variant:>8} {m['clients']:>10,} {m['client_months']:>14,} {m['engine_seconds']:>9.2f} {m['with_tables_seconds']:>10.2f} "
                  f"{m['client_months_per_second'] / 1e6:>18.2f} {m['peak_memory_mib']:>9.0f}")


if __name__ == "__main__":
    main()
