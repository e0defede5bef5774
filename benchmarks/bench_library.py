"""The scenario library: run time per archetype, the cost of the contract features, and calibration time.

Run: python benchmarks/bench_library.py [--replications 100]

For each file in scenarios/library: clients per replication, seconds for `replications` Monte Carlo
replications (engine, tables and summary, as `pbrsim run` does without writing), and seconds for an exact
`pbrsim calibrate --check` of its targets. Then the feature overhead: the engine benchmark's scenario
(bench_engine.big_scenario) with and without a per-person cap, tariffs by entry year and deadweight on
every payment line, which moves claims from per-segment to per-client amounts.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LIBRARY = HERE.parent / "scenarios" / "library"
TARGETS = LIBRARY / "targets"


def _targets_for(path: Path) -> Path | None:
    from pbrsim.scenario.schema import read_yaml

    own = TARGETS / f"{path.stem}.targets.yaml"
    if own.exists():
        return own
    parent = read_yaml(path).get("extends")
    return _targets_for((path.parent / parent).resolve()) if parent else None


def library(replications: int) -> list[dict]:
    from pbrsim.library.calibrate import check_targets
    from pbrsim.scenario.schema import load_scenario
    from pbrsim.simulate import simulate

    rows = []
    for path in sorted(LIBRARY.glob("*.yaml")):
        sc = load_scenario(path)
        t0 = time.perf_counter()
        res = simulate(sc, seed=7, replications=replications)
        t_run = time.perf_counter() - t0
        targets = _targets_for(path)
        t0 = time.perf_counter()
        met = check_targets(sc, targets)["met"].all() if targets else None
        t_cal = time.perf_counter() - t0
        rows.append({"file": path.name, "clients": len(res.clients) // replications, "seconds": t_run,
                     "check_seconds": t_cal, "met": met})
    return rows


def features(clients: int) -> list[tuple[str, float, int]]:
    from pbrsim.engine.run import compile_model, run_replication
    from pbrsim.scenario.schema import scenario_from_dict

    spec = importlib.util.spec_from_file_location("bench_engine", HERE / "bench_engine.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    plain = mod.big_scenario(clients)
    dressed = mod.big_scenario(clients)
    dressed["contract"]["per_person_cap"] = 2500
    for rule in dressed["contract"]["payments"]:
        tariff = rule.pop("tariff")
        rule["tariff_by_year"] = [tariff, tariff]
        rule["year_basis"] = "entry"
        rule["deadweight"] = 0.1
    out = []
    for label, d in (("plain tariffs", plain), ("cap + entry-year tariffs + deadweight", dressed)):
        model = compile_model(scenario_from_dict(d, "<bench>"))
        run_replication(model, seed=0, replication=0)  # warm-up
        t0 = time.perf_counter()
        r = run_replication(model, seed=1, replication=0)
        out.append((label, time.perf_counter() - t0, r.client_months))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replications", type=int, default=100)
    ap.add_argument("--clients", type=int, default=200_000, help="clients for the feature-overhead comparison")
    args = ap.parse_args()
    print(f"scenario library, {args.replications} replications each (seed 7)")
    print(f"{'file':<38} {'clients/run':>11} {'run s':>7} {'check s':>8} {'targets':>8}")
    for r in library(args.replications):
        met = "–" if r["met"] is None else ("met" if r["met"] else "NOT MET")
        print(f"{r['file']:<38} {r['clients']:>11,} {r['seconds']:>7.1f} {r['check_seconds']:>8.3f} {met:>8}")
    print(f"\nfeature overhead, {args.clients:,} clients, one replication")
    base = None
    for label, t, months in features(args.clients):
        base = base or t
        print(f"{label:<40} {t:>6.2f} s {months / t / 1e6:>6.2f} M client-months/s {t / base:>5.2f}x")


if __name__ == "__main__":
    main()
