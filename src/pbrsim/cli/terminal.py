"""Readable terminal summaries of a run (rich tables)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..model.money import interval, irr_range, money, pct


def print_summary(summary: dict, console: Console | None = None, out_dir: str | None = None):
    console = console or Console()
    cur = summary.get("currency", "GBP")
    m = lambda x: money(x, cur)  # noqa: E731
    console.print(
        f"[bold]{summary['scenario']}[/bold]: {summary['replications']} replications, seed {summary['seed']}, "
        f"{summary['months']}-month contract; outcome = first entry into [italic]{summary.get('primary_outcome')}[/italic]. "
        "Figures are means over replications with 95% intervals; rates are pooled ratios (docs/metrics.md)."
    )
    for w in summary.get("warnings") or []:
        console.print(f"[yellow]warning:[/yellow] {w}", highlight=False)
    t = Table(title="Clients by segment", title_justify="left")
    ms = summary.get("milestone_state")
    for col in ("segment", "referrals", "outcomes", f"outcome rate ({summary.get('primary_outcome')})",
                f"milestone rate ({ms})" if ms else "milestone rate"):
        t.add_column(col, justify="left" if col == "segment" else "right")
    for row in summary["segments"]:
        t.add_row(
            row["segment"],
            f"{row['referrals']['mean']:.1f}",
            f"{row['outcomes']['mean']:.1f}" if "outcomes" in row else "–",
            interval(row.get("outcome_rate")),
            interval(row.get("milestone_rate")),
            end_section=row["segment"] != "all" and row is summary["segments"][-2],
        )
    console.print(t)
    lasting = summary.get("outcome_duration")
    if lasting and lasting["months_after_outcome"].get("mean") is not None:
        months = lambda x: f"{x:.1f}"  # noqa: E731
        console.print(f"How long outcomes last: {interval(lasting['months_after_outcome'], months)} months in "
                      f"{summary.get('primary_outcome')} in the {lasting['window_months']} months after reaching it ("
                      + "; ".join(f"{r['segment']} {interval(r['months_after_outcome'], months)}" for r in lasting["segments"])
                      + ").", highlight=False)

    park = summary.get("parking")
    if park:
        t = Table(title="Who gets served: parking and dropped clients", title_justify="left")
        for col in ("segment", "parking rate", "dropped clients (total)", "of which: provider failed", "dropped rate"):
            t.add_column(col, justify="left" if col == "segment" else "right")
        count = lambda x: f"{x:.1f}"  # noqa: E731
        for row in park["segments"]:
            t.add_row(row["segment"], interval(row["parking_rate"]), interval(row["dropped"], count),
                      interval(row.get("dropped_failure"), count), interval(row["dropped_rate"]),
                      end_section=row is park["segments"][-2])
        console.print(t)
        if park.get("classes"):  # latent classes: who is parked inside each payment group
            t = Table(title="Inside each segment: parking and outcomes by latent class", title_justify="left")
            for col in ("segment", "class", "clients referred", "parking rate", "outcome rate"):
                t.add_column(col, justify="left" if col in ("segment", "class") else "right")
            for row in park["classes"]:
                t.add_row(row["segment"], row["latent_class"], interval(row["referrals"], count), interval(row["parking_rate"]),
                          interval(row["outcome_rate"]))
            console.print(t)
        share = park.get("dropped_full_service_share", 0.25)
        most, least = ", ".join(park.get("most_complex") or []), ", ".join(park.get("least_complex") or [])
        console.print(
            f"Parking = share of in-service client-months at minimal service. Dropped = left without an outcome, either "
            f"when their provider failed or after full service in under {share:.0%} of their months in service."
        )
        gap = park.get("equity_ratio")
        if gap and gap.get("mean") is not None:
            console.print(f"Equity ratio (outcome rate of {most} ÷ of {least}; 1 = parity, higher is fairer): "
                          f"[bold]{interval(gap, lambda x: f'{x:.2f}')}[/bold]; "
                          f"cost to the commissioner per {most} outcome: {interval(park.get('cost_per_complex_outcome'), m)}")

    c = summary["commissioner"]
    t = Table(title=f"Commissioner pays", title_justify="left")
    t.add_column("payment type")
    t.add_column("paid per contract", justify="right")
    for kind, ci in c["paid_by_kind"].items():
        if ci["mean"]:
            t.add_row(kind.replace("_", " "), interval(ci, m))
    if "clawed_back" in c:
        t.add_row("clawed back at volume reconciliation", interval(c["clawed_back"], m))
    t.add_row("[bold]total[/bold]" + (" (net of clawback)" if "clawed_back" in c else ""), interval(c["paid_total"], m), end_section=True)
    if "prime_kept" in c:
        t.add_row("  of which the prime keeps", interval(c["prime_kept"], m))
        t.add_row("  of which passed to subcontractors", interval(c["paid_to_subcontractors"], m), end_section=True)
    t.add_row("not paid: over the cap", interval(c["capped_total"], m))
    t.add_row("cap reached (share of runs)", interval(c["cap_reached"]))
    t.add_row("[bold]cost per outcome[/bold]", interval(c.get("cost_per_outcome"), m))
    console.print(t)

    orgs = summary["organisations"]
    parking_of = {p["organisation"]: p["parking_rate"] for p in (park or {}).get("organisations", [])}
    title = "Provider finances" if len(orgs) == 1 else "Finances of each organisation in the supply chain"
    t = Table(title=f"{title} (per contract, over replications)", title_justify="left")
    t.add_column("")
    for o in orgs:
        t.add_column(o["organisation"], justify="right")
    rows = [
        ("income", lambda o: interval(o["income"], m)),
        ("costs", lambda o: interval(o["costs"], m)),
        ("margin: median (5th percentile)", lambda o: f"{m(o['margin']['p50'])} ({m(o['margin']['p5'])})"),
        ("lowest cash: median (5th percentile)", lambda o: f"{m(o['lowest_cash']['p50'])} ({m(o['lowest_cash']['p5'])})"),
        ("month of the trough (median)", lambda o: f"{o['trough_month']['median']:.0f}"),
        ("months below zero (mean)", lambda o: f"{o['months_below_zero']['mean']:.1f}"),
        ("parking rate", lambda o: interval(parking_of.get(o["organisation"]))),
        ("ran out of cash (share of runs)", lambda o: interval(o["ran_out_of_cash"])),
        ("when it failed: month (median)", lambda o: "–" if o["failure_month"]["median"] is None else f"{o['failure_month']['median']:.0f}"),
        ("when it failed: clients affected (mean)", lambda o: "–" if o["clients_affected"]["mean"] is None else f"{o['clients_affected']['mean']:.0f}"),
    ]
    for label, cell in rows:
        t.add_row(label, *[cell(o) for o in orgs])
    console.print(t)
    inv = summary.get("investor")
    if inv:
        print_investors(inv, m, console)
    if out_dir:
        console.print(f"Results written to [bold]{out_dir}[/bold] (Parquet tables, summary.json, manifest.json).")


def print_investors(inv: dict, m, console: Console):
    """The investors' view: one column for all investors, and one per tranche when there are several."""
    t = Table(title=f"Investors: {inv['investor']} → {inv['organisation']} (per contract, over replications)", title_justify="left")
    t.add_column("")
    cols = [inv] + inv.get("tranches", [])
    for c in cols:
        t.add_column("all investors" if c is inv else c["tranche"], justify="right")
    hurdle = pct(inv["hurdle_rate"])
    rows = [
        ("put in (drawdowns and fees)", lambda c: interval(c["drawn"], m)),
        ("received (repayments, coupons, guarantees)", lambda c: interval(c["repaid"], m)),
        ("money multiple (received ÷ put in)", lambda c: interval(c["multiple"], lambda x: f"{x:.2f}")),
        ("capital lost (mean)", lambda c: interval(c["loss"], m)),
        ("lost capital (share of runs)", lambda c: interval(c["lost_money"])),
        ("IRR: median (5th to 95th percentile)", lambda c: irr_range(c["irr"])),
        (f"IRR below the {hurdle} hurdle (share of runs)", lambda c: interval(c["irr_below_hurdle"])),
        ("payback month (median)", lambda c: "–" if c["payback_month"]["median"] is None else f"{c['payback_month']['median']:.0f}"),
        ("runs with several IRRs (nearest 0% shown)", lambda c: str(c["irr_status"]["several_roots"])),
        ("runs with no IRR (nothing drawn, or no root)", lambda c: str(c["irr_status"]["no_sign_change"] + c["irr_status"]["no_root"])),
    ]
    for label, cell in rows:
        t.add_row(label, *[cell(c) for c in cols])
    for key, label in (("guaranteed", "paid by the guarantor"), ("intermediary_fees", "management fees to the intermediary"),
                       ("topped_up", "top-up outcome payments")):
        if key in inv:
            t.add_row(label, interval(inv[key], m), *[""] * (len(cols) - 1))
    console.print(t)


