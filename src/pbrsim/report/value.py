"""The report's value-for-money section, from the ``value`` part of a run summary.

Plain content (paragraphs, and tables as rows of ``(text, metric)`` cells) that ``build`` lays out as
the first section of a run report; the numbers are formatted by ``fmt`` as in the terminal tables.
"""

from __future__ import annotations

from . import fmt

INTRO = ("What the outcomes are worth to the public purse and to the people served, against what the same clients "
         "would have done without the programme (the counterfactual, run on the same random numbers so that the "
         "difference is the programme's effect and not luck). Figures are Green Book present values in real prices; "
         "docs/value.md gives the method and a worked example.")


def value_content(v: dict, currency: str) -> list[tuple]:
    """``("p", text)`` and ``("table", id, caption, head, rows, note)`` items; rows are ``(label, [(text, metric), ...])``."""
    ob = v["optimism_bias"]
    m = lambda ci: fmt.interval(ci, "money", currency)  # noqa: E731
    r = lambda ci: fmt.interval(ci, "ratio")  # noqa: E731
    pb = v["payback_months"]
    payback = "not within the appraisal period" if pb["median"] is None else f"{pb['median']:.0f} months (median over runs)"
    headline = (f"Net present public value {m(v['net_public_value'])}: public gains {m(v['public_gains'])} against the "
                f"commissioner's spend {m(v['costs'])}. Benefit-cost ratio {r(v['benefit_cost_ratio'])}, fiscal return "
                f"{r(v['fiscal_return'])}, payback {payback}.")
    out: list[tuple] = [("p", INTRO), ("p", headline)]
    rows = [
        ("net present public value", [(m(v["net_public_value"]), "net_public_value")]),
        ("public gains (every budget holder)", [(m(v["public_gains"]), "value_public_benefits")]),
        (f"costs: the commissioner's spend ({v['commissioner_budget']})", [(m(v["costs"]), "value_costs")]),
        ("benefit-cost ratio (all gains ÷ costs)", [(r(v["benefit_cost_ratio"]), "benefit_cost_ratio")]),
        ("fiscal return (public gains ÷ costs)", [(r(v["fiscal_return"]), "fiscal_return")]),
        ("payback", [(payback, "payback_months")]),
    ]
    if "deadweight" in v:
        rows += [
            ("outcomes with the programme", [(fmt.interval(v["outcomes"], "number"), "outcomes")]),
            ("outcomes without it (counterfactual)", [(fmt.interval(v["outcomes_without_programme"], "number"), "outcomes_without_programme")]),
            ("deadweight", [(fmt.interval(v["deadweight"]), "deadweight")]),
        ]
    out.append(("table", "table-value", "Value for money per contract (means over runs, 95% intervals)", ["", "per contract"], rows,
                f"Present values in {v['base_year']} prices over {v['horizon_years']} years; {v['discounting']}. Optimism bias: "
                f"+{ob['costs']:.0%} on costs, −{ob['benefits']:.0%} on gains. Payback: months until the cumulative discounted "
                "public net value turns non-negative for good."))
    out.append(("table", "table-who-pays", "Who pays, who saves (present values, means over runs)", ["budget holder", "pays", "saves", "net"],
                [(h["holder"] + ("" if h["public"] else " (not public money)"),
                  [(m(h["pays"]), f"pays[{h['holder']}]"), (m(h["saves"]), f"value_saves[{h['holder']}]"),
                   (m(h["net"]), f"net_public_value[{h['holder']}]")]) for h in v["holders"]],
                "The wrong-pocket problem in one table: the commissioner's budget pays, other budgets may save."))
    money1 = lambda x: fmt.money(x, currency)  # noqa: E731
    out.append(("table", "table-tariff-check", "Price against value and cost, per outcome paid (present values)",
                ["payment", "outcomes paid", "price", "public value", "provider cost", "check"],
                [(row["line"], [(fmt.number(row["outcomes"]["mean"]), f"line_outcomes[{row['line']}]"),
                                (money1(row["price_per_outcome"]["mean"]), f"line_price[{row['line']}]"),
                                (money1(row["value_per_outcome"]["mean"]), f"line_value[{row['line']}]"),
                                (money1(row["provider_cost_per_outcome"]["mean"]), f"line_cost[{row['line']}]"),
                                (", ".join(row["flags"]) or "within cost and value", f"line_flags[{row['line']}]")])
                 for row in v["lines"]],
                "First row: the whole contract, per client. Then each payment line: its price per outcome against all the public "
                "value the programme creates per outcome paid on the line (above value = even that does not cover the price); "
                "the providers' cost per outcome is checked for a contract with a single payment line. An outcome should be "
                "priced between the cost of producing it and its value (Government Outcomes Lab, pricing outcomes)."))
    return out
