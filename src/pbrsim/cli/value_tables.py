"""Terminal tables of public value: value for money, who pays and who saves, the tariff check."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..model.money import interval, money


def _ratio(x) -> str:
    return f"{x:.2f}"


def print_value(v: dict, console: Console, currency: str = "GBP") -> None:
    """The ``value`` part of a run summary (means over replications with 95% intervals)."""
    m = lambda x: money(x, currency)  # noqa: E731
    ob = v["optimism_bias"]
    console.print(
        f"[bold]Value for money[/bold] against the counterfactual (the same clients without the programme, same random "
        f"numbers): present values in {v['base_year']} prices over {v['horizon_years']} years, {v['discounting']}; "
        f"optimism bias +{ob['costs']:.0%} on costs, -{ob['benefits']:.0%} on gains."
    )
    t = Table(title="Value for money", title_justify="left")
    t.add_column("")
    t.add_column("per contract", justify="right")
    t.add_row("[bold]net present public value[/bold]", interval(v["net_public_value"], m))
    t.add_row("public gains (every budget holder)", interval(v["public_gains"], m))
    t.add_row(f"costs: the commissioner's spend ({v['commissioner_budget']})", interval(v["costs"], m))
    t.add_row("benefit-cost ratio (gains incl. the person's ÷ costs)", interval(v["benefit_cost_ratio"], _ratio))
    t.add_row("fiscal return (public gains ÷ costs)", interval(v["fiscal_return"], _ratio))
    pb = v["payback_months"]
    never = pb["never"]["mean"] or 0.0
    text = "not within the appraisal" if pb["median"] is None else f"{pb['median']:.0f} months (median)"
    if never and pb["median"] is not None:
        text += f"; never in {never:.0%} of runs"
    t.add_row("payback", text)
    if "deadweight" in v:
        t.add_row("outcomes with the programme", interval(v["outcomes"], lambda x: f"{x:.1f}"))
        t.add_row("outcomes without it (counterfactual)", interval(v["outcomes_without_programme"], lambda x: f"{x:.1f}"))
        t.add_row("deadweight (share that would have happened anyway)", interval(v["deadweight"]))
    console.print(t)
    print_holders(v["holders"], console, currency)
    print_tariffs(v["lines"], console, currency)


def print_holders(holders: list[dict], console: Console, currency: str = "GBP") -> None:
    m = lambda x: money(x, currency)  # noqa: E731
    t = Table(title="Who pays, who saves (present values)", title_justify="left")
    for col in ("budget holder", "pays", "saves", "net"):
        t.add_column(col, justify="left" if col == "budget holder" else "right")
    for h in holders:
        name = h["holder"] + ("" if h["public"] else " (not public money)")
        t.add_row(name, interval(h["pays"], m), interval(h["saves"], m), interval(h["net"], m))
    console.print(t)


def print_tariffs(lines: list[dict], console: Console, currency: str = "GBP") -> None:
    m = lambda x: "–" if x is None else money(x, currency)  # noqa: E731
    t = Table(title="Price against value and cost, per outcome paid (present values)", title_justify="left")
    for col in ("payment", "outcomes paid", "price", "public value", "provider cost", "check"):
        t.add_column(col, justify="left" if col in ("payment", "check") else "right")
    for r in lines:
        t.add_row(r["line"] + ("" if r["kind"] == "contract" else f" ({r['kind']})"), f"{r['outcomes']['mean']:.1f}",
                  m(r["price_per_outcome"]["mean"]), m(r["value_per_outcome"]["mean"]), m(r["provider_cost_per_outcome"]["mean"]),
                  ", ".join(r["flags"]) or "within cost and value", end_section=r["kind"] == "contract")
    console.print(t)
    console.print(
        "First row: the whole contract per client. Per line: its average price per outcome paid, against all the public "
        "value the programme creates per outcome paid on that line (above value = even all of it does not cover the price); "
        "provider cost per outcome is checked only for a contract with a single payment line.",
        style="dim",
    )


def print_exact_value(v: dict, console: Console, currency: str = "GBP") -> None:
    """Expected value figures from exact mode (no intervals)."""
    m = lambda x: money(x, currency)  # noqa: E731
    t = Table(title="Expected public value (exact, against the counterfactual)", title_justify="left")
    t.add_column("")
    t.add_column("expected", justify="right")
    t.add_row("[bold]net present public value[/bold]", m(v["net_public_value"]))
    t.add_row("public gains", m(v["value_public_benefits"]))
    t.add_row("costs (commissioner's spend)", m(v["value_costs"]))
    if v["value_costs"]:
        t.add_row("benefit-cost ratio", _ratio(v["value_benefits"] / v["value_costs"]))
        t.add_row("fiscal return", _ratio(v["value_public_benefits"] / v["value_costs"]))
    pb = v["payback_months"]
    t.add_row("payback of the expected flows", "not within the appraisal" if pb != pb else f"{pb:.0f} months")
    for k, x in v.items():
        if k.startswith("net_public_value["):
            t.add_row(f"  net for {k[17:-1]}", m(x))
    console.print(t)


def print_stressed_value(rows: list[dict], console: Console, currency: str = "GBP") -> None:
    """Net present public value under each stress, with the paired change against the base."""
    m = lambda x: money(x, currency)  # noqa: E731
    t = Table(show_lines=True, title="Public value under each stress (against the counterfactual)", title_justify="left")
    for col in ("stress", "net present public value", "change against the base", "benefit-cost ratio"):
        t.add_column(col, justify="left" if col == "stress" else "right", overflow="fold")
    for r in rows:
        ch = r.get("change")
        t.add_row(r["label"] + f"\n[dim]{r['name']}[/dim]", interval(r["net_public_value"], m),
                  "" if ch is None else interval(ch, lambda x: ("+" if x > 0 else "") + m(x)),
                  interval(r["benefit_cost_ratio"], _ratio))
    console.print(t)