def print_exact(ex, console: Console | None = None):
    console = console or Console()
    s = ex.summary()
    console.print(f"[bold]{s['scenario']}[/bold]: exact expected values (absorbing Markov chain algebra).")
    t = Table(title="Expected clients by segment", title_justify="left")
    ms = s.get("milestone_state")
    for col in ("segment", "referrals", "outcomes", f"outcome rate ({s.get('primary_outcome')})",
                f"milestone rate ({ms})" if ms else "milestone rate"):
        t.add_column(col, justify="left" if col == "segment" else "right")
    for row in s["segments"]:
        t.add_row(row["segment"], f"{row['referrals']:.1f}", f"{row.get('outcomes', float('nan')):.2f}",
                  pct(row.get("outcome_rate")), pct(row.get("milestone_rate")))
    console.print(t)
    t = Table(title="Expected commissioner payments", title_justify="left")
    t.add_column("payment type")
    t.add_column("expected", justify="right")
    for kind, v in s["commissioner"]["paid_by_kind"].items():
        t.add_row(kind.replace("_", " "), money(v))
    t.add_row("[bold]total[/bold]", money(s["commissioner"]["paid_total"]))
    t.add_row("[bold]cost per outcome[/bold]", money(s["commissioner"]["cost_per_outcome"]))
    console.print(t)
    t = Table(title="Expected income and costs by organisation", title_justify="left")
    for col in ("organisation", "role", "income", "costs"):
        t.add_column(col, justify="left" if col in ("organisation", "role") else "right")
    for o in s["organisations"]:
        t.add_row(o["organisation"], o["role"], money(o["income"]), money(o["costs"]))
    console.print(t)
