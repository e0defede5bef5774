"""What the page shows, as JSON: headline figures, tables and chart data, from the same summary the command
line prints (``pbrsim run``), written with the same formatting (``model/money.py``), so a figure on the page
is the figure in the terminal, by the definitions of docs/metrics.md.

Each figure carries its text as printed (``text``) and its value (``value``, a fraction or pounds).
"""

from __future__ import annotations

import math

import numpy as np

from ..model.money import interval, irr_range, money, pct

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def number(x) -> float | None:
    """A figure for JSON: a float, or None for a missing, NaN or infinite value."""
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else x


def _ci(ci: dict | None) -> dict | None:
    if not ci or ci.get("mean") is None:
        return None
    return {"mean": number(ci["mean"]), "lo": number(ci.get("lo")), "hi": number(ci.get("hi"))}


def figure(fid: str, label: str, ci: dict | None, fmt=pct, unit: str = "fraction") -> dict:
    """One headline figure: its id (the page's ``data-figure``), label, text as the terminal prints it and value."""
    return {"id": fid, "label": label, "text": interval(ci, fmt), "value": number((ci or {}).get("mean")), "unit": unit}


def bars(cid: str, title: str, unit: str, rows: list[tuple[str, dict | None]], fmt=pct, note: str = "") -> dict:
    """A bar chart with 95% intervals and the table beside it (``rows``: category and its interval)."""
    return {"id": cid, "type": "bars", "title": title, "unit": unit, "note": note,
            "bars": [{"label": k, **(_ci(ci) or {"mean": None, "lo": None, "hi": None})} for k, ci in rows],
            "table": {"columns": ["", "mean (95% interval)" if any((ci or {}).get("lo") is not None for _, ci in rows) else "expected"],
                      "rows": [[k, interval(ci, fmt)] for k, ci in rows]}}


def cash_fans(monthly, organisations: list[str], currency: str) -> list[dict]:
    """Month-end cash of each organisation over replications: 5th, 25th, 50th, 75th and 95th percentiles by month
    (pounds), as the report's cash fan."""
    out = []
    if monthly is None or len(monthly) == 0:
        return out
    org = monthly["organisation"].astype(str).to_numpy()
    for name in organisations:
        m = monthly[org == name]
        if m.empty:
            continue
        wide = m.pivot_table(index="month", columns="replication", values="cash_pence", aggfunc="sum")
        q = np.nanquantile(wide.to_numpy(dtype=float) / 100.0, QUANTILES, axis=1)
        months = [int(x) for x in wide.index]
        rows = [[str(t), *[money(v, currency) for v in q[:, i]]] for i, t in enumerate(months)]
        out.append({"id": f"cash-{name}", "type": "fan", "title": f"Month-end cash: {name}", "unit": "money",
                    "months": months, "quantiles": {f"p{int(p * 100)}": [round(float(v), 2) for v in q[j]]
                                                    for j, p in enumerate(QUANTILES)},
                    "table": {"columns": ["month", "5th", "25th", "median", "75th", "95th"], "rows": rows}})
    return out


