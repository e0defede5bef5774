"""Batch throughput, as ratios against a plain numpy reference loop of the same chain timed in the same run.

Two measurements, each in a fresh process, each with chunks (the default) and with one replication per task
and per file (``--chunk 1``, how batches ran before chunks):

1. ``pbrsim compare scenarios/experiments/vcs_designs.yaml`` end to end (9 designs x 200 replications of the
   ~290-client shipped contract; per-replication figures only);
2. a batch of 4 designs x ``--replications`` of a 2,000-client contract (blended_vcs scaled up: exactly 2,000
   referrals over two years, value, capacity, reserves and overheads scaled alike), every table written, on
   each of ``--workers``.

The reference is a plain numpy time-stepped loop of the same pathway (the same segments, full-service
transition rows, referrals, months and time limit), run for the same number of replications and clients in
this process, timed before and after each measurement (interleaved) and averaged. A ratio is the measured
wall time over the reference's time for the same work: how many times slower than bare numpy on one core
the whole pipeline (engine, figures, Parquet, processes) is. Ratios hold up on a loaded machine; seconds
do not. The datasets of different worker counts and chunk sizes are checked to hold the same rows.

Run: python benchmarks/bench_batch.py [--replications 250] [--workers 1 2] [--chunks auto 1] [--skip-compare]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = 2_000
VCS = ROOT / "scenarios" / "experiments" / "vcs_designs.yaml"


# ---------------------------------------------------------------------------------------------
# The contract and the experiment


def big_base() -> dict:
    d = copy.deepcopy(yaml.safe_load((ROOT / "scenarios" / "blended_vcs.yaml").read_text()))
    scale = CLIENTS / (12 * 24)  # the shipped contract has ~288 referrals
    d["name"] = "blended_vcs_2000"
    d["referrals"] = {"rate": CLIENTS / 24, "start": 0, "end": 24, "distribution": "fixed"}
    d["contract"]["value"] = round(d["contract"]["value"] * scale)
    d["contract"]["cap"] = round(d["contract"]["cap"] * scale)
    p = d["provider"]
    p["opening_cash"] = round(p["opening_cash"] * scale)
    p["overhead_per_month"] = round(p["overhead_per_month"] * scale)
    p["capacity"] = round(p["capacity"] * scale)
    p["credit"]["limit"] = round(p["credit"]["limit"] * scale)
    return d


def experiment(replications: int) -> dict:
    return {
        "name": "bench_batch",
        "description": "4 designs of a 2,000-client contract",
        "base": "base.yaml",
        "seed": 1,
        "replications": replications,
        "designs": [
            {"name": "blended", "baseline": True},
            {"name": "outcomes_only",
             "remove": ["contract.service_fee", "contract.payments[name=work_ready]", "contract.payments[name=job_start]"],
             "set": {"contract.payments[name=in_work_support].tariff": 250,
                     "contract.payments[name=sustained_job].tariff": {"job_ready": 3300, "moderate": 4400, "complex": 6600}}},
            {"name": "upfront_50", "set": {"contract.service_fee.share_of_value": 0.5}},
            {"name": "upfront_10", "set": {"contract.service_fee.share_of_value": 0.1}},
        ],
    }


# ---------------------------------------------------------------------------------------------
# The plain numpy reference


class Reference:
    """A time-stepped numpy loop of a scenario's pathway: referrals, full-service transitions, the time limit."""

    def __init__(self, raw: dict):
        pw = raw["pathway"]
        self.states = pw["states"]
        index = {s: i for i, s in enumerate(self.states)}
        segments = list(raw["segments"])
        S, G = len(self.states), len(segments)
        P = np.zeros((G, S, S))
        for g, seg in enumerate(segments):
            for s, name in enumerate(self.states):
                row = pw["transitions"][seg]["full"].get(name)
                if row is None:
                    P[g, s, s] = 1.0
                    continue
                for to, p in row.items():
                    P[g, s, index[to]] += p
                P[g, s, s] += 1.0 - P[g, s].sum()
        self.cum = np.cumsum(P, axis=2)
        self.cum[:, :, -1] = 1.0
        self.absorbing = np.isin(np.arange(S), [index[s] for s in pw["absorbing"]])
        self.exit_state, self.initial = index[pw["exit_state"]], index[pw["initial_state"]]
        self.limit = pw.get("max_months_on_programme") or 10**9
        self.outcome = index[raw["contract"].get("primary_outcome") or pw["absorbing"][0]]
        self.shares = np.array([raw["segments"][s]["share"] for s in segments])
        ref = raw["referrals"]
        self.months = raw["months"]
        self.lam = np.zeros(self.months)
        self.lam[ref.get("start", 0):ref.get("end") or self.months] = ref["rate"]

    def replication(self, seed: int, rep: int) -> int:
        """One replication; returns the number of clients who reached the primary outcome."""
        rng = np.random.default_rng([seed, rep])
        counts = rng.poisson(self.lam[:, None] * self.shares[None, :])
        month = np.repeat(np.repeat(np.arange(self.months), counts.shape[1]), counts.ravel())
        seg = np.tile(np.repeat(np.arange(counts.shape[1]), 1), self.months).repeat(counts.ravel())
        state = np.full(len(month), self.initial)
        first = np.full((len(month), len(self.states)), -1, dtype=np.int32)
        caseload = np.zeros((self.months, len(self.states)), dtype=np.int64)
        for m in range(self.months):
            active = np.flatnonzero((month <= m) & ~self.absorbing[state])
            s, g = state[active], seg[active]
            nxt = (rng.random(len(active))[:, None] > self.cum[g, s]).sum(axis=1)
            nxt[(m - month[active] + 1 >= self.limit) & ~self.absorbing[nxt]] = self.exit_state
            moved = nxt != s
            state[active] = nxt
            who = active[moved]
            fresh = first[who, nxt[moved]] < 0
            first[who[fresh], nxt[moved][fresh]] = m
            caseload[m] = np.bincount(state[month <= m], minlength=len(self.states))
        return int((first[:, self.outcome] >= 0).sum())

    def time(self, replications: int, seed: int = 1) -> float:
        t0 = time.perf_counter()
        for r in range(replications):
            self.replication(seed, r)
        return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------
