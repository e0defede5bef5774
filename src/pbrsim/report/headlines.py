"""Headline findings: the few sentences a board reads first, computed from a report's own figures.

Every number in a headline is a figure of the summary the rest of the report shows (``summary.json``,
``summary.parquet`` or the stress summary), written with its 95% interval where it has one; nothing is
recomputed here, so a headline never disagrees with the tables below it (docs/reports.md, "Headline findings").
"""

from __future__ import annotations

import math

from ..model.money import money

NEAR = 0.02  # a failure chance within 2 points of 0% or 100%: shocks cannot move it, so rank by cash instead


def _ok(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def pct(x, digits: int = 0) -> str:
    return f"{100 * x:.{digits}f}%" if _ok(x) else "–"


def pct_interval(ci: dict | None) -> str:
    """'12% (95% CI 8–17%)', or just the figure when it has no interval."""
    if not ci or not _ok(ci.get("mean")):
        return "–"
    if not _ok(ci.get("lo")) or not _ok(ci.get("hi")):
        return pct(ci["mean"])
    return f"{pct(ci['mean'])} (95% CI {100 * ci['lo']:.0f}–{pct(ci['hi'])})"


def money_interval(ci: dict | None, currency: str) -> str:
    """'£4,173 (95% CI £4,100 to £4,250)'."""
    if not ci or not _ok(ci.get("mean")):
        return "–"
    if not _ok(ci.get("lo")) or not _ok(ci.get("hi")):
        return money(ci["mean"], currency)
    return f"{money(ci['mean'], currency)} (95% CI {money(ci['lo'], currency)} to {money(ci['hi'], currency)})"


def _state(name: str | None) -> str:
    return (name or "the outcome").replace("_", " ")


# ---------------------------------------------------------------------------------------------
# A run


def run_headlines(summary: dict, currency: str = "GBP") -> list[str]:
    """Outcomes, what the commissioner paid per outcome, each organisation's chance of running out of cash,
    parking of complex clients and, with a value section, net public value."""
    out = []
    R = summary.get("replications")
    outcome = _state(summary.get("primary_outcome"))
    segs = {s.get("segment"): s for s in summary.get("segments", [])}
    everyone = segs.get("all")
    if everyone and _ok((everyone.get("outcome_rate") or {}).get("mean")):
        groups = [s for g, s in segs.items() if g != "all" and _ok((s.get("outcome_rate") or {}).get("mean"))]
        text = (f"Over {R:,} simulated runs, {pct_interval(everyone['outcome_rate'])} of referred clients reach {outcome}"
                if isinstance(R, int) else f"{pct_interval(everyone['outcome_rate'])} of referred clients reach {outcome}")
        if len(groups) > 1:
            lo = min(groups, key=lambda s: s["outcome_rate"]["mean"])
            hi = max(groups, key=lambda s: s["outcome_rate"]["mean"])
            text += (f": {pct(hi['outcome_rate']['mean'])} of {hi['segment']} clients against "
                     f"{pct(lo['outcome_rate']['mean'])} of {lo['segment']} clients")
        out.append(text + ".")
    comm = summary.get("commissioner") or {}
    if comm.get("paid_total"):
        text = f"The commissioner pays {money_interval(comm['paid_total'], currency)}"
        if _ok((comm.get("cost_per_outcome") or {}).get("mean")):
            text += f", {money_interval(comm['cost_per_outcome'], currency)} for each client reaching {outcome}"
        out.append(text + ".")
    for org in summary.get("organisations", []):
        fail = org.get("ran_out_of_cash")
        if not fail or not _ok(fail.get("mean")):
            continue
        low = org.get("lowest_cash") or {}
        text = f"{org['organisation']} runs out of cash in {pct_interval(fail)} of runs"
        if _ok(low.get("p50")):
            text += f"; its lowest cash balance is {money(low['p50'], currency)} in the median run"
            if _ok(low.get("p5")):
                text += f" and {money(low['p5'], currency)} in the worst 5%"
        out.append(text + ".")
    parking = (summary.get("parking") or {}).get("parking_rate")
    if parking and _ok(parking.get("mean")) and parking["mean"] > 0:
        out.append(f"{pct_interval(parking)} of clients' months in service are parked (minimal service).")
    value = summary.get("value") or {}
    if value.get("net_public_value"):
        text = f"Net public value: {money_interval(value['net_public_value'], currency)}"
        if _ok((value.get("benefit_cost_ratio") or {}).get("mean")):
            text += f"; benefit–cost ratio {value['benefit_cost_ratio']['mean']:.2f}"
        out.append(text + ".")
    return out


# ---------------------------------------------------------------------------------------------
# An experiment (compare / batch)


def experiment_headlines(summary, baseline: str, currency: str = "GBP") -> list[str]:
    """Per design: each organisation's chance of running out of cash, and cost per outcome, against the
    baseline with paired differences (``summary``: the rows of ``summary.parquet``)."""
    rows = summary.to_dict(orient="records") if hasattr(summary, "to_dict") else list(summary)
    by = {}
    for r in rows:
        by.setdefault(r["metric"], {})[r["design"]] = r
    designs = list(dict.fromkeys(r["design"] for r in rows))
    others = [d for d in designs if d != baseline]
    out = []
    for metric, per in by.items():
        if not metric.startswith("failed[") or baseline not in per:
            continue
        org = metric[len("failed["):-1]
        base = per[baseline]
        text = (f"Under the {baseline} design (the baseline) {org} runs out of cash in "
                f"{pct_interval({'mean': base['mean'], 'lo': base['lo'], 'hi': base['hi']})} of runs")
        parts = [f"under {d} in {pct(per[d]['mean'])}" for d in others if d in per and _ok(per[d]["mean"])]
        out.append(text + ("; " + ", ".join(parts) if parts else "") + ".")
    cpo = by.get("cost_per_outcome", {})
    if baseline in cpo and _ok(cpo[baseline]["mean"]):
        b = cpo[baseline]
        text = (f"Spend per outcome: {money_interval({'mean': b['mean'], 'lo': b['lo'], 'hi': b['hi']}, currency)} "
                f"under {baseline}")
        parts = []
        for d in others:
            r = cpo.get(d)
            if r and _ok(r["mean"]):
                part = f"{money(r['mean'], currency)} under {d}"
                if _ok(r.get("diff_lo")) and _ok(r.get("diff_hi")):
                    part += (f" (paired difference {money(r['diff'], currency)}, 95% CI {money(r['diff_lo'], currency)} "
                             f"to {money(r['diff_hi'], currency)})")
                parts.append(part)
        out.append(text + ("; " + "; ".join(parts) if parts else "") + ".")
    rate = by.get("outcome_rate", {})
    if baseline in rate and others:
        best = max((d for d in designs if d in rate and _ok(rate[d]["mean"])), key=lambda d: rate[d]["mean"], default=None)
        if best is not None and rate[best]["mean"] > rate[baseline]["mean"]:
            out.append(f"The highest outcome rate is under {best}: {pct(rate[best]['mean'], 1)} of referred clients, "
                       f"against {pct(rate[baseline]['mean'], 1)} under {baseline}.")
        elif best is not None:
            out.append(f"No design reaches a higher share of referred clients than {baseline} "
                       f"({pct(rate[baseline]['mean'], 1)}).")
    return out


# ---------------------------------------------------------------------------------------------
# A stress test


def stress_headlines(summary: dict) -> list[str]:
    """The base chance of running out of cash, the shock that matters most (by failure, or by lowest cash
    when the base is near 0% or 100% and failure cannot move), and the working capital needed."""
    cur = summary.get("currency", "GBP")
    org = summary.get("organisation", "the organisation")
    rows = [r for r in summary.get("stresses", []) if r.get("applicable", True)]
    if not rows:
        return []
    base = rows[0]
    fail = base.get("ran_out_of_cash") or {}
    out = [f"Unstressed, {org} runs out of cash in {pct_interval(fail)} of runs."]
    shocks = [r for r in rows[1:] if r.get("change")]
    near = _ok(fail.get("mean")) and (fail["mean"] <= NEAR or fail["mean"] >= 1 - NEAR)
    if shocks and not near:
        worst = max(shocks, key=lambda r: (r["change"].get("ran_out_of_cash") or {}).get("diff") or -1)
        d = (worst["change"].get("ran_out_of_cash") or {}).get("diff")
        if _ok(d) and d > 0:
            out.append(f"The shock that matters most is \"{worst['label']}\": it raises the chance by {100 * d:.0f} "
                       f"percentage points, to {pct((worst.get('ran_out_of_cash') or {}).get('mean'))}.")
    elif shocks:
        worst = min(shocks, key=lambda r: ((r["change"].get("lowest_cash") or {}).get("diff") or 0.0))
        d = (worst["change"].get("lowest_cash") or {}).get("diff")
        where = "almost never" if fail["mean"] <= NEAR else "almost always"
        if _ok(d) and d < 0:
            out.append(f"The base {where} runs out of cash, so no shock can change that much; ranked by the lowest cash "
                       f"balance instead, \"{worst['label']}\" matters most: it lowers the median run's lowest balance by "
                       f"{money(-d, cur)}.")
    wc = base.get("working_capital") or {}
    if _ok(wc.get("estimate")):
        target = summary.get("target")
        out.append(f"Working capital needed to keep that chance at or below {pct(target)}: {money(wc['estimate'], cur)}"
                   + (" (none beyond the opening cash)." if wc["estimate"] <= 0 else "."))
    ue = summary.get("unit_economics")
    if ue:
        from ..stress.economics import sentence

        line = sentence(ue, org, cur, fail.get("mean"))
        if line:
            out.append(line)
    return out


def design_headlines(summary: dict) -> list[str]:
    """The design chosen (or the answer of a goal seek), its objective figure with its interval, whether every
    constraint holds at its 95% bound and on fresh runs; or, when nothing met the constraints, the binding one."""
    from ..design.summary import fmt_estimate, lever_text

    cur = summary.get("currency", "GBP")
    figs = summary["figures"]
    out = []
    checks = summary.get("verification") or []
    last = checks[-1] if checks else None
    if summary["kind"] == "search":
        p = summary["problem"]
        chosen = summary.get("chosen")
        if chosen:
            head = f"The design chosen sets {lever_text(summary, chosen['levers'])}."
            obj = p.get("objective")
            if obj:
                f = figs[obj["figure"]]
                head += f" {f['label'][:1].upper() + f['label'][1:]}: {fmt_estimate(chosen['estimates'][obj['figure']], f['unit'], cur)}" \
                        f" ({'the least' if obj['sense'] == 'minimise' else 'the most'} of the designs meeting every constraint)."
            out.append(head)
            if p["constraints"]:
                out.append("It meets every constraint with its whole 95% interval on the right side of the bound: "
                           + "; ".join(f"{c['text']} ({fmt_estimate(chosen['estimates'][c['figure']], figs[c['figure']]['unit'], cur)})"
                                       for c in p["constraints"]) + ".")
        else:
            b = summary.get("binding") or {}
            closest = summary.get("closest")
            out.append("No design in the range searched meets every constraint"
                       + (f"; the binding one is {b['constraint']}" if b.get("constraint") else "")
                       + (f"; the closest design sets {lever_text(summary, closest['levers'])}" if closest else "") + ".")
    else:
        lv = summary["lever"]
        t = summary["target"]
        if summary.get("answer"):
            f = figs[t["figure"]]
            out.append(f"{t['text']} starts to hold at {lv['label']} = {summary['answer']['value']}, searching from {lv['lowest']} to "
                       f"{lv['highest']} (precise to one step, {summary['precision']}); there "
                       f"{f['label']} is {fmt_estimate(summary['answer']['estimate'], f['unit'], cur)}.")
        else:
            out.append(f"No value of {lv['label']} from {lv['lowest']} to {lv['highest']} makes {t['text']} hold.")
    if last:
        out.append(f"Checked on {last['replications']} fresh runs (seed {last['seed']}): "
                   + ("it holds." if last["passed"] else "it does not hold, so treat the answer with caution."))
    return out
