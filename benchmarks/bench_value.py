"""Public value: what the counterfactual and the appraisal add to a run, as ratios of the run without them.

Run: python benchmarks/bench_value.py [--replications 20]

For each scenario with a value section (scenarios/early_action and the Work Programme archetype): seconds for
`replications` Monte Carlo replications with the value section (engine, tables, summary and the appraisal,
which runs the counterfactual of every replication) and without it, and their ratio; then the seconds for
exact mode's expected value.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILES = [ROOT / "scenarios" / "early_action" / "boilers_on_prescription.yaml",
         ROOT / "scenarios" / "early_action" / "homes_for_good.yaml",
         ROOT / "scenarios" / "library" / "work_programme.yaml"]


def main() -> None:
    from pbrsim.engine.exact import ExactNotApplicable
    from pbrsim.engine.run import compile_model
    from pbrsim.scenario.schema import load_raw, scenario_from_dict
    from pbrsim.simulate import simulate
    from pbrsim.value.exact import expected_value

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--replications", type=int, default=20)
    n = ap.parse_args().replications
    print(f"{'scenario':<28}{'with value s':>14}{'without s':>11}{'ratio':>8}{'exact s':>9}")
    for path in FILES:
        raw = load_raw(path)
        with_value = scenario_from_dict(raw, str(path))
        without = scenario_from_dict({k: v for k, v in raw.items() if k != "value"}, str(path))
        times = []
        for sc in (with_value, without):
            t0 = time.perf_counter()
            simulate(sc, seed=1, replications=n)
            times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        try:
            expected_value(compile_model(with_value))
            exact = f"{time.perf_counter() - t0:9.2f}"
        except ExactNotApplicable:
            exact = f"{'n/a':>9}"
        print(f"{path.stem:<28}{times[0]:14.2f}{times[1]:11.2f}{times[0] / times[1]:8.2f}{exact}")


if __name__ == "__main__":
    main()
