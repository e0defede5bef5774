"""A search or goal seek as plain data: the JSON summary every table, chart and file of a design run is made from."""

from __future__ import annotations

import math

import pandas as pd

from .assess import Assessment
from .figures import Estimate, Figure, parse_figure
from .goalseek import GoalSeekResult
from .levers import Lever
from .problem import Problem
from .search import SearchResult, Verification


def _est(e: Estimate) -> dict:
    return {"mean": _f(e.mean), "lo": _f(e.lo), "hi": _f(e.hi), "replications": e.replications}


def _f(x):
    return None if x is None or (isinstance(x, float) and (math.isnan(x) or math.isinf(x))) else float(x)


def _value(v):
    return float(v) if isinstance(v, float) else v


def figures_info(problem: Problem, extra: list[Figure] = ()) -> dict:
    figs = {f.key: f for f in list(problem.figures) + list(extra)}
    return {k: {"label": f.label, "unit": f.unit, "better": f.better} for k, f in figs.items()}


def lever_info(problem: Problem) -> list[dict]:
    from ..scenario.overrides import PathError, get_value

    out = []
    for lv in problem.levers:
        try:
            base = get_value(problem.base, lv.path)
        except PathError:
            base = None
        out.append({"path": lv.path, "label": lv.label, "kind": lv.kind, "values": [_value(v) for v in lv.values]
                    if lv.kind == "choices" or lv.size <= 50 else None, "lowest": _value(lv.values[0]),
                    "highest": _value(lv.values[-1]), "step": _value(lv.step), "size": lv.size,
                    "base_value": base if not isinstance(base, (dict, list)) else None})
    return out


def problem_info(problem: Problem) -> dict:
    return {
        "name": problem.name, "description": problem.description, "file": problem.source, "base": str(problem.base_file),
        "base_scenario": problem.base.get("name"), "fixed": problem.fixed, "levers": lever_info(problem),
        "objective": {"sense": problem.objective.sense, "figure": problem.objective.figure.key} if problem.objective else None,
        "constraints": [{"text": c.text, "figure": c.figure.key, "op": c.op, "bound": c.bound} for c in problem.constraints],
        "pareto_axes": [f.key for f in problem.pareto_axes],
    }


def design_row(problem: Problem, a: Assessment, ids: dict) -> dict:
    return {
        "id": ids.get(a.design.point),
        "point": list(a.design.point),
        "levers": {lv.path: _value(v) for lv, v in zip(problem.levers, a.design.values)},
        "replications": a.replications,
        "estimates": {k: _est(e) for k, e in a.estimates.items()},
        "valid": a.valid,
        "error": a.design.error,
        "feasible": a.feasible(),
        "constraints": [{"text": c.text, "met": c.met(a.estimates[c.figure.key], "far"),
                         "met_on_estimate": c.met(a.estimates[c.figure.key], "mean")} for c in problem.constraints],
        "objective": _f(a.value(problem.objective.figure)) if problem.objective and a.valid else None,
    }


def verification_row(problem: Problem, v: Verification, ids: dict) -> dict:
    lv = problem.levers
    return {"id": ids.get(v.point), "levers": {x.path: _value(x.values[i]) for x, i in zip(lv, v.point)}, "seed": v.seed,
            "replications": v.replications, "passed": v.passed, "attempt": v.attempt, "checks": v.checks,
            "estimates": {k: _est(e) for k, e in v.estimates.items()}}


def design_ids(history: list[dict]) -> dict:
    ids: dict = {}
    for h in history:
        ids.setdefault(h["point"], f"d{len(ids) + 1:03d}")
    return ids


def search_summary(res: SearchResult) -> dict:
    p = res.problem
    ids = design_ids(res.history)
    chosen = design_row(p, res.chosen, ids) if res.chosen else None
    binding = None
    if res.chosen is None and res.closest is not None:
        miss = res.closest.binding()
        met_by_none = []
        for c in p.constraints:
            if not any(c.met(a.estimates[c.figure.key], "far") for a in res.assessments.values() if a.valid):
                met_by_none.append(c.text)
        if res.verification and not any(v.passed for v in res.verification):
            failed = [r["constraint"] for r in res.verification[-1].checks if not r["met"]]
            binding = {"constraint": failed[0] if failed else None, "reason": "verification",
                       "note": "designs that met every constraint on the search replications did not hold on fresh replications"}
        else:
            binding = {"constraint": miss.text if miss else None, "reason": "search",
                       "never_met": met_by_none,
                       "note": "no design evaluated met every constraint at its 95% confidence bound"}
    comparisons = []
    for c in res.comparisons:
        comparisons.append({"file": c["file"], "scenario": c["scenario"], "replications": c["replications"],
                            "estimates": {k: _est(e) for k, e in c["estimates"].items()}, "dominated": c.get("dominated")})
    more = [parse_figure("complex_outcome_rate" if p.has_complexity else "outcome_rate", None)] if res.comparisons else []
    return {
        "kind": "search",
        "problem": problem_info(p),
        "currency": p.currency,
        "seed": p.search.seed,
        "method": res.method,
        "method_note": res.method_note,
        "settings": p.search.model_dump(),
        "figures": figures_info(p, more),
        "feasible": res.feasible,
        "chosen": chosen,
        "closest": design_row(p, res.closest, ids) if res.closest is not None and res.chosen is None else None,
        "binding": binding,
        "verification": [verification_row(p, v, ids) for v in res.verification],
        "pareto": [design_row(p, a, ids) for a in res.pareto],
        "finalists": [design_row(p, a, ids) for a in res.finalists],
        "comparisons": comparisons,
        "comparison_reference": ({k: _est(e) for k, e in res.comparisons[0]["reference"].items()}
                                 if res.comparisons and res.comparisons[0].get("reference") else None),
        "effort": {"designs": len(res.assessments), "evaluations": res.evaluations, "replications_run": res.replications_run,
                   "replications_reused": res.replications_reused, "seconds": round(res.seconds, 2), "stages": res.stages},
    }