# Measurements, each in a fresh process


def child_batch(exp_path: str, out: str, workers: int, chunk: str) -> None:
    """One batch in this process; prints a JSON line with its timing and the driver's peak memory."""
    from pbrsim.experiments.batch import run_batch
    from pbrsim.experiments.experiment import load_experiment

    exp = load_experiment(exp_path)
    t0 = time.perf_counter()
    manifest = run_batch(exp, out, executor="process", workers=workers, chunk=None if chunk == "auto" else int(chunk))
    seconds = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"runs": exp.runs, "seconds": seconds, "chunk": manifest.get("chunk", 1),
                      "driver_cpu_seconds": usage.ru_utime + usage.ru_stime, "driver_peak_mib": usage.ru_maxrss / 1024}))


def files_in(out: Path) -> tuple[int, float]:
    files = [p for p in (out / "runs").rglob("*.parquet")]
    return len(files), sum(p.stat().st_size for p in files) / 2**20


def run_batch_child(exp_path: Path, out: Path, workers: int, chunk: str) -> dict:
    cmd = [sys.executable, __file__, "--child", str(exp_path), str(out), str(workers), chunk]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    tree_peak = None
    try:
        import psutil

        root = psutil.Process(proc.pid)
        tree_peak = 0
        while proc.poll() is None:
            try:
                procs = [root] + root.children(recursive=True)
                tree_peak = max(tree_peak, sum(p.memory_info().rss for p in procs if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.1)
    except ImportError:
        pass
    stdout, _ = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"batch with {workers} workers failed ({proc.returncode})")
    res = json.loads(stdout.strip().splitlines()[-1])
    res["files"], res["dataset_mib"] = files_in(out)
    res["tree_peak_mib"] = tree_peak / 2**20 if tree_peak else None
    return res


def run_compare(out: Path, chunk: str) -> dict:
    cmd = [sys.executable, "-m", "pbrsim", "compare", str(VCS), "--out", str(out), "--quiet"]
    if chunk != "auto":
        cmd += ["--chunk", chunk]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    seconds = time.perf_counter() - t0
    files, mib = files_in(out)
    return {"seconds": seconds, "files": files, "dataset_mib": mib,
            "chunk": json.loads((out / "manifest.json").read_text()).get("chunk", 1)}


