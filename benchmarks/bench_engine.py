"""Engine speed against a plain event-driven numpy loop over the same chain, timed in the same process.

The chain is blended_vcs (3 segments, 8 states plus `dropped_provider_failure`, a 24-month programme
limit) stretched to N referrals over 48 months of a 60-month contract, with no capacity limit and no cap
(every client in a service state gets full service). The reference (``reference``) simulates only that
chain: each client's holding time in a state drawn as one geometric number, then its next state, until
it is absorbed, exits at the programme limit or the contract ends; it counts client-months the engine's
way. The engine does everything else too (claims, settlements, ledger, cash, invariants).

Three measurements, each a median over ``--repeat`` runs with engine and reference interleaved (CPU
seconds of this process):

* big: one replication of 1,000,000 clients; the engine's throughput as a share of the reference's
  (target >= 1/3), and peak memory of a fresh process running the engine and building its tables
  (target <= 300 MiB);
* small: replications of 1,000 clients; engine time per replication (a batch of ``--small-reps`` run
  together, and one replication alone) over the reference's time for one replication (target <= 3);
* many: 500 replications of 2,000 clients in batches (target <= 2 s), and its ratio to the reference
  looping over the replications.

Run: python benchmarks/bench_engine.py [--only big small many] [--repeat 5]
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
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


def model_for(clients: int):
    from pbrsim.engine.run import compile_model
    from pbrsim.scenario.schema import scenario_from_dict

    return compile_model(scenario_from_dict(big_scenario(clients), "<bench>"))


def reference(model, seed: int) -> int:
    """Event-driven simulation of the model's chain (full service in service states, minimal elsewhere) for
    one replication's referrals; returns client-months (active clients at each month's review).

    Each round handles every client still on the programme once: how long it stays in its state (a
    geometric number of months: an exponential draw over -log of the stay probability), then where it
    goes (a uniform placed in the cumulative row of moves out of the state, all rows searched at once
    with rows offset by their index); the programme limit and the contract end cut the stay short. First
    months in each state and end months are recorded, as the engine does."""
    pw, T = model.pathway, model.months
    from pbrsim.engine.referrals import expected_counts

    counts = expected_counts(model.scenario).astype(np.int64)  # fixed referrals [T, G]
    S, G = pw.n_states, len(pw.segments)
    r = np.random.default_rng(seed)
    seg = np.repeat(np.tile(np.arange(G), T), counts.reshape(-1))
    ref = np.repeat(np.arange(T), counts.sum(axis=1))
    level = np.where(pw.service, 0, 1)
    Q = pw.P[:, level, np.arange(S), :]  # [G, S, S]: each state's row at its level
    stay = Q[:, np.arange(S), np.arange(S)].reshape(-1)
    move = Q.copy()
    move[:, np.arange(S), np.arange(S)] = 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        cum = np.nan_to_num(np.cumsum(move, axis=2) / (1.0 - stay.reshape(G, S))[:, :, None])
        rate = np.maximum(-np.log(stay), 1e-300)  # a state never left stays "forever"
    cum[..., -1] = 1.0
    offset_cum = (cum.reshape(G * S, S) + np.arange(G * S)[:, None]).reshape(-1)  # row k's entries in [k, k + 1]
    M = pw.max_months if pw.max_months is not None else 10**6
    n = len(seg)
    state = np.full(n, pw.initial, dtype=np.int64)
    first = np.full(n * S, -1, dtype=np.int16)  # first month in each state, [client, state] flattened
    first[np.arange(n) * S + pw.initial] = ref
    seg_rows = seg * S
    end = np.full(n, -1, dtype=np.int16)
    t_next = ref.copy()
    idx = np.arange(n)
    months = 0
    while len(idx):
        row = seg_rows[idx] + state[idx]
        tt = t_next[idx]
        leave = tt + np.minimum(r.standard_exponential(len(idx)) / rate[row], 1e9).astype(np.int64)
        forced_at = ref[idx] + M - 1
        moves = leave <= np.minimum(forced_at, T - 1)
        new = np.searchsorted(offset_cum, row + r.random(len(idx)), side="right") - row * S
        at = np.where(moves, leave, forced_at)
        new[~moves | ((at == forced_at) & ~pw.absorbing[new])] = pw.exit_state  # the programme limit
        happens = moves | (forced_at <= T - 1)
        months += int((np.where(happens, at, T - 1) - tt + 1).sum())
        i, new, at = idx[happens], new[happens], at[happens]
        state[i] = new
        cell = i * S + new
        f = first[cell] < 0
        first[cell[f]] = at[f]
        absorbed = pw.absorbing[new]
        end[i[absorbed]] = at[absorbed]
        t_next[i] = at + 1
        idx = i[~absorbed]
    return months


def _timed(fn) -> float:
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def interleaved(fns: dict, repeat: int) -> dict:
    """Median CPU seconds of each function, run in turn ``repeat`` times. CPU time rather than wall time:
    on a machine shared with other jobs it counts only this process's work (both sides are single-threaded)."""
    times = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            times[k].append(_timed(fn))
    return {k: statistics.median(v) for k, v in times.items()}


