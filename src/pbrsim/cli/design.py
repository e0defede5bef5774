"""``pbrsim design``: search contract designs under constraints, or goal-seek one lever to a target (docs/design.md)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .common import (allow_large_option, executor_option, out_option, quiet_option, workers_option, err_console, exit_with_problems, fail_input, overwrite_option, progress_bar,
                     run_size_or_exit, writing)

EXIT_INTERRUPTED = 130


def _problem_or_exit(target, lever, goal, range_, step, seed, replications, verify_replications):
    from ..design.problem import goal_seek_problem, load_problem
    from ..scenario.errors import ScenarioError

    try:
        if lever or goal:
            if not (lever and goal):
                fail_input("the simple form needs both --lever PATH and --target \"FIGURE <= NUMBER\" (with a scenario file)")
            return goal_seek_problem(target, lever, goal, range_=range_, step=step, seed=seed or 0,
                                     replications=replications or 200, verify_replications=verify_replications or 500)
        if range_ or step:
            fail_input("--range and --step belong to the simple form (with --lever and --target)")
        problem = load_problem(target)
    except ScenarioError as exc:  # a DesignError, or the file itself unreadable as YAML
        advice = "Nothing was run or written. Fix the " + ("options" if lever else "problem file") + \
                 " and try again (docs/design.md describes design problems)."
        exit_with_problems(exc.source, exc.problems, advice)
    changes = {}
    if seed is not None:
        changes["seed"] = seed
    if replications is not None:
        changes["final_replications"] = max(replications, problem.search.max_replications)
    search = problem.search.model_copy(update=changes) if changes else problem.search
    verify = problem.verify.model_copy(update={"replications": verify_replications}) if verify_replications else problem.verify
    from dataclasses import replace

    return replace(problem, search=search, verify=verify)


@click.command()
@click.argument("target", type=click.Path(dir_okay=False, exists=True))
@click.option("--lever", metavar="PATH", help="Simple form: the field path to vary, e.g. contract.service_fee.share_of_value.")
@click.option("--target", "goal", metavar="TARGET", help="Simple form: the target, e.g. \"failure(hope_trust) <= 0.05\".")
@click.option("--range", "range_", type=float, nargs=2, metavar="LO HI", help="Simple form: values searched [default for shares: 0 1].")
@click.option("--step", type=click.FloatRange(min=0, min_open=True), help="Simple form: grid step, the answer's precision [default 0.01 for shares; range/20].")
@click.option("--seed", type=click.IntRange(min=0), help="Root random seed [default: the problem's, or 0].")
@click.option("--replications", "-n", type=click.IntRange(min=10), help="Replications per value (simple form, default 200) or of the finalists.")
@click.option("--verify-replications", type=click.IntRange(min=10), help="Fresh replications of the answer [default 500].")
@out_option("Output folder [default: results/design/<problem>].")
@click.option("--report", is_flag=True, help="Also write report/design.html.")
@executor_option
@workers_option()
@quiet_option()
@overwrite_option
@allow_large_option
def design(target, lever, goal, range_, step, seed, replications, verify_replications, out, overwrite, report, executor,
           workers, quiet):
    """Find the contract design that does best under constraints (TARGET a design problem file), or the value of one
    lever at which a target is met (TARGET a scenario, with --lever and --target). Exit code 3: no design meets the
    constraints (the binding one and the closest design are named)."""
    from ..design.run import EXIT_INFEASIBLE, results_folder, run_problem
    from ..experiments.executors import ExecutorUnavailable, check_executor

    problem = _problem_or_exit(target, lever, goal, range_, step, seed, replications, verify_replications)
    from ..scenario.schema import scenario_from_dict

    # each task runs search.chunk replications of one design at once: that is the run the limits bound
    run_size_or_exit(scenario_from_dict(problem.base, str(problem.base_file)), problem.search.chunk, problem.source,
                     "search.chunk")
    try:
        check_executor(executor)
    except (ValueError, ExecutorUnavailable) as exc:
        fail_input(str(exc))
    out = Path(out) if out else results_folder(problem)
    with writing():
        from ..design.output import prepare
        from ..store import KIND_REPORT, check_out

        prepare(out, overwrite)  # before the work, so a refusal costs nothing
        if report:
            check_out(out / "report", KIND_REPORT, overwrite=overwrite)
    console = Console()
    if not quiet:
        _print_problem(problem, console)

    def charts(summary):
        from ..report.design import design_chart_files

        return design_chart_files(summary)

    t0 = time.perf_counter()
    with progress_bar(Console(stderr=True), disable=quiet) as bar, writing():
        task = bar.add_task("starting", total=None, rate="")

        def on_stage(text):
            bar.update(task, description=text)

        def tick(k):
            bar.advance(task, k)
            done = bar.tasks[0].completed
            bar.update(task, rate=f"{done / max(time.perf_counter() - t0, 1e-9):.1f} replications/s")

        try:
            summary = run_problem(problem, out, executor=executor, workers=workers, overwrite=overwrite, on_stage=on_stage,
                                  progress=tick, extra_files=charts)
        except KeyboardInterrupt:
            err_console.print(f"Interrupted: the evaluations made so far are kept in {out}. Run the same command again "
                              "to resume.", highlight=False)
            sys.exit(EXIT_INTERRUPTED)
    page = None
    if report:
        from ..report.design import write_design_report

        with writing():
            page = write_design_report(summary, out / "report", overwrite=overwrite, source=out)
    if not quiet:
        if summary["kind"] == "goal_seek":
            print_goal_seek(summary, console)
        else:
            print_search(summary, console)
        console.print(f"Results written to [bold]{escape(str(out))}[/bold]: " + ", ".join(f for f in summary["files"] if "/" not in f)
                      + f" and {sum(1 for f in summary['files'] if f.startswith('designs/'))} scenario file(s) in designs/"
                      + (f"; report: {escape(str(page))}" if page else "") + ".")
    if not summary["feasible"]:
        _explain_infeasible(summary)
        sys.exit(EXIT_INFEASIBLE)


def _print_problem(problem, console: Console) -> None:
    if problem.objective is None:
        lv, t = problem.levers[0], problem.constraints[0]
        console.print(escape(f"Goal seek on {problem.base_file.name}: the value of {lv.label} at which {t.text} starts to hold "
                             f"({lv.describe(label=False)}; {problem.search.final_replications} replications of each value, seed "
                             f"{problem.search.seed})."), highlight=False)
        console.print(f"  Met = the 95% interval's far end meets the target. The answer is checked on {problem.verify.replications} "
                      f"fresh replications of seed {problem.verify_seed}.", style="dim", highlight=False)
        return
    what = f"minimise [bold]{problem.objective.figure.key}[/bold]" if problem.objective and problem.objective.sense == "minimise" \
        else f"maximise [bold]{problem.objective.figure.key}[/bold]" if problem.objective else "goal seek"
    console.print(f"[bold]Design problem {escape(problem.name)}[/bold] on {escape(problem.base_file.name)}: {what}"
                  + (f" subject to {escape('; '.join(c.text for c in problem.constraints))}" if problem.constraints else "") + ".",
                  highlight=False)
    for lv in problem.levers:
        console.print(escape(f"  lever {lv.describe()}" + (f" ({lv.size} values)" if lv.kind == "range" else "")), highlight=False)
    console.print(f"  seed {problem.search.seed}; the answer is checked on {problem.verify.replications} fresh replications of "
                  f"seed {problem.verify_seed}. Constraints count as met when the 95% interval's far end meets them.",
                  style="dim", highlight=False)


def _est(summary: dict, design: dict | None, key: str) -> str:
    from ..design.summary import fmt_estimate

    if design is None:
        return "–"
    f = summary["figures"][key]
    return fmt_estimate(design["estimates"].get(key), f["unit"], summary["currency"])


def _mean(summary: dict, design: dict | None, key: str) -> str:
    from ..design.summary import fmt

    e = (design or {}).get("estimates", {}).get(key)
    return "–" if not e else fmt(e["mean"], summary["figures"][key]["unit"], summary["currency"])


def print_search(summary: dict, console: Console) -> None:
    from ..design.summary import check_text, lever_text

    p = summary["problem"]
    console.print(escape(f"Search: {summary['method_note']}."), highlight=False)
    chosen = summary["chosen"] or summary.get("closest")
    keys = list(dict.fromkeys(([p["objective"]["figure"]] if p["objective"] else []) + [c["figure"] for c in p["constraints"]]
                              + p["pareto_axes"]))
    t = Table(title="The chosen design" if summary["chosen"] else "No design met every constraint: the closest one",
              title_justify="left", show_lines=False)
    t.add_column("lever")
    t.add_column("base", justify="right")
    t.add_column("design", justify="right")
    for lv in p["levers"]:
        v = chosen["levers"][lv["path"]] if chosen else None
        t.add_row(escape(lv["label"]), str(lv["base_value"]) if lv["base_value"] is not None else "–", str(v))
    console.print(t)
    if chosen:
        reps = "exact values" if chosen["replications"] is None else \
            f"{chosen['replications']} replications, seed {summary['seed']}; 95% intervals"
        t = Table(title=f"Its figures ({reps})", title_justify="left")
        t.add_column("figure")
        t.add_column("value", justify="right")
        t.add_column("target", justify="left")
        for k in keys:
            cons = [c for c in p["constraints"] if c["figure"] == k]
            mark = []
            for c in cons:
                ok = next(x for x in chosen["constraints"] if x["text"] == c["text"])["met"]
                mark.append(f"{c['op']} {_bound(summary, c)}: " + ("met" if ok else "[red]not met[/red]"))
            if p["objective"] and k == p["objective"]["figure"]:
                mark.append(f"objective: {p['objective']['sense']}")
            t.add_row(summary["figures"][k]["label"], _est(summary, chosen, k), "; ".join(mark))
        console.print(t)
    for v in summary["verification"]:
        head = "Out-of-sample check" + (escape(f" (attempt {v['attempt']}: {lever_text(summary, v['levers'])})") if v["attempt"] > 1 else "")
        console.print(f"[bold]{head}[/bold]: {v['replications']} fresh replications, seed {v['seed']} — "
                      + ("[green]holds[/green]" if v["passed"] else "[red]does not hold[/red]"), highlight=False)
        for c in v["checks"]:
            console.print(f"  • {escape(check_text(c, summary))}", highlight=False)
    if summary["pareto"]:
        axes = p["pareto_axes"]
        t = Table(title="Pareto front: no other design evaluated has lower spend, more complex-client outcomes and lower "
                  "failure at once" + ("" if summary["chosen"] else " (no design met the constraints)"), title_justify="left")
        rows = [[d["id"] + (" ★" if summary["chosen"] and d["id"] == summary["chosen"]["id"] else ""),
                 *[str(d["levers"][lv["path"]]) for lv in p["levers"]], *[_mean(summary, d, k) for k in axes]]
                for d in summary["pareto"]]
        heads = ["design", *[f"lever {i}" for i in range(1, len(p["levers"]) + 1)], *axes]
        for j, head in enumerate(heads):  # numbers are never cut: a long heading folds instead
            t.add_column(head, justify="left" if j == 0 else "right", overflow="fold", min_width=max(len(r[j]) for r in rows))
        for r in rows:
            t.add_row(*r)
        console.print(t)
        console.print("  " + "; ".join(f"lever {i}: {escape(lv['label'])}" for i, lv in enumerate(p["levers"], start=1))
                      + ". " + "; ".join(f"{k}: {summary['figures'][k]['label']}" for k in axes) + ". Scenario files: "
                      + "; ".join(f"{d['id']}: {d['file']}" for d in summary["pareto"] if d.get("file")) + ".",
                      style="dim", highlight=False)
    if summary["comparisons"]:
        rate = "complex_outcome_rate" if "complex_outcome_rate" in summary["figures"] else "outcome_rate"
        keys = list(dict.fromkeys(([p["objective"]["figure"]] if p["objective"] else []) + [c["figure"] for c in p["constraints"]]
                                  + ["spend", rate, p["pareto_axes"][-1]]))
        keys = [k for k in keys if k in summary["comparisons"][0]["estimates"]]
        t = Table(title="Against other designs (the same replications; ★ = the chosen design)", title_justify="left")
        ref = summary["chosen"] or summary.get("closest")
        rows = []
        if ref and summary.get("comparison_reference"):
            rows.append(["★ " + ref["id"], *[_mean(summary, {"estimates": summary["comparison_reference"]}, k) for k in keys], ""])
        for c in summary["comparisons"]:
            rows.append([c["scenario"] or Path(c["file"]).name, *[_mean(summary, c, k) for k in keys], "yes" if c["dominated"] else "no"])
        t.add_column("scenario", overflow="fold", min_width=8)
        for j, k in enumerate(keys, start=1):  # numbers are never cut: a long heading folds instead
            t.add_column(k, justify="right", overflow="fold", min_width=max(len(r[j]) for r in rows))
        t.add_column("domi-\nnated", justify="center", min_width=5)
        for r in rows:
            t.add_row(*r)
        console.print(t)
        console.print(f"  Dominated = no more {summary['figures']['spend']['label']}, no lower {summary['figures'][rate]['label']} "
                      f"and no higher {summary['figures'][p['pareto_axes'][-1]]['label']} than the chosen design, and worse on one "
                      "of the first two. Estimates on the same replications; 95% intervals are in comparisons.csv and the report.",
                      style="dim", highlight=False)
    e = summary["effort"]
    console.print(f"{e['designs']} designs evaluated ({e['evaluations']} evaluations); {e['replications_run']:,} replications run, "
                  f"{e['replications_reused']:,} reused from earlier runs; {e['seconds']:.0f} s.", style="dim", highlight=False)


def _bound(summary: dict, c: dict) -> str:
    from ..design.summary import fmt

    return fmt(c["bound"], summary["figures"][c["figure"]]["unit"], summary["currency"])


def print_goal_seek(summary: dict, console: Console) -> None:
    from ..design.summary import check_text, fmt_estimate

    lv, t = summary["lever"], summary["target"]
    f = summary["figures"][t["figure"]]
    cur = summary["currency"]
    status = summary["status"]
    if status == "found":
        console.print(f"[bold]{escape(lv['label'])} = {summary['answer']['value']}[/bold] is where {escape(t['text'])} starts to hold "
                      f"(precision: one step, {summary['precision']}; {summary['bracket'][0]} does not meet it). "
                      f"{f['label'].capitalize()} there: {fmt_estimate(summary['answer']['estimate'], f['unit'], cur)} "
                      f"({summary['replications']} replications, seed {summary['seed']}; met at the 95% interval's far end).",
                      highlight=False)
    elif status == "met_everywhere":
        console.print(f"{escape(t['text'])} holds over the whole range searched ({lv['lowest']} to {lv['highest']}); "
                      f"at {summary['answer']['value']}: {fmt_estimate(summary['answer']['estimate'], f['unit'], cur)}.", highlight=False)
    t_ = Table(title=f"The values run, in order (the curve walked; {summary['replications']} replications each, common random numbers)",
               title_justify="left")
    t_.add_column("order", justify="right")
    t_.add_column(escape(lv["label"]), justify="right")
    t_.add_column(f["label"], justify="right")
    t_.add_column("target")
    for i, c in enumerate(summary["curve"], start=1):
        t_.add_row(str(i), str(c["value"]), fmt_estimate(c["estimate"], f["unit"], cur), "met" if c["met"] else "not met")
    console.print(t_)
    if not summary["monotone"]:
        console.print("[yellow]note:[/yellow] the values run do not show a single crossing: the figure does not move one way "
                      "with this lever here, so a fine grid could find another crossing.", highlight=False)
    for v in summary["verification"]:
        console.print(f"[bold]Out-of-sample check[/bold]: {v['replications']} fresh replications, seed {v['seed']} — "
                      + ("[green]holds[/green]" if v["passed"] else "[red]does not hold[/red]"), highlight=False)
        for c in v["checks"]:
            console.print(f"  • {escape(check_text(c, summary))}", highlight=False)
    e = summary["effort"]
    console.print(f"{e['evaluations']} values run; {e['replications_run']:,} replications run, {e['replications_reused']:,} reused; "
                  f"{e['seconds']:.0f} s.", style="dim", highlight=False)


def _explain_infeasible(summary: dict) -> None:
    from ..design.summary import fmt_estimate, lever_text

    if summary["kind"] == "goal_seek":
        t = summary["target"]
        f = summary["figures"][t["figure"]]
        a = summary["answer"]
        if summary["status"] == "not_met":
            err_console.print(f"No value of {summary['lever']['label']} from {summary['lever']['lowest']} to "
                              f"{summary['lever']['highest']} meets {t['text']} (at the 95% interval's far end). Closest: "
                              f"{a['value']}, where {f['label']} is {fmt_estimate(a['estimate'], f['unit'], summary['currency'])}"
                              + (f"; written to {a['file']}" if a.get("file") else "") + ".", highlight=False, markup=False)
        else:
            err_console.print(f"The answer {a['value']} did not hold on fresh replications: {t['text']} is binding.",
                              highlight=False, markup=False)
        return
    b = summary.get("binding") or {}
    c = summary.get("closest") or {}
    never = b.get("never_met") or []
    msg = f"No design meets every constraint ({b.get('note', '')}). Binding constraint: {b.get('constraint')}"
    if never:
        msg += f" (no design evaluated met {', '.join(never)})"
    if c:
        key = next((x["figure"] for x in summary["problem"]["constraints"] if x["text"] == b.get("constraint")), None)
        if key:
            f = summary["figures"][key]
            msg += f"; the closest design reaches {fmt_estimate(c['estimates'][key], f['unit'], summary['currency'])}"
        msg += f". Closest design: {lever_text(summary, c['levers'])}" + (f" (written to {c['file']})" if c.get("file") else "")
    err_console.print(msg + ".", highlight=False, markup=False)


COMMANDS = [design]
