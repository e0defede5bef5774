"""End-to-end times of the commands users wait for, each as a ratio against a plain numpy reference.

Run: python benchmarks/bench_pipeline.py [--only startup run compare stress] [--repeat 3] [--src DIR]

``--src DIR`` times the commands of another checkout's ``src`` (say, an earlier commit exported with
``git archive``) against the same reference, for a before/after comparison in one session.

Cases (each the real command, run as a fresh `pbrsim` process, output to a temporary folder):

- startup: `pbrsim --version`, `pbrsim validate scenarios/blended_vcs.yaml` and `python -c "import pbrsim"`;
  reference: `python -c "import numpy"` (Python start-up plus numpy); `python -c pass` is printed for scale.
  Goal: each command under 0.3 s. As on a user's machine after a first command, pbrsim's bytecode and its
  scenario schema's validators (scenario/compiled.py) are in place before anything is timed.
- run: `pbrsim run scenarios/blended_vcs.yaml -n 200` (simulate, figures, summary, Parquet tables); goal 1.5 s.
- compare: `pbrsim compare scenarios/experiments/vcs_designs.yaml` (9 designs x 200 replications); goal 20 s.
- stress: `pbrsim stress` with its defaults (12 stresses + the base, 500 replications each) on the contract of
  benchmarks/bench_stress.py (blended_vcs.yaml scaled to ~2,000 clients over 24 months); goal 30 s.

The numpy reference for run / compare / stress is the same outcome pathway (the scenario's segments,
states and transition matrices, full service) simulated by a plain time-stepped numpy loop over the same
replications and referral counts: one uniform per active client-month and a cumulative-row lookup,
nothing else — no money, no records, no figures. It runs on one core in this process, timed before and
after each command (the mean of the two is the reference; for stress it is timed on 50 of the runs and
scaled). Two ratios are printed: wall clock (what a user waits) and CPU time (the command and all its
worker processes, against the reference's: steadier on a shared machine). Seconds are printed beside the
goal with the load average, since the goals are absolute.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
sys.path.insert(0, str(SRC))
sys.path.insert(0, str(ROOT / "benchmarks"))

ENV = {**os.environ, "PYTHONPATH": str(SRC)}
PBRSIM = [sys.executable, "-c", "import sys; from pbrsim.cli.main import main; sys.exit(main())"]


# ---------------------------------------------------------------------------------------------
# The plain numpy reference: the scenario's chain, time-stepped


def chain(raw: dict):
    """(cumulative transition rows [G, S, S] at full service, absorbing [S], initial state, expected referrals [T, G])."""
    from pbrsim.engine.referrals import expected_counts
    from pbrsim.model.pathway import FULL, compile_pathway
    from pbrsim.scenario.schema import scenario_from_dict

    sc = scenario_from_dict(raw, "<bench>")
    pw = compile_pathway(sc)
    return pw.cum[:, FULL], pw.absorbing, pw.initial, expected_counts(sc), sc.referrals.distribution == "fixed"


def reference(raw: dict, replications: int, seed: int = 0) -> tuple[float, float]:
    """(wall, CPU) seconds for a plain numpy loop to move ``replications`` replications of the scenario's
    clients through its pathway month by month (Poisson or fixed referrals, one uniform per active client-month)."""
    cum, absorbing, initial, lam, fixed = chain(raw)
    T, G = lam.shape
    t0, c0 = time.perf_counter(), time.process_time()
    for r in range(replications):
        gen = np.random.default_rng([seed, r])
        counts = lam.astype(np.int64) if fixed else gen.poisson(lam)
        seg = np.repeat(np.tile(np.arange(G), T), counts.reshape(-1))
        month = np.repeat(np.repeat(np.arange(T), G), counts.reshape(-1))
        state = np.full(len(seg), initial, dtype=np.int64)
        for t in range(T):
            active = np.flatnonzero((month <= t) & ~absorbing[state])
            u = gen.random(len(active))
            rows = cum[seg[active], state[active]]
            state[active] = (rows <= u[:, None]).sum(axis=1)
    return time.perf_counter() - t0, time.process_time() - c0


# ---------------------------------------------------------------------------------------------
# Timing commands


def timed(args: list[str], cwd: Path) -> tuple[float, float | None]:
    """(wall, CPU) seconds of a command. Wall time is from start to exit (the process is waited for, not
    polled); CPU is the processor time of the command and every process it starts (pool workers too),
    sampled every 0.05 s on a thread with psutil (comes with the dask extra); None without it."""
    import threading

    try:
        import psutil
    except ImportError:
        psutil = None
    seen: dict[int, float] = {}
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL)

    def sample():
        root = psutil.Process(proc.pid)
        while proc.returncode is None:
            try:
                for p in [root] + root.children(recursive=True):
                    try:
                        c = p.cpu_times()
                        seen[p.pid] = c.user + c.system
                    except psutil.Error:
                        pass
            except psutil.Error:
                pass
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True) if psutil is not None else None
    if sampler:
        sampler.start()
    code = proc.wait()
    wall = time.perf_counter() - t0
    if sampler:
        sampler.join()
    if code:
        raise SystemExit(f"{' '.join(args[3:])} failed ({code})")
    return wall, (sum(seen.values()) if psutil is not None else None)


def against_reference(label: str, command: list[str], raw: dict, replications: int, goal: float, cwd: Path,
                      sample: int | None = None) -> None:
    """Time ``command`` between two reference runs; print seconds, the goal and the ratios.

    Wall-clock ratio: what a user waits, against the reference's wall time. CPU ratio: processor time of
    the command and every worker it waited for, against the reference's; steadier on a shared machine.
    """
    n = sample or replications
    scale = replications / n
    first = reference(raw, n)
    wall, cpu = timed(command, cwd)
    second = reference(raw, n)
    r_wall, r_cpu = (first[0] + second[0]) / 2 * scale, (first[1] + second[1]) / 2 * scale
    cpu_text = "" if cpu is None else f"   CPU {cpu:7.1f} s  reference {r_cpu:6.2f} s  ratio {cpu / r_cpu:6.2f}"
    print(f"{label:<36} {wall:8.2f} s  (goal {goal:>5.1f} s: {'met' if wall <= goal else 'NOT met'})  "
          f"reference {r_wall:7.2f} s  ratio {wall / r_wall:6.2f}{cpu_text}", flush=True)


def startup(repeat: int, cwd: Path) -> None:
    def best(args):
        return min(timed(args, cwd)[0] for _ in range(repeat))

    bare = best([sys.executable, "-c", "pass"])
    print(f"{'python -c pass (for scale)':<34} {bare:8.3f} s", flush=True)
    ref = best([sys.executable, "-c", "import numpy"])
    print(f"{'reference: python -c import numpy':<34} {ref:8.3f} s", flush=True)
    for label, args in (("pbrsim --version", PBRSIM + ["--version"]),
                        ("pbrsim validate blended_vcs", PBRSIM + ["validate", str(ROOT / "scenarios" / "blended_vcs.yaml")]),
                        ("python -c 'import pbrsim'", [sys.executable, "-c", "import pbrsim"])):
        t = best(args)
        print(f"{label:<34} {t:8.3f} s  (goal   0.3 s: {'met' if t <= 0.3 else 'NOT met'})   ratio {t / ref:6.2f}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", default=["startup", "run", "compare", "stress"])
    ap.add_argument("--repeat", type=int, default=3, help="start-up: best of this many runs (the other cases run once)")
    ap.add_argument("--src", type=Path, default=SRC, help="the pbrsim source folder whose commands are timed")
    args = ap.parse_args()
    ENV["PYTHONPATH"] = str(args.src.resolve())
    print(f"timing pbrsim from {args.src}")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory(prefix="bench_pipeline-") as tmp:
        tmp = Path(tmp)
        # as on a user's machine: pbrsim's modules compiled to bytecode once (into src/**/__pycache__, which git
        # ignores), not at every command, as an environment with PYTHONDONTWRITEBYTECODE would otherwise do; the
        # installed packages' bytecode is where pip put it
        ENV.pop("PYTHONDONTWRITEBYTECODE", None)
        ENV.pop("PYTHONPYCACHEPREFIX", None)
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(args.src.resolve())], env=ENV, check=True,
                       stdout=subprocess.DEVNULL)
        # ... and the scenario schema's validators kept beside it (scenario/compiled.py), as after a first command
        subprocess.run(PBRSIM + ["validate", str(ROOT / "scenarios" / "blended_vcs.yaml")], env=ENV, check=True,
                       stdout=subprocess.DEVNULL)
        if "startup" in args.only:
            startup(args.repeat, tmp)
        if "run" in args.only:
            raw = yaml.safe_load((ROOT / "scenarios" / "blended_vcs.yaml").read_text())
            against_reference("pbrsim run blended_vcs -n 200", PBRSIM + ["run", str(ROOT / "scenarios" / "blended_vcs.yaml"), "-n", "200",
                              "--quiet", "--out", str(tmp / "run")], raw, 200, 1.5, tmp)
        if "compare" in args.only:
            from pbrsim.experiments.experiment import load_experiment

            exp = load_experiment(ROOT / "scenarios" / "experiments" / "vcs_designs.yaml")
            raw = exp.baseline.raw
            against_reference(f"pbrsim compare vcs_designs ({exp.runs} runs)", PBRSIM + ["compare", str(exp.path), "--quiet"],
                              raw, exp.runs, 20.0, tmp)
        if "stress" in args.only:
            from bench_stress import single_provider

            raw, org = single_provider()
            path = tmp / "stress_contract.yaml"
            path.write_text(yaml.safe_dump(raw, sort_keys=False))
            from pbrsim.stress.catalogue import BUILT_IN_NAMES

            runs = 500 * (len(BUILT_IN_NAMES) + 1)
            against_reference(f"pbrsim stress (defaults, {runs} runs)", PBRSIM + ["stress", str(path), "--quiet", "--out", str(tmp / "stress")],
                              raw, runs, 30.0, tmp, sample=50)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
