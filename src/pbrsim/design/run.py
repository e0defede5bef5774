"""Running a design problem end to end: check the folder, search (or goal-seek), write every result file."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .. import __version__
from .evaluate import Cache, Evaluator
from .goalseek import goal_seek
from .output import EVALUATIONS, finish, interrupted, json_bytes, prepare, scenario_yaml, start, table_files
from .problem import Problem, problem_fingerprint
from .search import Search
from .summary import designs_table, front_table, goal_seek_summary, search_summary

EXIT_INFEASIBLE = 3


def is_goal_seek(problem: Problem) -> bool:
    return problem.objective is None


def results_folder(problem: Problem) -> Path:
    """``results/design/<name>``, the name made safe as a folder name (docs/outputs.md)."""
    from ..store import output_path

    return output_path(Path("results") / "design", problem.name)


def run_problem(problem: Problem, out: str | Path, *, executor: str = "process", workers: int | None = None,
                overwrite: bool = False, on_stage: Callable[[str], None] | None = None,
                progress: Callable[[int], None] | None = None,
                extra_files: Callable[[dict], dict[str, bytes]] | None = None) -> dict:
    """Search (or goal-seek) ``problem`` and write its folder; returns the summary (``summary["files"]`` lists the files).

    The folder follows the output rule (docs/outputs.md): ``store.OutputRefused`` is raised before any work when
    ``out`` holds files pbrsim did not write (unless ``overwrite``). ``extra_files(summary)`` may add files (the
    charts: name -> bytes), written with the rest.
    """
    out = Path(out)
    own = prepare(out, overwrite)
    info = {"problem": {"name": problem.name, "file": problem.source, "sha256": problem.sha256},
            "fingerprint": problem_fingerprint(problem), "base": str(problem.base_file), "seed": problem.search.seed,
            "verify_seed": problem.verify_seed, "executor": executor, "workers": workers, "pbrsim": __version__}
    data = start(out, own, info, overwrite)
    evaluator = Evaluator(problem.search.seed, cache=Cache(out / EVALUATIONS), executor=executor, workers=workers,
                          chunk=problem.search.chunk, progress=progress)
    try:
        if is_goal_seek(problem):
            summary = goal_seek_summary(goal_seek(problem, evaluator, on_stage=on_stage))
        else:
            result = Search(problem, evaluator, on_stage=on_stage).run()
            summary = search_summary(result)
    except KeyboardInterrupt:
        interrupted(out, data)
        raise
    finally:
        evaluator.close()
    files = result_files(problem, summary, None if is_goal_seek(problem) else result)
    if extra_files is not None:
        files.update(extra_files(summary))
    summary["files"] = sorted(files) + ["summary.json"]
    files["summary.json"] = json_bytes(summary)
    finish(out, files, data, "complete" if summary["feasible"] else "infeasible", overwrite)
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


def result_files(problem: Problem, summary: dict, result=None) -> dict[str, bytes]:
    """The tables as CSV and Parquet, and a scenario file per design worth keeping (summary.json comes last)."""
    written: dict[str, bytes] = {}
    keys = list(summary["figures"])
    how = f"seed {summary['seed']}"

    def scenario_file(name: str, design: dict, role: str) -> str:
        raw = _raw_of(problem, design)
        levers = ", ".join(f"{p} = {v}" for p, v in design["levers"].items())
        reps = "exact" if design["replications"] is None else f"{design['replications']} replications, {how}"
        header = [f"{role} of design problem {problem.name!r} ({problem.source}), made by pbrsim {__version__} `pbrsim design`.",
                  f"Base scenario {problem.base_file.name} with {levers}.",
                  f"Figures ({reps}): {_figures_line(summary, design, keys)}."]
        design["file"] = f"designs/{name}.yaml"
        written[design["file"]] = scenario_yaml(raw, header)
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
        written.update(table_files(designs_table(result), "designs"))
        written.update(table_files(front_table(summary), "pareto"))
        if summary["comparisons"]:
            import pandas as pd

            rows = []
            for c in summary["comparisons"]:
                row = {"file": c["file"], "scenario": c["scenario"], "replications": c["replications"], "dominated": c["dominated"]}
                for k, e in c["estimates"].items():
                    row[k], row[f"{k}_lo"], row[f"{k}_hi"] = e["mean"], e["lo"], e["hi"]
                rows.append(row)
            written.update(table_files(pd.DataFrame(rows), "comparisons"))
    else:
        if summary["answer_design"] is not None and summary["answer_design"]["valid"]:
            role = "The goal-seek answer" if summary["status"] != "not_met" else "The closest value (the target was not met)"
            scenario_file("answer", summary["answer_design"], role)
            summary["answer"]["file"] = summary["answer_design"]["file"]
        import pandas as pd

        rows = [{"order": i + 1, "value": c["value"], "estimate": c["estimate"]["mean"], "lo": c["estimate"]["lo"],
                 "hi": c["estimate"]["hi"], "met": c["met"], "met_on_estimate": c["met_on_estimate"]} for i, c in enumerate(summary["curve"])]
        written.update(table_files(pd.DataFrame(rows), "curve"))
    return written


def _raw_of(problem: Problem, design: dict) -> dict:
    from .levers import apply_point

    return apply_point(problem.base, problem.levers, tuple(design["point"]), problem.source)