def same_rows(a: Path, b: Path) -> bool:
    import pandas as pd

    from pbrsim.experiments.dataset import read_table, tables_present

    if tables_present(a) != tables_present(b):
        return False
    try:
        for t in tables_present(a):
            pd.testing.assert_frame_equal(read_table(a, t), read_table(b, t), check_exact=True)
    except AssertionError:
        return False
    return True


def interleaved(ref: Reference, replications: int, measure) -> tuple[dict, float]:
    """``measure()`` between two timings of the reference; returns its result and the mean reference time."""
    before = ref.time(replications)
    result = measure()
    after = ref.time(replications)
    return result, (before + after) / 2


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_batch(*sys.argv[2:4], int(sys.argv[4]), sys.argv[5])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--replications", type=int, default=250)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--chunks", nargs="+", default=["auto", "1"], help="chunk sizes to compare ('auto' = the default)")
    ap.add_argument("--skip-compare", action="store_true", help="skip `pbrsim compare vcs_designs`")
    args = ap.parse_args()
    try:
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
    except (AttributeError, OSError):
        pass
    with tempfile.TemporaryDirectory(prefix="bench_batch-") as tmp:
        tmp = Path(tmp)
        if not args.skip_compare:
            vcs = yaml.safe_load(VCS.read_text())
            base = yaml.safe_load((VCS.parent / vcs["base"]).read_text())
            runs = vcs["replications"] * 9
            ref = Reference(base)
            print(f"\npbrsim compare vcs_designs: {runs} replications of a ~{base['referrals']['rate'] * 24:.0f}-client "
                  f"contract, per-replication figures only (reference: the same {runs} replications in plain numpy)")
            outs = {}
            for chunk in args.chunks:
                outs[chunk] = tmp / f"vcs-{chunk}"
                r, t_ref = interleaved(ref, runs, lambda: run_compare(outs[chunk], chunk))
                print(f"  chunk {chunk:>4} (= {r['chunk']}): {r['seconds']:6.1f} s, {r['files']:>5} files, reference "
                      f"{t_ref:5.2f} s -> {r['seconds'] / t_ref:5.1f}x the numpy reference")
            if len(outs) > 1:
                first = next(iter(outs.values()))
                print(f"  same rows for every chunk size: {'yes' if all(same_rows(first, o) for o in outs.values()) else 'NO'}")

        (tmp / "base.yaml").write_text(yaml.safe_dump(big_base(), sort_keys=False))
        exp_path = tmp / "bench_batch.yaml"
        exp_path.write_text(yaml.safe_dump(experiment(args.replications), sort_keys=False))
        runs = 4 * args.replications
        ref = Reference(big_base())
        print(f"\nbatch: 4 designs x {args.replications} replications of a {CLIENTS:,}-client contract, every table "
              f"written (reference: {runs} replications in plain numpy)")
        outs = {}
        for w in args.workers:
            for chunk in args.chunks:
                out = outs[(w, chunk)] = tmp / f"out-{w}-{chunk}"
                r, t_ref = interleaved(ref, runs, lambda: run_batch_child(exp_path, out, w, chunk))
                tree = f"{r['tree_peak_mib']:.0f} MiB" if r["tree_peak_mib"] else "n/a (install psutil)"
                print(f"  {w} worker{'s' if w > 1 else ' '}, chunk {chunk:>4} (= {r['chunk']}): {r['seconds']:6.1f} s = "
                      f"{r['runs'] / r['seconds']:6.1f} runs/s; {r['seconds'] / t_ref:5.1f}x the numpy reference "
                      f"({t_ref:.2f} s); {r['files']:>5} files, {r['dataset_mib']:.0f} MiB; peak memory: driver "
                      f"{r['driver_peak_mib']:.0f} MiB, all processes {tree}; driver busy "
                      f"{100 * r['driver_cpu_seconds'] / r['seconds']:.0f}% of the time")
        if len(outs) > 1:
            first = next(iter(outs.values()))
            same = all(same_rows(first, o) for o in outs.values())
            print(f"  same rows for every worker count and chunk size: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
