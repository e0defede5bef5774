"""``pbrsim stress``: the bid stress test of one organisation (see docs/stress-testing.md)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from .common import (allow_large_option, executor_option, exit_if_wrong_kind, exit_with_error, fail_input, json_option, out_option, overwrite_option, print_json, progress_bar,
                     quiet_option, replications_option, report_option, run_size_or_exit, seed_option, workers_option, writing)
from ..scenario.schema import ScenarioError, file_hash, validate_file
from ..stress.reverse import reverse_lines
from .terminal import money

DEFAULT_REVERSE_REPLICATIONS = 200


def _problems_exit(exc: ScenarioError, what: str) -> None:
    exit_with_error(exc, f"Nothing was run or written. Fix {what} and try again (see docs/stress-testing.md).")


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _delta(ch: dict | None, unit: str, cur: str) -> str:
    if not ch or ch.get("diff") is None:
        return ""
    d, lo, hi = ch["diff"], ch["lo"], ch["hi"]
    if unit == "pp":
        if lo is not None and lo == hi == d:
            return "0" if abs(d) < 1e-12 else f"{100 * d:+.1f} in every run"
        return f"{100 * d:+.1f}" + (f"\n({100 * lo:+.1f} to {100 * hi:+.1f})" if lo is not None else "")
    sign = lambda x: ("+" if x > 0 else "") + money(x, cur)  # noqa: E731
    if lo is not None and abs(hi - lo) < 0.005:
        return "0" if abs(d) < 0.005 else f"{sign(d)} in every run"
    return sign(d) + (f"\n({sign(lo)} to {sign(hi)})" if lo is not None else "")


def _wc(wc: dict, m) -> str:
    hi = m(wc["hi"]) if wc["hi"] is not None else "more"
    return f"{m(wc['estimate'])}\n({m(wc['lo'])}–\n{hi})"


def _print_investors(rows: list[dict], console: Console) -> None:
    """The investors' view of each stress (docs/social-investment.md)."""
    t = Table(show_lines=True, title="How each stress leaves the investors", title_justify="left")
    t.add_column("stress", overflow="fold", max_width=24)
    t.add_column("IRR a year\nmedian\n(5th to 95th pct)", justify="right")
    t.add_column("investors lost\ncapital\n(share of runs)", justify="right")
    t.add_column("change\n(percentage\npoints)", justify="right")
    t.add_column("money\nmultiple", justify="right")
    for r in rows:
        inv = r.get("investors")
        if not r["applicable"] or not inv:
            continue
        irr, lost = inv["irr"], inv["lost_capital"]
        t.add_row(r["name"], "–" if irr["median"] is None else f"{_pct(irr['median'])}\n({_pct(irr['p5'])} to {_pct(irr['p95'])})",
                  "–" if lost["mean"] is None else f"{_pct(lost['mean'])}\n({100 * lost['lo']:.1f}–{100 * lost['hi']:.1f})",
                  _delta((r.get("change") or {}).get("investors_lost_capital"), "pp", ""),
                  "–" if inv["multiple"]["mean"] is None else f"{inv['multiple']['mean']:.2f}")
    console.print(t)
    console.print("Investors' figures come from the same runs, in which the organisation's overdraft is extended as far as "
                  "needed: where it would have run out of cash, they show investors' money had it carried on.", style="dim")


