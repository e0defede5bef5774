"""The memory model behind the input limits (src/pbrsim/scenario/limits.py): peak memory of ``pbrsim run``
per client and per organisation-month kept, measured against the model's estimate.

Run: python benchmarks/bench_limits.py [--quick]
Each size runs ``pbrsim run`` in a fresh process (with --allow-large, so the limits do not stop it) and
reads its peak resident memory; the baseline is a 1-client run. The coefficients in limits.py should stay
above the measured bytes per unit (the estimate is meant to be an upper bound).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from pbrsim.scenario import limits  # noqa: E402


def chain(states: int, rate: float, months: int) -> dict:
    """One segment, a chain of ``states`` states (the last absorbing), fixed referrals of ``rate`` a month."""
    names = [f"s{i}" for i in range(states - 1)] + ["done"]
    rows = {s: {s: 0.95, names[i + 1]: 0.05} for i, s in enumerate(names[:-1])}
    return {"name": "bench", "months": months, "referrals": {"rate": rate, "distribution": "fixed"},
            "segments": {"a": {"share": 1.0}},
            "pathway": {"states": names, "initial_state": "s0", "absorbing": ["done"],
                        "transitions": {"a": {"full": rows, "minimal": rows}}},
            "contract": {"payments": [{"name": "p", "kind": "outcome", "state": "done", "tariff": 100, "lag": 2}]},
            "provider": {"opening_cash": 1000, "cost_per_client_month": {"full": 10, "minimal": 5}}}


def peak_mb(scenario: dict, replications: int, tmp: Path) -> tuple[float, float]:
    f = tmp / "bench.yaml"
    f.write_text(yaml.safe_dump(scenario))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    code = ("import resource, sys; from pbrsim.cli.main import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)")
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code, "run", str(f), "-n", str(replications), "--quiet", "--allow-large",
                        "--out", str(tmp / "out")], capture_output=True, text=True, env=env)
    return int(p.stderr.strip().splitlines()[-1]) / 1024, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a minute instead of several)")
    args = ap.parse_args()
    q = 10 if args.quick else 1
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        base, _ = peak_mb(chain(6, 1, 12), 1, tmp)
        print(f"baseline (1 client): {base:.0f} MB")
        print(f"{'case':44s} {'MB':>7s} {'bytes/unit':>11s} {'model':>7s}  seconds")
        for states in (6, 60):
            rate, reps = 100_000 // q, 10
            mb, s = peak_mb(chain(states, rate, 12), reps, tmp)
            units = rate * 12 * reps
            model = limits.BYTES_PER_CLIENT + limits.BYTES_PER_CLIENT_STATE * (states + 1)
            print(f"{units:>12,} clients, {states + 1:3d} states            {mb:7.0f} {(mb - base) * 2**20 / units:11.1f} {model:7d}  {s:.1f}")
        for states in (6, 60):
            reps = 1000 // q
            mb, s = peak_mb(chain(states, 0.001, 600), reps, tmp)
            units = 603 * reps
            model = limits.BYTES_PER_ORG_MONTH + limits.BYTES_PER_ORG_MONTH_STATE * (states + 1)
            print(f"{units:>12,} organisation-months, {states + 1:3d} states {mb:7.0f} {(mb - base) * 2**20 / units:11.1f} {model:7d}  {s:.1f}")


if __name__ == "__main__":
    main()