def bench_big(repeat: int, clients: int = 1_000_000) -> None:
    from pbrsim.engine.run import run_batch

    model = model_for(clients)
    months = {}

    def engine():
        months["engine"] = int(run_batch(model, 1, [0]).client_months.sum())

    def ref():
        months["reference"] = reference(model, 1)

    engine(), ref()  # warm-up
    t = interleaved({"engine": engine, "reference": ref}, repeat)
    mem = subprocess.run([sys.executable, __file__, "--memory", str(clients)], capture_output=True, text=True, check=True)
    peak = json.loads(mem.stdout)["peak_mib"]
    print(f"big: {clients:,} clients x {MONTHS} months; client-months engine {months['engine']:,}, reference {months['reference']:,}")
    e_rate, r_rate = months["engine"] / t["engine"], months["reference"] / t["reference"]
    print(f"  engine {t['engine']:.2f} s ({e_rate / 1e6:.1f} M client-months/s), reference {t['reference']:.2f} s "
          f"({r_rate / 1e6:.1f} M/s): engine at {e_rate / r_rate:.2f} of the reference (target >= 0.33)")
    print(f"  peak memory, engine and tables in a fresh process: {peak:.0f} MiB (target <= 300)")


def bench_small(repeat: int, reps: int, clients: int = 1_000) -> None:
    from pbrsim.engine.run import run_batch

    model = model_for(clients)
    run_batch(model, 1, range(reps))
    t = interleaved({
        "batch": lambda: run_batch(model, 1, range(reps)),
        "alone": lambda: run_batch(model, 1, [0]),
        "reference": lambda: reference(model, 1),
    }, repeat)
    per = t["batch"] / reps
    print(f"small: replications of {clients:,} clients; reference {1e3 * t['reference']:.2f} ms a replication")
    print(f"  engine in a batch of {reps}: {1e3 * per:.2f} ms a replication = {per / t['reference']:.2f} x the reference (target <= 3)")
    print(f"  engine, one replication alone: {1e3 * t['alone']:.2f} ms = {t['alone'] / t['reference']:.2f} x the reference")


def bench_many(repeat: int, reps: int = 500, clients: int = 2_000) -> None:
    from pbrsim.engine.run import batch_size, run_batch

    model = model_for(clients)
    size = batch_size(model)

    def engine():
        for i in range(0, reps, size):
            run_batch(model, 1, range(i, min(reps, i + size)))

    def ref():
        for r in range(reps):
            reference(model, r)

    t = interleaved({"engine": engine, "reference": ref}, repeat)
    print(f"many: {reps} replications x {clients:,} clients (batches of {min(size, reps)})")
    print(f"  engine {t['engine']:.2f} s (target <= 2), reference looping over replications {t['reference']:.2f} s: "
          f"engine = {t['engine'] / t['reference']:.2f} x the reference")


def peak_mib() -> float:
    """This process's peak resident memory. VmHWM (Linux) starts afresh at exec; ru_maxrss can carry the
    peak of the process this one was forked from."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory(clients: int) -> None:
    from pbrsim.engine.records import batch_columns
    from pbrsim.engine.run import run_batch

    model = model_for(clients)
    batch_columns(model, run_batch(model, 1, [0]))
    print(json.dumps({"peak_mib": peak_mib()}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", default=["big", "small", "many"], choices=["big", "small", "many"])
    ap.add_argument("--repeat", type=int, default=5, help="interleaved runs; medians are printed")
    ap.add_argument("--small-reps", type=int, default=200, help="replications in the small benchmark's batch")
    ap.add_argument("--memory", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory:
        memory(args.memory)
        return
    if "big" in args.only:
        bench_big(args.repeat)
    if "small" in args.only:
        bench_small(args.repeat, args.small_reps)
    if "many" in args.only:
        bench_many(args.repeat)


if __name__ == "__main__":
    main()
