"""Stress-test throughput: the default stress run (12 built-in stresses + the base, 500 replications each)
of a ~2,000-client contract on the process executor, timed end to end.

Run: python benchmarks/bench_stress.py [--replications 500] [--workers 2] [--chain] [--reverse]

Default contract: scenarios/blended_vcs.yaml (one provider, 36 months) stretched to ~2,000 referrals over
24 months, with capacity, contract value, cap and reserves scaled in proportion. ``--chain``: the supply
chain of scenarios/supply_chain/outcome_pass_through.yaml stretched the same way, stress-testing
east_charity (a prime and three subcontractors: four organisations per replication).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from pbrsim.scenario.overrides import apply_overrides
from pbrsim.scenario.schema import load_raw
from pbrsim.stress.run import run_stress_test

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = 2000


def single_provider() -> tuple[dict, str]:
    raw = load_raw(ROOT / "scenarios" / "blended_vcs.yaml")
    k = CLIENTS / (raw["referrals"]["rate"] * 24)
    p = raw["provider"]
    raw = apply_overrides(raw, {
        "referrals.rate": CLIENTS / 24,
        "contract.value": raw["contract"]["value"] * k,
        "contract.cap": raw["contract"]["cap"] * k,
        "provider.capacity": int(p["capacity"] * k),
        "provider.opening_cash": p["opening_cash"] * k,
        "provider.overhead_per_month": p["overhead_per_month"] * k,
        "provider.credit.limit": p["credit"]["limit"] * k,
    }, "bench")
    return raw, p["name"]


def chain() -> tuple[dict, str]:
    raw = load_raw(ROOT / "scenarios" / "supply_chain" / "outcome_pass_through.yaml")
    k = CLIENTS / (raw["referrals"]["rate"] * 24)
    sets = {"referrals.rate": CLIENTS / 24, "contract.value": raw["contract"]["value"] * k}
    for o in raw["organisations"]:
        sets[f"organisations[name={o['name']}].capacity"] = int(o["capacity"] * k)
        sets[f"organisations[name={o['name']}].opening_cash"] = o["opening_cash"] * k
    return apply_overrides(raw, sets, "bench"), "east_charity"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replications", type=int, default=500)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chain", action="store_true")
    ap.add_argument("--reverse", action="store_true")
    args = ap.parse_args()
    raw, org = chain() if args.chain else single_provider()
    t = time.perf_counter()
    res = run_stress_test(raw, org, replications=args.replications, seed=0, executor="process", workers=args.workers,
                          reverse=args.reverse, reverse_replications=min(args.replications, 200))
    elapsed = time.perf_counter() - t
    runs = res.timing["replications_run"] + ((res.reverse or {}).get("replications_run") or 0)
    print(json.dumps({
        "contract": "supply chain (4 organisations)" if args.chain else "single provider",
        "organisation": org, "stresses": len(res.rows) - 1, "replications": args.replications,
        "workers": args.workers, "cores": len(os.sched_getaffinity(0)), "load_average_1min": os.getloadavg()[0],
        "replication_runs": runs, "seconds": round(elapsed, 1), "ms_per_replication_per_worker":
        round(1000 * elapsed * args.workers / max(runs, 1), 1), **{k: v for k, v in res.timing.items()},
    }, indent=2))
    print(f"default stress run: {elapsed:.1f} s")


if __name__ == "__main__":
    main()
