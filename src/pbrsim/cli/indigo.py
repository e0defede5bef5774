"""``pbrsim import-indigo``: a draft scenario from a GO Lab INDIGO impact-bond project (docs/indigo-import.md)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from .common import allow_large_option, fail_input, writing
from ..library.indigo import DEFAULT_DROPOUT, DEFAULT_LAG, Draft, IndigoError, build_draft
from ..scenario.schema import ScenarioError, load_scenario

STATUS = {
    "fitted": "fitted",
    "lowered_dropout": "fitted (lower dropout)",
    "not_met": "[bold red]NOT MET[/bold red]",
    "placeholder": "[yellow]PLACEHOLDER[/yellow]",
}


def targets_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}.targets.yaml")


def _write_atomically(texts: dict[Path, str]) -> None:
    """Write every file or none: each goes to a temporary file beside it first, the draft is checked, then renamed."""
    from ..store import Staged, WriteFailed

    with Staged(texts) as stage:
        for path, text in texts.items():
            try:
                stage[path].write_text(text, encoding="utf-8")
            except OSError as exc:
                raise WriteFailed(f"cannot write {path}: {exc.strerror or exc}. Nothing was written.") from None
        try:
            load_scenario(stage[next(iter(texts))])
        except ScenarioError as exc:  # figures in the INDIGO files that no scenario can hold
            problems = "; ".join(f"{p + ': ' if p else ''}{r}" for p, r in exc.problems[:5])
            fail_input(f"the draft built from the INDIGO files is not a valid scenario ({problems}). Nothing was written.")
        stage.commit()


def print_summary(draft: Draft, console: Console) -> None:
    t = Table(title=f"{draft.project_id} {draft.project_name}: priced outcomes as a ladder over {draft.months} months",
              title_justify="left")
    t.add_column("rung", justify="right")
    t.add_column("state\n[dim]INDIGO metric[/dim]", overflow="fold")
    t.add_column(f"price\n({draft.currency})", justify="right")
    t.add_column("achieved/\nengaged =\nrecorded", justify="right")
    t.add_column("model\nreach", justify="right")
    t.add_column("monthly\np", justify="right")
    t.add_column("status")
    for i, s in enumerate(draft.steps, start=1):
        m = s.metric
        recorded = "–" if m.rate is None else f"{m.achieved:,.0f}/{m.engaged:,.0f}\n= {m.rate:.4f}"
        price = f"{m.price:,.0f}" if m.price == int(m.price) else f"{m.price:,.2f}"
        kind = " (outcome)" if m.kind == "outcome" else ""
        t.add_row(str(i), f"{m.state}{kind}\n[dim]{m.id}[/dim]", price, recorded, f"{s.reach:.4f}", f"{s.p:.4f}", STATUS[s.status])
    console.print(t)


@click.command("import-indigo")
@click.argument("project_id")
@click.option("--folder", required=True, type=click.Path(), help="Folder holding the INDIGO CSV files (projects.csv, ...).")
@click.option("--out", type=click.Path(dir_okay=False), help="Draft scenario file to write [default: <project name>.yaml].")
@click.option("--overwrite", is_flag=True, help="Replace the draft and targets files if they exist (otherwise nothing is written).")
@click.option("--force", "overwrite", is_flag=True, hidden=True, help="Old name of --overwrite.")
@click.option("--dropout", default=DEFAULT_DROPOUT, show_default=True, type=click.FloatRange(0.0, 0.5),
              help="Assumed monthly probability of disengaging from a rung of the ladder.")
@click.option("--lag", default=DEFAULT_LAG, show_default=True, type=click.IntRange(0, 60),
              help="Assumed months from achieving an outcome to payment.")
@allow_large_option
def import_indigo(project_id, folder, out, overwrite, dropout, lag):
    """Draft a scenario from the rate card of INDIGO project PROJECT_ID (e.g. INDIGO-POJ-0131).

    Reads the GO Lab INDIGO impact-bond dataset files in FOLDER; writes the draft scenario and, when the
    project has recorded results, a calibration targets file (<out stem>.targets.yaml) beside it.
    """
    console = Console()
    try:
        draft = build_draft(folder, project_id, dropout=dropout, lag=lag)
    except IndigoError as exc:
        fail_input(f"{exc}. Nothing was written.")
    from ..store import safe_name

    out_path = Path(out) if out else Path(f"{safe_name(draft.name)}.yaml")
    tpath = targets_path(out_path)
    texts = {out_path: draft.scenario_text}
    if draft.targets_text:
        texts[tpath] = draft.targets_text
    existing = [str(p) for p in texts if p.exists()]
    if any(p.is_dir() for p in texts):
        fail_input(f"{out_path} is a folder; give a file name with --out. Nothing was written.")
    if existing and not overwrite:
        fail_input(f"{' and '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; use --overwrite to replace "
                   f"{'it' if len(existing) == 1 else 'them'} (a draft is meant to be edited, so it is never replaced silently). "
                   "Nothing was written.")
    with writing():
        _write_atomically(texts)

    print_summary(draft, console)
    if draft.headline is not None:
        console.print(f"Headline outcome (contract.primary_outcome, used for outcome rates and cost per outcome): "
                      f"[bold]{draft.headline.state}[/bold] ({draft.headline.id}) - {draft.headline_reason}.", highlight=False)
    for w in draft.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}", highlight=False)
    if draft.not_met:
        console.print(f"[bold red]NOT MET:[/bold red] {len(draft.not_met)} recorded rate(s) cannot be reached by the ladder: "
                      + ", ".join(s.metric.state for s in draft.not_met) + " (see the comments in the draft).", highlight=False)
    if draft.placeholders:
        console.print("[yellow]warning: placeholders to replace:[/yellow] " + "; ".join(draft.placeholders), highlight=False)
    console.print(f"Draft scenario written to [bold]{out_path}[/bold]" +
                  (f"; calibration targets to [bold]{tpath}[/bold]." if draft.targets_text else ". No recorded results, so no targets file."))
    console.print("It is a DRAFT: check every line marked ASSUMPTION or PLACEHOLDER (docs/indigo-import.md).")


COMMANDS = [import_indigo]