def print_stress_table(summary: dict, console: Console) -> None:
    cur = summary["currency"]
    m = lambda x: money(x, cur)  # noqa: E731
    terms = summary["organisation_terms"]
    org = summary["organisation"]
    limit = "no overdraft limit" if terms["credit_limit"] is None else f"an overdraft of {m(terms['credit_limit'])}"
    extra = f" (including {m(summary['extra_reserve'])} of extra reserve)" if summary.get("extra_reserve") else ""
    console.print(
        f"[bold]Stress test of {org}[/bold] ({summary['role']}) in [bold]{summary['scenario']}[/bold]: "
        f"{summary['replications']} replications of each stress, seed {summary['seed']}. Opening cash "
        f"{m(terms['opening_cash'])}{extra} and {limit} at {100 * terms['monthly_interest']:.1f}% a month. "
        f"'Runs out of cash' = balance below the overdraft limit at a month end. Intervals are 95%."
    )
    rows = summary["stresses"]
    t = Table(show_lines=True, title=f"How each stress leaves {org}", title_justify="left")
    t.add_column("stress", overflow="fold", max_width=24)
    t.add_column("runs out\nof cash", justify="right")
    t.add_column("lowest cash\nmedian\n5th pct\n(month)", justify="right")
    t.add_column(f"working\ncapital\nneeded for\n≤{summary['target']:.0%}", justify="right")
    t.add_column("break-\neven\nmonth", justify="right")
    t.add_column("margin\nmedian\n5th pct", justify="right")
    for r in rows:
        name = f"{r['label']}\n[dim]{r['name']}[/dim]"
        if not r["applicable"]:
            t.add_row(name, f"[dim]{r['note']}[/dim]", "", "", "", "")
            continue
        be = r["break_even_month"]
        be_text = "not\nreached" if be["median"] is None else f"{be['median']:.0f}"
        if be["never_share"] > 0 and be["median"] is not None:
            be_text += f"\n[dim]never:\n{be['never_share']:.0%}[/dim]"
        ci = r["ran_out_of_cash"]
        t.add_row(
            name + (f"\n[dim]{r['note']}[/dim]" if r.get("note") else ""),
            f"{_pct(ci['mean'])}\n({100 * ci['lo']:.1f}–{100 * ci['hi']:.1f})",
            f"{m(r['lowest_cash']['p50'])}\n{m(r['lowest_cash']['p5'])}\n(month {r['trough_month']['median']:.0f})",
            _wc(r["working_capital"], m),
            be_text,
            f"{m(r['margin']['p50'])}\n{m(r['margin']['p5'])}",
        )
    console.print(t)
    if any("investors" in r for r in rows):
        _print_investors(rows, console)
    t = Table(show_lines=True, title="Change against the unstressed base (paired: same replications)", title_justify="left")
    t.add_column("stress", overflow="fold", max_width=24)
    t.add_column("runs out of cash\n(percentage points)", justify="right")
    t.add_column("lowest cash\n(mean)", justify="right")
    t.add_column("margin\n(mean)", justify="right")
    t.add_column("working capital\nneeded", justify="right")
    for r in rows[1:]:
        ch = r.get("change")
        if not r["applicable"] or not ch:
            continue
        t.add_row(r["name"], *[_delta(ch.get(k), u, cur) for k, u in
                               (("ran_out_of_cash", "pp"), ("lowest_cash", "money"), ("margin", "money"), ("working_capital", "money"))])
    console.print(t)
    console.print("[bold]In plain words[/bold]")
    for r in rows:
        console.print(f"  • {r['sentence']}", highlight=False)
    if summary.get("unit_economics"):
        from ..stress.economics import sentence

        line = sentence(summary["unit_economics"], summary["organisation"], cur, rows[0].get("ran_out_of_cash", {}).get("mean"))
        if line:
            console.print(f"  • {line}", highlight=False)
    console.print(
        "Working capital needed = the extra opening reserve that keeps the chance of running out of cash at or below "
        f"{summary['target']:.0%}. Lowest cash and margin assume the overdraft is extended as far as needed, so they show "
        "how deep the hole gets. Changes are means of per-replication differences (common random numbers) with 95% "
        "intervals; for working capital, the change in the figure with a paired bootstrap interval.",
        style="dim",
    )


def print_reverse(summary: dict, console: Console) -> None:
    rev = summary.get("reverse")
    if not rev:
        return
    if rev.get("note"):
        console.print(f"[bold]Reverse stress test[/bold]: {rev['note']}.")
        return
    levels = rev["levels"]
    t = Table(show_lines=True, title=f"Reverse stress test: the smallest shock that sinks {summary['organisation']} "
              f"({rev['replications']} replications per shock)", title_justify="left")
    t.add_column("shock", min_width=14)
    for q in levels:
        t.add_column(f"P(runs out) reaches {q:.0%}\nshock (95% interval)\n[dim]bracket: P below → P at[/dim]", justify="right")
    by_dim: dict[str, dict] = {}
    for r in rev["results"]:
        by_dim.setdefault(r["dimension"], {})[r["level"]] = r
    from ..stress.reverse import _bare, _fmt

    for dim, rows in by_dim.items():
        cells = []
        for q in levels:
            r = rows.get(q)
            if r is None:
                cells.append("–")
            elif r["reached"] == "at_base":
                cells.append(f"already without a shock\n(P = {r['p_at_base']:.0%})")
            elif r["reached"] == "no":
                cells.append(f"not reached up to\n{_fmt(dim, r['range_searched'][1])}")
            else:
                unit = "" if dim == "delay" else "%"
                hi = _bare(dim, r["hi"]) + (unit if r["hi"] is not None else "")
                cells.append(f"{_fmt(dim, r['shock'])} ({_bare(dim, r['lo'])}–{hi})\n"
                             f"[dim]{_fmt(dim, r['bracket_lo'])}: {r['p_at_bracket_lo']:.0%} → "
                             f"{_fmt(dim, r['bracket_hi'])}: {r['p_at_bracket_hi']:.0%}"
                             f"{'' if r['verified'] else ' (common-shock search)'}[/dim]")
        label = next(d["label"] for d in rev["dimensions"] if d["dimension"] == dim)
        t.add_row(label, *cells)
    console.print(t)
    for line in reverse_lines(rev, summary["organisation"]):
        console.print(f"  • {line}", highlight=False)
    for s in rev.get("skipped", []):
        console.print(f"  • {s['dimension']}: {s['note']}", highlight=False)
    console.print(
        "Each replication is bisected for the shock at which it first runs out of cash (common random numbers), then the "
        "answer is checked by running every replication at the shock found and one step below (the bracket). Search "
        "precision: one grid step (1 percentage point; 2 for cost inflation; 1 month for delays). The interval is the "
        "distribution-free 95% interval of that quantile over replications.",
        style="dim",
    )


