"""Batch throughput: runs per second on 1 and 2 worker processes, speed-up, and peak memory.

The batch: 4 designs x 250 replications of a 2,000-client contract (scenarios/blended_vcs.yaml scaled up:
exactly 2,000 referrals over two years, contract value, capacity, reserves and overheads scaled alike),
every table written, as `pbrsim batch` does it.

Run: python benchmarks/bench_batch.py [--replications 250] [--workers 1 2]

Each worker count runs in a fresh process (so its peak memory is its own) writing a fresh dataset. Peak
memory is reported for the driver (ru_maxrss) and, when psutil is installed (it comes with the dask
extra), for the whole process tree (driver + fork server + workers, sampled every 0.1 s). The datasets
of the different worker counts are compared file by file: they must hold identical data.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = 2_000


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


def child(exp_path: str, out: str, workers: int) -> None:
    """One batch in this process; prints a JSON line with its timing and the driver's peak memory."""
    from pbrsim.experiments.batch import run_batch
    from pbrsim.experiments.experiment import load_experiment

    exp = load_experiment(exp_path)
    t0 = time.perf_counter()
    run_batch(exp, out, executor="process", workers=workers)
    seconds = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"runs": exp.runs, "seconds": seconds, "driver_cpu_seconds": usage.ru_utime + usage.ru_stime,
                      "driver_peak_mib": usage.ru_maxrss / 1024}))


def measure(exp_path: Path, out: Path, workers: int) -> dict:
    cmd = [sys.executable, __file__, "--child", str(exp_path), str(out), str(workers)]
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
    res["workers"] = workers
    res["runs_per_second"] = res["runs"] / res["seconds"]
    res["tree_peak_mib"] = tree_peak / 2**20 if tree_peak else None
    res["dataset_mib"] = sum(p.stat().st_size for p in (out / "runs").rglob("*.parquet")) / 2**20
    return res


def same_data(a: Path, b: Path) -> bool:
    import pyarrow.parquet as pq

    fa = sorted(p.relative_to(a) for p in (a / "runs").rglob("*.parquet"))
    fb = sorted(p.relative_to(b) for p in (b / "runs").rglob("*.parquet"))
    return fa == fb and all(pq.read_table(a / f).equals(pq.read_table(b / f)) for f in fa)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--replications", type=int, default=250)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_batch-") as tmp:
        tmp = Path(tmp)
        (tmp / "base.yaml").write_text(yaml.safe_dump(big_base(), sort_keys=False))
        exp_path = tmp / "bench_batch.yaml"
        exp_path.write_text(yaml.safe_dump(experiment(args.replications), sort_keys=False))
        try:
            import os

            print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
        except (AttributeError, OSError):
            pass
        print(f"4 designs x {args.replications} replications of a {CLIENTS:,}-client contract, every table written "
              "(executor: process pool)")
        results = []
        for w in args.workers:
            r = measure(exp_path, tmp / f"out{w}", w)
            results.append(r)
            tree = f"{r['tree_peak_mib']:.0f} MiB" if r["tree_peak_mib"] else "n/a (install psutil)"
            print(f"  {w} worker{'s' if w > 1 else ' '}: {r['runs']} runs in {r['seconds']:.1f} s = {r['runs_per_second']:.2f} runs/s; "
                  f"peak memory: driver {r['driver_peak_mib']:.0f} MiB, all processes {tree}; dataset {r['dataset_mib']:.0f} MiB on disk; "
              f"driver busy {100 * r['driver_cpu_seconds'] / r['seconds']:.0f}% of the time")
        base = results[0]
        for r in results[1:]:
            print(f"  speed-up {r['workers']} vs {base['workers']} workers: {r['runs_per_second'] / base['runs_per_second']:.2f}x")
        if len(results) > 1:
            same = all(same_data(tmp / f"out{results[0]['workers']}", tmp / f"out{r['workers']}") for r in results[1:])
            print(f"  identical data across worker counts: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
