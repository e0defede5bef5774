"""Design search: time to an answer, evaluations to an answer by method, and the full-size acceptance checks.

Run: python benchmarks/bench_design.py [timing|methods|acceptance] [--workers 2]

timing      The commissioner's three-lever problem (scenarios/design/parking_commissioner.yaml, without its
            comparison scenarios) searched end to end, out-of-sample check included, in a fresh folder. Prints the
            wall time, the replications run, and the ratio of the wall time to the same number of replications run
            one after another with ``simulate`` in this process (the plain reference: 40 replications of the base
            scenario, timed before and after the search): 1 / workers would mean the search adds nothing to the runs.
methods     Evaluations to an answer. (1) A problem where exact mode applies (the same contract with a holistic
            provider: volume, programme length and price as levers): the exact optimum over the whole grid, then
            exact mode's own search (a sample and pattern searches) and Monte Carlo halving, each judged by the
            exact objective and constraints of the design it chose. (2) The commissioner's problem cut to two levers on coarse grids: halving against a
            Monte Carlo grid of every design (the reference answer), each checked on the same 500 fresh replications.
acceptance  The acceptance runs of docs/design.md: the commissioner's problem with its five comparison scenarios
            (dominance, out-of-sample check with 500 fresh replications of an independent seed), and the finance
            director's goal seek on East Charity against a fine grid on the same replications.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBLEM = ROOT / "scenarios" / "design" / "parking_commissioner.yaml"
CHAIN = ROOT / "scenarios" / "supply_chain" / "outcome_pass_through.yaml"


def _env() -> dict:
    return {"cores": len(os.sched_getaffinity(0)), "load_average_1min": round(os.getloadavg()[0], 1)}


def _reference_seconds_per_replication(raw: dict, n: int = 40) -> float:
    from pbrsim.scenario.schema import scenario_from_dict
    from pbrsim.simulate import simulate

    sc = scenario_from_dict(raw, "bench")
    t = time.perf_counter()
    simulate(sc, seed=99, replications=n)
    return (time.perf_counter() - t) / n


def _run(problem, workers: int, out: Path | None = None) -> tuple[dict, float]:
    from pbrsim.design.run import run_problem

    folder = out or Path(tempfile.mkdtemp(prefix="pbrsim-bench-design-")) / "out"
    t = time.perf_counter()
    summary = run_problem(problem, folder, workers=workers)
    elapsed = time.perf_counter() - t
    if out is None:
        shutil.rmtree(folder.parent, ignore_errors=True)
    return summary, elapsed


def timing(workers: int) -> None:
    from pbrsim.design.problem import load_problem

    problem = replace(load_problem(PROBLEM), compare=())
    before = _reference_seconds_per_replication(problem.base)
    summary, elapsed = _run(problem, workers)
    reps = summary["effort"]["replications_run"]
    ref = (before + _reference_seconds_per_replication(problem.base)) / 2  # the machine may be shared: before and after
    print(json.dumps({
        "problem": problem.name, "levers": len(problem.levers), "workers": workers, **_env(),
        "seconds": round(elapsed, 1), "replications_run": reps, "designs": summary["effort"]["designs"],
        "stages": summary["effort"]["stages"], "chosen": summary["chosen"]["levers"] if summary["chosen"] else None,
        "reference_seconds_per_replication": round(ref, 4),
        "ratio_to_serial_reference": round(elapsed / (reps * ref), 3),
    }, indent=2))
    print(f"three levers searched and checked out of sample in {elapsed:.0f} s ({reps} replications; "
          f"{elapsed / (reps * ref):.2f} x the serial reference, {workers} workers)")


def _exact_problem():
    """The commissioner's contract with a holistic provider (exact mode applies): how many referrals a month, how
    long clients may stay and what complex outcomes cost, to buy the most complex-client outcomes for £250,000."""
    from pbrsim.design.problem import ProblemSpec, resolve
    from pbrsim.scenario.schema import load_raw

    base = ROOT / "scenarios" / "parking" / "complex_milestones.yaml"
    spec = ProblemSpec.model_validate({
        "name": "exact_volume", "base": str(base),
        "set": {"provider.policy": "holistic", "provider.credit.monthly_interest": 0.0},
        "levers": [{"path": "referrals.rate", "range": [6, 16], "step": 1},
                   {"path": "pathway.max_months_on_programme", "choices": [12, 15, 18, 21, 24]},
                   {"path": "contract.payments[name=sustained_job].tariff.complex", "range": [2000, 8000], "step": 500}],
        "objective": {"maximise": "complex_outcomes"},
        "constraints": ["spend <= 250000", "spend_per_outcome <= 4800"],
        "search": {"seed": 11, "method": "exact"},
    })
    return resolve(spec, load_raw(base), "bench", base, name="exact_volume")


def methods(workers: int, only: str | None = None) -> None:
    from pbrsim.design.assess import Assessment, exact_estimates
    from pbrsim.design.problem import load_problem

    import itertools

    from pbrsim.design.assess import make_design
    from pbrsim.design.evaluate import Evaluator

    rows = []
    exact_problem = _exact_problem()
    # ground truth: every design of the grid, exactly
    t = time.perf_counter()
    pts = list(itertools.product(*[range(lv.size) for lv in exact_problem.levers]))
    raws = {pt: make_design(exact_problem, pt).raw for pt in pts}
    q = Evaluator(0, workers=workers).exact({pt: r for pt, r in raws.items() if r is not None})
    judged = {pt: Assessment(make_design(exact_problem, pt), exact_estimates(exact_problem, q[pt]), None, exact_problem) for pt in q}
    best = min(judged.values(), key=lambda a: a.rank("far"))
    rows.append({"problem": "exact-valid", "method": "every design, exactly", "seconds": round(time.perf_counter() - t, 1),
                 "evaluations": len(q), "replications": 0, "chosen": {lv.path: v for lv, v in zip(exact_problem.levers, best.design.values)},
                 "exact_objective": best.estimates["complex_outcomes"].mean, "exactly_feasible": best.feasible()})
    for method in ("exact", "halving"):  # (a Monte Carlo grid would be 715 designs x 20 replications)
        p = replace(exact_problem, search=exact_problem.search.model_copy(update={"method": method, "grid_replications": 20}))
        summary, elapsed = _run(p, workers)
        ch = summary["chosen"]
        a = judged.get(tuple(ch["point"])) if ch else None  # the chosen design judged exactly
        rows.append({"problem": "exact-valid", "method": method, "seconds": round(elapsed, 1),
                     "evaluations": summary["effort"]["evaluations"], "replications": summary["effort"]["replications_run"],
                     "chosen": ch["levers"] if ch else None,
                     "exact_objective": a.estimates["complex_outcomes"].mean if a else None,
                     "exactly_feasible": all(c.met(a.estimates[c.figure.key], "mean") for c in p.constraints) if a else None})
    if only == "exact":
        print(json.dumps({"workers": workers, **_env(), "methods": rows}, indent=2))
        return
    base = load_problem(PROBLEM)
    two = replace(base, compare=(), levers=tuple(  # milestone x job-ready price, every 5th value
        replace(lv, values=lv.values[::5], step=lv.step * 5) for lv in base.levers[:2]))
    for method in ("grid", "halving"):
        p = replace(two, search=two.search.model_copy(update={"method": method, "grid_replications": 40}))
        summary, elapsed = _run(p, workers)
        ch = summary["chosen"]
        v = summary["verification"][-1] if summary["verification"] else None
        rows.append({"problem": f"Monte Carlo (2 levers, {two.levers[0].size} x {two.levers[1].size} designs)", "method": method,
                     "seconds": round(elapsed, 1), "evaluations": summary["effort"]["evaluations"],
                     "replications": summary["effort"]["replications_run"], "chosen": ch["levers"] if ch else None,
                     "spend_out_of_sample": v["estimates"]["spend"]["mean"] if v else None,
                     "holds_out_of_sample": v["passed"] if v else None})
    print(json.dumps({"workers": workers, **_env(), "methods": rows}, indent=2))


def acceptance(workers: int, cache: str | None = None, only: str | None = None) -> None:
    if only != "finance":
        commissioner(workers)
    if only == "commissioner":
        return
    finance_director(workers, cache)


def commissioner(workers: int) -> None:
    from pbrsim.design.problem import load_problem

    problem = load_problem(PROBLEM)
    summary, elapsed = _run(problem, workers)
    dominated = {c["scenario"]: c["dominated"] for c in summary["comparisons"]}
    v = summary["verification"][-1] if summary["verification"] else None
    print(json.dumps({"commissioner": {
        "seconds": round(elapsed, 1), "chosen": summary["chosen"]["levers"] if summary["chosen"] else None,
        "dominates": dominated, "all_dominated": all(dominated.values()),
        "out_of_sample": {"seed": v["seed"], "replications": v["replications"], "passed": v["passed"],
                          "checks": [(c["constraint"], c["estimate"]["mean"], c["met"], c["met_with_confidence"]) for c in v["checks"]]}
        if v else None}}, indent=2))


def finance_director(workers: int, cache: str | None) -> None:
    """The service-fee share East Charity needs from its prime (docs/stress-testing.md, docs/design.md): the goal
    seek against every value of the grid on the same 200 replications."""
    from pbrsim.design.assess import Assessment, make_design
    from pbrsim.design.evaluate import Cache, Evaluator
    from pbrsim.design.goalseek import goal_seek
    from pbrsim.design.problem import goal_seek_problem

    gp = goal_seek_problem(CHAIN, "organisations[name=east_charity].terms.pass_through.service_fee", "failure(east_charity) <= 0.05",
                           range_=(0.0, 0.2), step=0.01, seed=0, replications=200)
    with tempfile.TemporaryDirectory() as tmp:
        ev = Evaluator(0, cache=Cache(cache or tmp), workers=workers)
        t = time.perf_counter()
        res = goal_seek(gp, ev)
        seek_s = time.perf_counter() - t
        lever = gp.levers[0]
        designs = {i: make_design(gp, (i,)) for i in range(lever.size)}
        frames = ev.evaluate({i: (d.raw, range(200)) for i, d in designs.items()})  # one parallel batch
        grid = {lever.values[i]: Assessment(d, {f.key: f.estimate(frames[i]) for f in gp.figures}, 200, gp).feasible()
                for i, d in designs.items()}
    first = next((x for x, ok in grid.items() if ok), None)
    answer = lever.values[res.bracket[1]] if res.bracket else None
    within = answer is not None and first is not None and abs(answer - first) <= res.precision + 1e-12
    print(json.dumps({"finance_director": {
        "grid_met": grid, "goal_seek_seconds": round(seek_s, 1), "values_run": len(res.curve), "answer": answer,
        "precision": res.precision, "fine_grid_answer": first, "within_precision": within,
        "verification": res.verification[0].checks if res.verification else None}}, indent=2, default=str))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", nargs="?", default="timing", choices=["timing", "methods", "acceptance"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cache", help="acceptance: a folder of design evaluations to reuse (e.g. results/design/<name>/evaluations)")
    ap.add_argument("--only", choices=["commissioner", "finance", "exact"],
                    help="acceptance: run one of the two checks; methods: 'exact' runs the exact-mode problem alone")
    args = ap.parse_args()
    if args.what == "acceptance":
        acceptance(args.workers, args.cache, args.only)
    elif args.what == "methods":
        methods(args.workers, args.only)
    else:
        timing(args.workers)


if __name__ == "__main__":
    main()