def montecarlo(result) -> dict:
    """The page's figures of a Monte Carlo run (``pbrsim.simulate``'s result)."""
    s = result.summary
    cur = s.get("currency", "GBP")
    m = lambda x: money(x, cur)  # noqa: E731
    segs = s["segments"]
    everyone = next(r for r in segs if r["segment"] == "all")
    orgs = s["organisations"]
    holder = orgs[0]
    c = s["commissioner"]
    head = [
        figure("outcome_rate", f"outcome rate ({s.get('primary_outcome')})", everyone.get("outcome_rate")),
        figure("failure_probability", f"{holder['organisation']} ran out of cash (share of runs)", holder["ran_out_of_cash"]),
        figure("paid_total", "commissioner pays", c["paid_total"], m, "money"),
        figure("cost_per_outcome", "cost per outcome", c.get("cost_per_outcome"), m, "money"),
        {"id": "lowest_cash", "label": f"{holder['organisation']}: lowest cash, median (5th percentile)",
         "text": f"{m(holder['lowest_cash']['p50'])} ({m(holder['lowest_cash']['p5'])})",
         "value": number(holder["lowest_cash"]["p50"]), "unit": "money"},
    ]
    charts = cash_fans(result.monthly, [o["organisation"] for o in orgs], cur)
    charts.append(bars("failure", "Ran out of cash (share of runs)", "fraction",
                       [(o["organisation"], o["ran_out_of_cash"]) for o in orgs],
                       note="Wilson 95% intervals; a run fails when cash falls below the overdraft limit"))
    charts.append(bars("outcomes", f"Outcome rate by segment ({s.get('primary_outcome')})", "fraction",
                       [(r["segment"], r.get("outcome_rate")) for r in segs]))
    park = s.get("parking")
    if park:
        charts.append(bars("parking", "Parking rate by segment (share of in-service client-months at minimal service)",
                           "fraction", [(r["segment"], r.get("parking_rate")) for r in park["segments"]]))
        if park.get("classes"):  # latent classes: who is parked inside each payment group
            charts.append(bars("parking-classes", "Parking rate by latent class inside each segment", "fraction",
                               [(f"{r['segment']}: {r['latent_class']}", r.get("parking_rate")) for r in park["classes"]],
                               note="Differences inside a payment group that the contract does not record (docs/behaviour.md §6)"))
    charts.append(bars("spend", "Commissioner pays, by payment type (per contract)", "money",
                       [(k.replace("_", " "), ci) for k, ci in c["paid_by_kind"].items() if ci.get("mean")], m))
    if "value" in s:
        v = s["value"]
        rows = [(f"{h['holder']}: net", h["net"]) for h in v.get("holders", [])]
        charts.append(bars("value", "Net present public value by budget holder", "money",
                           [("all public budgets", v["net_public_value"]), *rows], m,
                           note=f"benefit-cost ratio {interval(v.get('benefit_cost_ratio'), lambda x: f'{x:.2f}')}"))
    if "investor" in s:
        inv = s["investor"]
        charts.append(bars("investor", f"Investors ({inv['investor']}): put in and received", "money",
                           [("put in", inv["drawn"]), ("received", inv["repaid"]), ("capital lost", inv["loss"])], m,
                           note=f"money multiple {interval(inv['multiple'], lambda x: f'{x:.2f}')}; "
                                f"IRR {irr_range(inv.get('irr'))}; lost money in {interval(inv.get('lost_money'))} of runs"))
    org_rows = [["income", *[interval(o["income"], m) for o in orgs]],
                ["costs", *[interval(o["costs"], m) for o in orgs]],
                ["lowest cash: median (5th percentile)", *[f"{m(o['lowest_cash']['p50'])} ({m(o['lowest_cash']['p5'])})" for o in orgs]],
                ["ran out of cash (share of runs)", *[interval(o["ran_out_of_cash"]) for o in orgs]]]
    seg_rows = [[r["segment"], f"{r['referrals']['mean']:.1f}", f"{r['outcomes']['mean']:.1f}" if "outcomes" in r else "–",
                 interval(r.get("outcome_rate")), interval(r.get("milestone_rate"))] for r in segs]
    return {
        "kind": "montecarlo", "scenario": s["scenario"], "seed": s["seed"], "replications": s["replications"],
        "months": s["months"], "currency": cur, "warnings": s.get("warnings") or [],
        "headline": head, "charts": charts,
        "tables": [
            {"id": "segments", "title": "Clients by segment",
             "columns": ["segment", "referrals", "outcomes", f"outcome rate ({s.get('primary_outcome')})",
                         f"milestone rate ({s.get('milestone_state')})"], "rows": seg_rows},
            {"id": "organisations", "title": "Finances of each organisation (per contract, over replications)",
             "columns": ["", *[o["organisation"] for o in orgs]], "rows": org_rows},
        ],
        "note": ("Means over replications with 95% intervals; rates are pooled ratios; the share of runs that ran out "
                 "of cash has a Wilson interval (docs/metrics.md): the figures `pbrsim run` prints."),
    }


