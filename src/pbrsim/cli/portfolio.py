"""``pbrsim portfolio``: several separate contracts run together, with totals for the whole (docs/portfolios.md)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from ..model.money import interval, money, pct
from .common import exit_with_problems, progress_bar


def print_portfolio(summary: dict, console: Console, out_dir: str | None = None) -> None:
    cur = summary.get("currency", "GBP")
    m = lambda x: money(x, cur)  # noqa: E731
    console.print(f"[bold]{summary['portfolio']}[/bold]: {len(summary['members'])} contracts, {summary['replications']} "
                  f"replications each, seed {summary['seed']}. Figures are means over replications with 95% intervals; "
                  "the total row sums the members replication by replication.")
    t = Table(title="Contracts and their total", title_justify="left")
    for col in ("contract", "referrals", "commissioner pays", "investors put in", "investors repaid", "provider ran out of cash"):
        t.add_column(col, justify="left" if col == "contract" else "right")
    for row in summary["members"]:
        t.add_row(row["member"], f"{row['referrals']['mean']:,.1f}", interval(row["paid_total"], m),
                  interval(row["investor_drawn"], m), interval(row["investor_repaid"], m),
                  interval(row["ran_out_of_cash"], pct), end_section=row is summary["members"][-1])
    f = summary["fund"]
    t.add_row("[bold]total[/bold]", f"{f['referrals']['mean']:,.1f}", interval(f["paid_total"], m), interval(f["investor_drawn"], m),
              interval(f["investor_repaid"], m), f"any: {interval(f['any_member_ran_out_of_cash'], pct)}")
    console.print(t)
    t = Table(title="Whole portfolio by payment line (claims accepted and paid, per replication)", title_justify="left")
    for col in ("payment line", "claims accepted", "paid"):
        t.add_column(col, justify="left" if col == "payment line" else "right")
    for row in summary["lines"]:
        t.add_row(row["line"], interval(row["accepted_claims"], lambda x: f"{x:,.1f}"), interval(row["paid"], m))
    console.print(t)
    console.print(f"Paid per referral over the portfolio: {interval(f['paid_per_referral'], m)}; contracts reaching their "
                  f"cap: {f['members_cap_reached']['mean']:.2f} on average.")
    if out_dir:
        console.print(f"Results written to [bold]{out_dir}[/bold] (members.parquet, lines.parquet, fund.parquet, summary.json).")


@click.command()
@click.argument("portfolio_file", metavar="PORTFOLIO", type=click.Path(dir_okay=False))
@click.option("--seed", type=int, help="Root random seed [default: the file's].")
@click.option("--replications", "-n", type=click.IntRange(min=1), help="Replications of every contract [default: the file's].")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder [default: results/<portfolio name>].")
@click.option("--quiet", is_flag=True, help="No progress bar or tables.")
def portfolio(portfolio_file, seed, replications, out, quiet):
    """Run every contract of PORTFOLIO and report each one and their total (a fund of projects, say)."""
    from ..portfolio.portfolio import load_portfolio
    from ..portfolio.run import run_portfolio
    from ..scenario.schema import ScenarioError, file_hash
    from ..store import manifest, write_folder

    try:
        pf = load_portfolio(portfolio_file)
    except ScenarioError as exc:
        exit_with_problems(exc.source, exc.problems,
                           "Nothing was run or written. Fix the file and try again (fields are described in docs/portfolios.md).")
    R = replications or pf.replications
    out = Path(out) if out else Path("results") / pf.name
    console = Console()
    with progress_bar(console, disable=quiet) as bar:
        task = bar.add_task(f"simulating {pf.name}", total=R * len(pf.members), rate="")

        def tick(member, k):
            bar.advance(task, k)
            bar.update(task, rate=member)
        result = run_portfolio(pf, seed=seed, replications=R, progress=tick)
    man = manifest(file_hash(portfolio_file), result.seed, {
        "portfolio": str(portfolio_file), "replications": R,
        "members": [{k: row[k] for k in ("member", "scenario", "scenario_sha256", "seed")} for row in result.summary["members"]],
    })
    write_folder(out, {"members": result.members, "lines": result.lines, "fund": result.fund}, result.summary, man)
    if not quiet:
        print_portfolio(result.summary, console, str(out))


COMMANDS = [portfolio]