def designs_table(res: SearchResult) -> pd.DataFrame:
    """One row per design evaluated: lever values, replications, each figure's estimate and interval, feasibility."""
    p = res.problem
    ids = design_ids(res.history)
    rows = []
    for pt, a in res.assessments.items():
        row = {"id": ids.get(pt)}
        row.update({lv.label: v for lv, v in zip(p.levers, a.design.values)})
        row["replications"] = a.replications
        row["feasible"] = a.feasible()
        row["error"] = a.design.error
        for k, e in a.estimates.items():
            row[k], row[f"{k}_lo"], row[f"{k}_hi"] = e.mean, e.lo, e.hi
        rows.append(row)
    df = pd.DataFrame(rows)
    return df.sort_values("id").reset_index(drop=True) if len(df) else df


def front_table(summary: dict) -> pd.DataFrame:
    """The Pareto front (or finalists) as a flat table: lever values, then each figure with its interval."""
    rows = []
    for d in summary["pareto"]:
        row = {"id": d["id"], "file": d.get("file"), "chosen": bool(summary["chosen"] and d["id"] == summary["chosen"]["id"])}
        row.update(d["levers"])
        row["replications"] = d["replications"]
        row["feasible"] = d["feasible"]
        for k, e in d["estimates"].items():
            row[k], row[f"{k}_lo"], row[f"{k}_hi"] = e["mean"], e["lo"], e["hi"]
        rows.append(row)
    return pd.DataFrame(rows)


def goal_seek_summary(res: GoalSeekResult) -> dict:
    p = res.problem
    lv: Lever = res.lever
    t = res.target
    key = t.figure.key

    def point(a: Assessment) -> dict:
        return {"value": _value(a.design.values[0]), "estimate": _est(a.estimates[key]), "met": a.feasible(),
                "met_on_estimate": a.met_on_estimate(), "error": a.design.error}

    curve = [point(a) for a in res.curve]
    ids = {a.design.point: f"v{a.design.point[0]:04d}" for a in res.curve}
    return {
        "kind": "goal_seek",
        "problem": problem_info(p),
        "currency": p.currency,
        "seed": p.search.seed,
        "replications": res.replications,
        "figures": figures_info(p),
        "lever": lever_info(p)[0],
        "target": {"text": t.text, "figure": key, "op": t.op, "bound": t.bound},
        "status": res.status,
        "feasible": res.feasible,
        "answer": point(res.answer) if res.answer is not None else None,
        "answer_design": design_row(p, res.answer, ids) if res.answer is not None else None,
        "bracket": [_value(lv.values[i]) for i in res.bracket] if res.bracket else None,
        "precision": _value(res.precision),
        "curve": curve,
        "curve_sorted": sorted(curve, key=lambda c: (lv.values.index(c["value"]) if c["value"] in lv.values else 0)),
        "base_value": res.base_value if not isinstance(res.base_value, (dict, list)) else None,
        "monotone": res.monotone,
        "verification": [verification_row(p, v, ids) for v in res.verification],
        "effort": {"evaluations": len(res.curve), "replications_run": res.replications_run,
                   "replications_reused": res.replications_reused, "seconds": round(res.seconds, 2)},
    }


# ---------------------------------------------------------------------------------------------
# Words and numbers for people (terminal, report and scenario headers write figures the same way)


def fmt(x, unit: str, currency: str = "GBP") -> str:
    from ..model.money import money, pct

    if x is None:
        return "–"
    if unit == "money":
        return money(x, currency)
    if unit == "pct":
        return pct(x)
    if unit == "count":
        return f"{x:,.1f}"
    return f"{x:,.3f}"


def fmt_estimate(e: dict | None, unit: str, currency: str = "GBP") -> str:
    """'mean (lo–hi)' as everywhere in pbrsim; an exact value alone."""
    from ..model.money import interval

    if not e or e.get("mean") is None:
        return "–"
    if e.get("replications") is None or e.get("lo") is None or e.get("lo") == e.get("hi"):
        return fmt(e["mean"], unit, currency)
    return interval(e, lambda x: fmt(x, unit, currency))


def lever_text(summary: dict, levers: dict) -> str:
    labels = {lv["path"]: lv["label"] for lv in summary["problem"]["levers"]}
    return "; ".join(f"{labels.get(p, p)} = {v}" for p, v in levers.items())


def check_text(check: dict, summary: dict) -> str:
    """One verification check in words."""
    key = next(c["figure"] for c in summary["problem"]["constraints"] if c["text"] == check["constraint"])
    f = summary["figures"][key]
    est = fmt_estimate(check["estimate"], f["unit"], summary["currency"])
    if "exact" in check:
        verdict = ("holds: the exact value " + fmt(check["exact"], f["unit"], summary["currency"]) + " lies in the interval"
                   if check["met"] else "does not hold: exact and Monte Carlo disagree")
    elif check["met_with_confidence"]:
        verdict = "met, with 95% confidence"
    elif check["met"]:
        verdict = "met on the estimate (the 95% interval reaches past the bound)"
    else:
        verdict = "NOT met"
    return f"{check['constraint']}: {est} — {verdict}"