# ---------------------------------------------------------------------------------------------
# Exact mode


def relaxed(raw: dict) -> tuple[dict, list[str]]:
    """The design with what can bind set aside, and what was set aside: places (capacity), the overdraft limit
    and its interest (so nobody can fail), the cap and the cap per client. Exact mode applies to the result when nothing else
    (a policy, investor finance, cohort payments) breaks it."""
    import copy

    raw = copy.deepcopy(raw)
    out = []
    orgs = [(raw["provider"].get("name", "provider"), raw["provider"])] if raw.get("provider") else [(o["name"], o) for o in raw.get("organisations") or []]
    for name, o in orgs:
        if o.get("capacity") is not None:
            o["capacity"] = None
            out.append(f"{name}'s capacity")
        credit = o.setdefault("credit", {})
        if credit.get("limit", 0.0) is not None or credit.get("monthly_interest", 0):
            credit["limit"], credit["monthly_interest"] = None, 0.0
            out.append(f"{name}'s overdraft limit and interest")
    c = raw.get("contract") or {}
    if c.get("cap") is not None:
        c["cap"] = None
        out.append("the contract cap")
    if c.get("per_person_cap") is not None:
        c["per_person_cap"] = None
        out.append("the cap per client")
    return raw, out


def exact(sc) -> dict:
    """Expected values by Markov-chain algebra (``pbrsim run --method exact``); where the design is not exact as it
    stands, those of the design with capacity, the overdraft and the cap set aside, said plainly; or why not."""
    from ..engine.exact import ExactNotApplicable, check_exact, expected
    from ..engine.run import compile_model
    from ..scenario.schema import scenario_from_dict

    model = compile_model(sc)
    reasons = check_exact(model)
    set_aside: list[str] = []
    if reasons:
        raw, set_aside = relaxed(sc.to_dict())
        try:
            model = compile_model(scenario_from_dict(raw, f"{sc.name} (nothing binding)"))
        except Exception:  # noqa: BLE001 - the relaxed design is only a guide; say why exact mode does not apply
            return {"kind": "exact", "applies": False, "reasons": reasons}
        if check_exact(model):
            return {"kind": "exact", "applies": False, "reasons": reasons}
    try:
        ex = expected(model)
    except ExactNotApplicable as exc:
        return {"kind": "exact", "applies": False, "reasons": [str(exc)]}
    s = ex.summary()
    cur = sc.currency
    m = lambda x: money(x, cur)  # noqa: E731
    seg = {r["segment"]: r for r in s["segments"]}
    everyone = seg["all"]
    rate = everyone.get("outcome_rate")
    head = [{"id": "outcome_rate", "label": f"expected outcome rate ({s.get('primary_outcome')})", "text": pct(rate),
             "value": number(rate), "unit": "fraction"},
            {"id": "paid_total", "label": "commissioner pays (expected)", "text": m(s["commissioner"]["paid_total"]),
             "value": number(s["commissioner"]["paid_total"]), "unit": "money"},
            {"id": "cost_per_outcome", "label": "cost per outcome (expected paid ÷ expected outcomes)",
             "text": m(s["commissioner"]["cost_per_outcome"]), "value": number(s["commissioner"]["cost_per_outcome"]),
             "unit": "money"}]
    for o in s["organisations"]:
        head.append({"id": f"margin-{o['organisation']}", "label": f"{o['organisation']}: expected income − costs",
                     "text": m(o["income"] - o["costs"]), "value": number(o["income"] - o["costs"]), "unit": "money"})
    point = lambda v: {"mean": v, "lo": None, "hi": None}  # noqa: E731
    charts = [bars("exact-outcomes", "Expected outcome rate by segment", "fraction",
                   [(k, point(r.get("outcome_rate"))) for k, r in seg.items()]),
              bars("exact-spend", "Expected payments by type", "money",
                   [(k.replace("_", " "), point(v)) for k, v in s["commissioner"]["paid_by_kind"].items() if v], m)]
    return {"kind": "exact", "applies": True, "set_aside": set_aside, "reasons": reasons, "headline": head, "charts": charts}