@click.command()
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option("--organisation", help="Organisation to stress-test [default: the contract holder].")
@click.option("--stresses", "stresses_path", type=click.Path(dir_okay=False), help="YAML file of your own stresses (docs/stress-testing.md).")
@click.option("--combine", multiple=True, help="Also run stresses together, e.g. --combine shortfall_25,delay_3 (repeatable).")
@click.option("--only", help="Run only these stresses (comma-separated names; the base always runs).")
@replications_option(500, "Replications of each stress.", min=2)
@seed_option(0, "Root random seed (the same streams for every stress).")
@click.option("--target", default=0.05, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Highest acceptable chance of running out of cash, for the working capital figure.")
@click.option("--reverse", is_flag=True, help="Also find, per stress dimension, the smallest shock that sinks the bid 50% (and target) of the time.")
@click.option("--reverse-replications", type=click.IntRange(min=2), default=None,
              help=f"Replications per shock in the reverse search [default: the smaller of --replications and {DEFAULT_REVERSE_REPLICATIONS}].")
@click.option("--extra-reserve", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Run everything as if the organisation started with this much more cash (pounds), e.g. the working capital found.")
@click.option("--value-replications", type=click.IntRange(min=0), default=20, show_default=True,
              help="Scenarios with a value section: replications of each stress for its net present public value (0: skip).")
@report_option("Also write stress.html with a tornado chart and failure-against-reserve chart.")
@out_option("Output folder [default: results/stress/<scenario>/<organisation>].")
@executor_option
@workers_option()
@quiet_option()
@json_option
@overwrite_option
@allow_large_option
def stress(scenario, organisation, stresses_path, combine, only, replications, seed, target, reverse, reverse_replications,
           extra_reserve, value_replications, with_report, out, executor, workers, quiet, as_json, overwrite):
    """Stress-test one organisation's cash in SCENARIO: chance of running out, the cash trough, working capital needed."""
    quiet = quiet or as_json
    from ..stress.run import (StressError, contract_holder, load_stresses_file, parse_combine_option, results_folder,
                         run_stress_test, write_results)
    from ..store import KIND_REPORT, KIND_STRESS, check_out, manifest
    from ..scenario.schema import scenario_from_dict

    try:
        raw, sc = validate_file(scenario)
    except ScenarioError as exc:
        exit_if_wrong_kind(scenario, "scenario")
        _problems_exit(exc, "the scenario")
    report = with_report
    names = [o.name for o in sc.organisation_specs]
    if out and not organisation and out in names and not Path(out).exists():
        fail_input(f"-o is now short for --out (the output folder), not --organisation; to stress-test {out!r}, "
                   f"write --organisation {out}. Nothing was run or written.")
    org = organisation or contract_holder(raw)
    if org not in names:
        fail_input(f"--organisation: unknown organisation {org!r} in {scenario}; organisations are {names}")
    run_size_or_exit(sc, replications, scenario)
    if extra_reserve:
        from ..scenario.schema import scenario_from_dict
        from ..stress.catalogue import unlimited

        try:
            scenario_from_dict(unlimited(raw, org, extra_reserve), scenario)
        except ScenarioError as exc:
            fail_input(f"--extra-reserve {extra_reserve:g}: " + "; ".join(f"{p + ': ' if p else ''}{r}" for p, r in exc.problems))
    sfile = None
    if stresses_path:
        try:
            sfile = load_stresses_file(stresses_path)
        except ScenarioError as exc:
            exit_if_wrong_kind(stresses_path, "stresses")
            _problems_exit(exc, "the stresses file")
    only_list = [s.strip() for s in only.split(",") if s.strip()] if only else None
    rev_n = reverse_replications or min(replications, DEFAULT_REVERSE_REPLICATIONS)
    console = Console()
    try:
        from ..stress.run import build_stresses

        build_stresses(raw, org, scenario, sfile, parse_combine_option(combine), only_list)  # all input checks, before running
    except StressError as exc:
        _problems_exit(exc, "the stresses" if exc.source == scenario else "the stresses file")
    with writing():
        out = Path(out) if out else results_folder(sc.name, org)
        check_out(out, KIND_STRESS, overwrite=overwrite)  # before the work, so a refusal costs nothing
        if report:
            check_out(out / "report", KIND_REPORT, overwrite=overwrite)
    with progress_bar(console, disable=quiet) as bar:
        tasks: dict[str, int] = {}

        def tick(phase: str, k: int, total: int):
            if phase not in tasks:
                tasks[phase] = bar.add_task(f"{'stresses' if phase == 'stresses' else 'reverse search'}", total=total or None, rate="")
            task = tasks[phase]
            if total:
                bar.update(task, total=total)
            bar.advance(task, k)
            t = bar.tasks[task]
            bar.update(task, rate=f"{t.completed / max(t.elapsed or 1e-9, 1e-9):.0f} runs/s")

        try:
            result = run_stress_test(raw, org, source=scenario, stresses_file=sfile, combine_option=parse_combine_option(combine),
                                     only=only_list, replications=replications, seed=seed, target=target, executor=executor,
                                     workers=workers, reverse=reverse, reverse_replications=rev_n, extra_reserve=extra_reserve,
                                     progress=tick)
        except StressError as exc:
            _problems_exit(exc, "the stresses")
    man = manifest(file_hash(scenario), seed, {
        "kind": "pbrsim-stress", "scenario": str(scenario), "organisation": org, "replications": replications,
        "target": target, "extra_reserve": extra_reserve, "stresses_file": str(stresses_path) if stresses_path else None,
        "stresses_file_sha256": file_hash(stresses_path) if stresses_path else None,
        "combine": list(combine), "only": only_list, "reverse": reverse, "reverse_replications": rev_n if reverse else None,
        "executor": executor, "workers": workers,
    })
    extra = {}
    if sc.value is not None and value_replications:
        extra["value"] = _stressed_value(result, seed, value_replications, console, quiet)
    summary = {**result.summary(), **extra}
    with writing():
        write_results(result, out, man, extra, overwrite=overwrite)
    report_path = None
    if report:
        from ..report.stress import write_stress_report

        with writing():
            report_path = write_stress_report(summary, out / "report", overwrite=overwrite, source=out)
    if as_json:
        print_json(summary)
    if quiet:
        return
    print_stress_table(summary, console)
    if "value" in summary:
        from .value_tables import print_stressed_value

        print_stressed_value(summary["value"], console, sc.currency)
    print_reverse(summary, console)
    tm = result.timing
    console.print(f"{tm['replications_run'] + (summary['reverse'] or {}).get('replications_run', 0):,} replications run in "
                  f"{tm['total_seconds']:.1f} s. Results written to [bold]{out}[/bold] (stresses.parquet, replications.parquet, "
                  f"cash.parquet, unit_economics.parquet{', reverse.parquet' if reverse else ''}, summary.json, manifest.json)."
                  + (f" Report: [bold]{report_path}[/bold]." if report_path else ""))


def _stressed_value(result, seed: int, replications: int, console: Console, quiet: bool) -> list[dict]:
    """Net present public value of the base and each applicable stress (``pbrsim.value.stress``)."""
    from ..value.stress import value_under_stress

    variants = [(v.name, v.stress.label if v.stress else "Unstressed base", v.raw) for v in result.variants if v.change.applicable]
    with progress_bar(console, disable=quiet) as bar:
        task = bar.add_task("public value under each stress", total=len(variants) * replications, rate="")
        return value_under_stress(variants, seed, replications, progress=lambda k: bar.advance(task, k))


COMMANDS = [stress]
