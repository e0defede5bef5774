"""The jobs the page starts, each a function for ``jobs.Jobs``: a Monte Carlo run, a comparison of designs, a
stress test and a goal seek, through the same Python API as the command line (``pbrsim.simulate``,
``compare``, ``stress``, ``design_search``), so their figures are the command line's."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..model.money import interval, money, pct
from ..scenario.errors import ScenarioError
from . import figures

MAX_REPLICATIONS = 5000  # per design, from the page (the command line takes more)
MAX_COMPARE = 4  # designs side by side
DEFAULT_STRESSES = ("shortfall_25", "delay_3", "rejection_up")  # a stress test from the page without a choice


def seed_and_replications(data: dict, *designs) -> tuple[int, int]:
    """The seed and replications of a request, checked as the command line checks them (the run-size limit)."""
    from ..scenario import limits as lim
    from ..scenario.bounds import run_problems

    problems = []
    try:
        seed = int(data.get("seed", 0))
        if seed < 0:
            raise ValueError
    except (TypeError, ValueError):
        problems.append(("seed", "must be a whole number, 0 or more"))
        seed = 0
    try:
        reps = int(data.get("replications", 100))
        if not 1 <= reps <= MAX_REPLICATIONS:
            raise ValueError
    except (TypeError, ValueError):
        problems.append(("replications", f"must be a whole number from 1 to {MAX_REPLICATIONS:,}"))
        reps = 1
    for sc in designs:
        problems += run_problems(sc, reps, lim.active(), "replications")
    if problems:
        raise ScenarioError("run settings", problems)
    return seed, reps


def montecarlo(sc, seed: int, reps: int):
    """A run of ``reps`` replications in this process, as ``pbrsim run -j 1`` (the same tables on any number of
    workers); the result is kept for the report and spreadsheet downloads."""
    def work(job, progress):
        from ..simulate import simulate

        result = simulate(sc, seed=seed, replications=reps, progress=progress, workers=1)
        job.keep["result"] = result
        return figures.montecarlo(result)

    return work


def download(job, what: str) -> tuple[bytes, str]:
    """The report or workbook of a finished run, made once and kept with the job."""
    from . import downloads

    keep = job.keep  # (forgetting a job's result replaces this mapping; the one in hand stays whole)
    if what not in keep:
        result = keep["result"]
        keep[what] = (downloads.report_html(result), "text/html; charset=utf-8") if what == "report.html" else (
            downloads.workbook(result), "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    return keep[what]


def _fmt(unit: str, cur: str):
    if unit == "fraction":
        return pct
    if unit == "pounds":
        return lambda x: money(x, cur)
    return lambda x: f"{x:,.1f}"


def comparison(named: dict, seed: int, reps: int):
    """Designs side by side on the same random numbers, with paired differences from the first (``pbrsim.compare``)."""
    def work(job, progress):
        from ..api.comparison import compare

        cmp = compare(named, seed=seed, replications=reps, progress=progress)
        full = cmp.table()
        t = full[full["in_table"].astype(bool)]
        cur = next(iter(named.values())).currency
        names = list(named)
        rows = []
        for fig, g in t.groupby("figure", sort=False):
            g = g.set_index("design")
            unit = str(g["unit"].iloc[0])
            f = _fmt(unit, cur)
            cells = [str(g["label"].iloc[0])]
            for n in names:
                if n not in g.index:
                    cells.append("–")
                    continue
                r = g.loc[n]
                text = interval({"mean": figures.number(r["mean"]), "lo": figures.number(r["lo"]), "hi": figures.number(r["hi"])}, f)
                if n != names[0] and figures.number(r["diff"]) is not None:
                    d = {"mean": figures.number(r["diff"]), "lo": figures.number(r["diff_lo"]), "hi": figures.number(r["diff_hi"])}
                    sign = "+" if d["mean"] >= 0 else ""
                    text += f"; difference {sign}{interval(d, f)}"
                cells.append(text)
            rows.append(cells)
        def ci(n, fig):
            r = full[(full["design"] == n) & (full["figure"] == fig)]
            return None if r.empty else {"mean": figures.number(r["mean"].iloc[0]), "lo": figures.number(r["lo"].iloc[0]), "hi": figures.number(r["hi"].iloc[0])}
        charts = [figures.bars("cmp-outcomes", "Outcome rate by design", "fraction", [(n, ci(n, "outcome_rate")) for n in names]),
                  figures.bars("cmp-failure", "Any organisation ran out of cash (share of runs)", "fraction",
                               [(n, ci(n, "failed_any")) for n in names]),
                  figures.bars("cmp-paid", "Commissioner pays", "money", [(n, ci(n, "paid_total")) for n in names],
                               lambda x: money(x, cur))]
        return {"kind": "compare", "designs": names, "baseline": names[0], "seed": seed, "replications": reps,
                "table": {"columns": ["figure", *names], "rows": rows}, "charts": charts,
                "note": f"Differences are paired (replication r of every design uses the same random numbers) from {names[0]}."}

    return work


def stress_names(only) -> list[str]:
    from ..stress.catalogue import BUILT_IN_NAMES

    names = list(only or DEFAULT_STRESSES)
    bad = [n for n in names if n not in BUILT_IN_NAMES]
    if bad or not isinstance(only, (list, type(None))):
        raise ScenarioError("stress test", [("only", f"unknown stresses {bad}; built-in stresses are {list(BUILT_IN_NAMES)}")])
    return names


def stress(sc, seed: int, reps: int, only: list[str]):
    """The bid stress test of the contract holder (``pbrsim stress --only ...``)."""
    def work(job, progress):
        from ..api.stress_test import StressTest
        from ..stress.catalogue import contract_holder
        from ..stress.run import run_stress_test

        progress(0, "the base and each stress on the same random numbers")
        raw = sc.to_dict()  # as pbrsim.stress does, with the runs counted for the progress bar
        st = StressTest(run_stress_test(raw, contract_holder(raw), source=f"scenario {sc.name}", only=only, replications=reps,
                                        seed=seed, executor="serial", workers=1,
                                        progress=lambda stage, k, total: progress(k, None, total)))
        t = st.table()
        cur = sc.currency
        rows = [[r["label"], interval({"mean": r.get("failure"), "lo": r.get("failure_lo"), "hi": r.get("failure_hi")}),
                 money(r.get("working_capital"), cur), money(r.get("lowest_cash_p50"), cur)] for r in t.to_dict("records")]
        chart = figures.bars("stress-failure", "Ran out of cash under each stress (share of runs)", "fraction",
                             [(r["label"], {"mean": r.get("failure"), "lo": r.get("failure_lo"), "hi": r.get("failure_hi")})
                              for r in t.to_dict("records")])
        return {"kind": "stress", "seed": seed, "replications": reps,
                "table": {"columns": ["stress", "ran out of cash", "extra reserve to keep it at 5%", "lowest cash (median)"],
                          "rows": rows},
                "sentences": [s for s in t["sentence"].tolist() if s], "charts": [chart]}

    return work


def goal_seek_spec(data: dict, sc) -> dict:
    lever, target = str(data.get("lever") or ""), str(data.get("target") or "")
    problems = []
    if not lever:
        problems.append(("lever", "choose the lever to seek"))
    if not target:
        problems.append(("target", "write a target such as failure(provider) <= 0.05"))
    spec = {"lever": lever, "target": target}
    try:
        if data.get("low") not in (None, "") and data.get("high") not in (None, ""):
            spec["range_"] = (float(data["low"]), float(data["high"]))
        if data.get("step") not in (None, ""):
            spec["step"] = float(data["step"])
    except (TypeError, ValueError):
        problems.append(("range", "low, high and step must be numbers"))
    if problems:
        raise ScenarioError("goal seek", problems)
    return spec


def goal_seek(sc, seed: int, reps: int, spec: dict):
    """Goal seek of one lever (``pbrsim design SCENARIO --lever PATH --target T``) on the edited design, which is
    written to a scratch file of pbrsim's own (a goal seek reads its base from a file) and removed after."""
    def work(job, progress):
        import yaml

        from ..api.design_search import design_search

        progress(0, "bisection on common random numbers, then a check on fresh ones")
        with tempfile.TemporaryDirectory(prefix="pbrsim-web-") as tmp:
            path = Path(tmp) / f"{sc.name}.yaml"
            path.write_text(yaml.safe_dump(sc.to_dict(), sort_keys=False), encoding="utf-8")
            res = design_search(path, lever=spec["lever"], target=spec["target"], range_=spec.get("range_"),
                                step=spec.get("step"), seed=seed, replications=reps,
                                verify_replications=max(reps, 100), executor="serial", workers=1)
        return goal_seek_view(res.summary)

    return work


