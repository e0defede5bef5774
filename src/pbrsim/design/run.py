"""Running a design problem end to end: check the folder, search (or goal-seek), write every result file."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .. import __version__
from .evaluate import Cache, Evaluator
from .goalseek import goal_seek
from .output import EVALUATIONS, finish, prepare, scenario_yaml, start, write_json, write_table
from .problem import Problem, problem_fingerprint
from .search import Search
from .summary import designs_table, front_table, goal_seek_summary, search_summary

EXIT_INFEASIBLE = 3


def is_goal_seek(problem: Problem) -> bool:
    return problem.objective is None


def results_folder(problem: Problem) -> Path:
    return Path("results") / "design" / problem.name


def run_problem(problem: Problem, out: str | Path, *, executor: str = "process", workers: int | None = None,
                overwrite: bool = False, on_stage: Callable[[str], None] | None = None,
                progress: Callable[[int], None] | None = None,
                extra_files: Callable[[dict, Path], list[Path]] | None = None) -> dict:
    """Search (or goal-seek) ``problem`` and write its folder; returns the summary (``summary["files"]`` lists the files).

    Raises ``output.OutputError`` before anything is written when ``out`` cannot be used. ``extra_files(summary, out)``
    may write more files (charts, the report) and return their paths, so the manifest lists them too.
    """
    out = Path(out)
    fp = problem_fingerprint(problem)
    old = prepare(out, fp, overwrite)
    info = {"problem": {"name": problem.name, "file": problem.source, "sha256": problem.sha256},
            "base": str(problem.base_file), "seed": problem.search.seed, "verify_seed": problem.verify_seed,
            "executor": executor, "workers": workers, "pbrsim": __version__}
    man = start(out, fp, info, old)
    evaluator = Evaluator(problem.search.seed, cache=Cache(out / EVALUATIONS), executor=executor, workers=workers,
                          chunk=problem.search.chunk, progress=progress)
    try:
        if is_goal_seek(problem):
            summary = goal_seek_summary(goal_seek(problem, evaluator, on_stage=on_stage))
        else:
            result = Search(problem, evaluator, on_stage=on_stage).run()
            summary = search_summary(result)
    except KeyboardInterrupt:
        man.update(status="interrupted")
        write_json(out / "manifest.json", man)
        raise
    written = write_results(problem, summary, out, None if is_goal_seek(problem) else result)
    if extra_files is not None:
        written += extra_files(summary, out)
    summary["files"] = sorted(str(p.relative_to(out)) for p in written) + ["summary.json"]
    write_json(out / "summary.json", summary)
    written.append(out / "summary.json")
    finish(out, man, written, old, "complete" if summary["feasible"] else "infeasible")
    return summary


def _figures_line(summary: dict, design: dict, keys: list[str]) -> str:
    from ..model.money import money

    parts = []
    for k in keys:
        e = design["estimates"].get(k)
        if not e or e["mean"] is None:
            continue
        unit = summary["figures"][k]["unit"]
        fmt = (lambda x: money(x, summary["currency"])) if unit == "money" else (lambda x: f"{100 * x:.1f}%") if unit == "pct" \
            else (lambda x: f"{x:,.2f}")
        rng = f" ({fmt(e['lo'])} to {fmt(e['hi'])})" if e["lo"] is not None and e["hi"] is not None and e["lo"] != e["hi"] else ""
        parts.append(f"{k} {fmt(e['mean'])}{rng}")
    return "; ".join(parts)


def write_results(problem: Problem, summary: dict, out: Path, result=None) -> list[Path]:
    """The tables as CSV and Parquet, and a scenario file per design worth keeping (summary.json comes last)."""
    written: list[Path] = []
    designs = out / "designs"
    keys = list(summary["figures"])
    how = f"seed {summary['seed']}"

    def scenario_file(name: str, design: dict, role: str) -> str:
        raw = _raw_of(problem, design)
        levers = ", ".join(f"{p} = {v}" for p, v in design["levers"].items())
        reps = "exact" if design["replications"] is None else f"{design['replications']} replications, {how}"
        header = [f"{role} of design problem {problem.name!r} ({problem.source}), made by pbrsim {__version__} `pbrsim design`.",
                  f"Base scenario {problem.base_file.name} with {levers}.",
                  f"Figures ({reps}): {_figures_line(summary, design, keys)}."]
        path = designs / f"{name}.yaml"
        from .output import write_bytes

        write_bytes(path, scenario_yaml(raw, header))
        written.append(path)
        design["file"] = str(path.relative_to(out))
        return design["file"]

    if summary["kind"] == "search":
        if summary["chosen"]:
            scenario_file("chosen", summary["chosen"], "The chosen design")
        if summary.get("closest"):
            scenario_file("closest", summary["closest"], "The closest design found (no design met every constraint)")
        for i, d in enumerate(summary["pareto"], start=1):
            if summary["chosen"] and d["id"] == summary["chosen"]["id"]:
                d["file"] = summary["chosen"]["file"]
                continue
            scenario_file(f"pareto_{i}", d, f"Pareto design {i} (spend x complex outcomes x failure)")
        written += write_table(designs_table(result), out / "designs.csv")
        written += write_table(front_table(summary), out / "pareto.csv")
        if summary["comparisons"]:
            import pandas as pd

            rows = []
            for c in summary["comparisons"]:
                row = {"file": c["file"], "scenario": c["scenario"], "replications": c["replications"], "dominated": c["dominated"]}
                for k, e in c["estimates"].items():
                    row[k], row[f"{k}_lo"], row[f"{k}_hi"] = e["mean"], e["lo"], e["hi"]
                rows.append(row)
            written += write_table(pd.DataFrame(rows), out / "comparisons.csv")
    else:
        if summary["answer_design"] is not None and summary["answer_design"]["valid"]:
            role = "The goal-seek answer" if summary["status"] != "not_met" else "The closest value (the target was not met)"
            scenario_file("answer", summary["answer_design"], role)
            summary["answer"]["file"] = summary["answer_design"]["file"]
        import pandas as pd

        rows = [{"order": i + 1, "value": c["value"], "estimate": c["estimate"]["mean"], "lo": c["estimate"]["lo"],
                 "hi": c["estimate"]["hi"], "met": c["met"], "met_on_estimate": c["met_on_estimate"]} for i, c in enumerate(summary["curve"])]
        written += write_table(pd.DataFrame(rows), out / "curve.csv")
    return written


def _raw_of(problem: Problem, design: dict) -> dict:
    from .levers import apply_point

    return apply_point(problem.base, problem.levers, tuple(design["point"]), problem.source)