def goal_seek_view(s: dict) -> dict:
    """The goal seek's answer in the words ``pbrsim design --lever`` prints, and the values run."""
    from ..design.summary import fmt_estimate

    lv, t = s["lever"], s["target"]
    f = s["figures"][t["figure"]]
    cur = s["currency"]
    a = s.get("answer")
    est = lambda e: fmt_estimate(e, f["unit"], cur)  # noqa: E731
    if s["status"] == "found":
        sentence = (f"{lv['label']} = {a['value']} is where {t['text']} starts to hold (precision one step, {s['precision']}); "
                    f"{f['label']} there: {est(a['estimate'])}.")
    elif s["status"] == "met_everywhere":
        sentence = f"{t['text']} holds over the whole range searched; at {a['value']}: {est(a['estimate'])}."
    else:
        sentence = (f"No value of {lv['label']} from {lv['lowest']} to {lv['highest']} meets {t['text']} at the 95% interval's "
                    f"far end. Closest: {a['value']}, where {f['label']} is {est(a['estimate'])}." if a else
                    f"No value of {lv['label']} meets {t['text']}.")
    for v in s.get("verification") or []:
        sentence += (f" Checked on {v['replications']} fresh replications (seed {v['seed']}): "
                     + ("holds." if v["passed"] else "does not hold."))
    rows = [[str(c["value"]), est(c["estimate"]), "met" if c["met"] else "not met"] for c in s.get("curve", [])]
    return {"kind": "goalseek", "lever": lv["path"] if "path" in lv else lv.get("label"), "target": t["text"],
            "status": s["status"], "feasible": s.get("feasible"),
            "answer": a["value"] if a is not None and s["status"] != "not_met" else None, "sentence": sentence,
            "table": {"columns": [lv["label"], f["label"], "target (at the interval's far end)"], "rows": rows},
            "replications": s["replications"], "seed": s["seed"]}
