"""The report's content: sections made of headings, paragraphs, tables and charts, for a run or an experiment.

The template (``templates/report.html.j2``) only lays these blocks out; every number and sentence is
decided here. Table cells carry ``data-metric`` / ``data-design`` / ``data-org`` attributes so that the
numbers can be checked against the summary files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from .. import __version__
from ..analysis.compare import DIRECTION, PRICE_ONLY_NOTE, direction, same_outcomes_as_baseline
from ..analysis.metrics import PAYMENT_KINDS
from . import charts, fmt
from .data import ExperimentData, RunData, break_even, break_even_summary, fan, spend_shares
from .headlines import experiment_headlines, run_headlines
from .value import value_content

SECTIONS = [
    ("cash-flow", "Cash flow"),
    ("outcomes", "Outcomes"),
    ("who-gets-dropped", "Who gets dropped"),
    ("commissioner", "Commissioner view"),
    ("design-comparison", "Design comparison"),
]

BETTER = DIRECTION  # which way is better, per metric family (analysis.compare; docs/metrics.md)


@dataclass
class Cell:
    lines: list[str]
    cls: str = ""
    data: dict = field(default_factory=dict)
    best: bool = False

    @property
    def text(self) -> str:
        return " ".join(self.lines)


def cell(text, cls: str = "num", best: bool = False, **data) -> Cell:
    lines = [t for t in (text if isinstance(text, (list, tuple)) else [text]) if t]
    return Cell(lines or [fmt.DASH], cls, {k.replace("_", "-"): v for k, v in data.items() if v is not None}, best)


@dataclass
class Table:
    id: str
    caption: str
    head: list[str]
    rows: list[tuple[str, list[Cell]]]  # (row header, cells)
    note: str = ""
    kind: str = "table"
    wide: bool = False


@dataclass
class Block:
    kind: str  # h3 | p | notice | chart | table | facts
    text: str = ""
    id: str = ""
    chart: charts.Chart | None = None
    table: Table | None = None
    facts: list[tuple[str, str]] | None = None


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Block]


@dataclass
class Report:
    title: str
    subtitle: str
    kind: str  # run | experiment
    facts: list[tuple[str, str]]
    notes: list[str]
    sections: list[Section]
    generated_at: str
    version: str = __version__
    headlines: list[str] = field(default_factory=list)  # the few sentences a board reads first (report.headlines)

    @property
    def charts(self) -> list[charts.Chart]:
        return [b.chart for s in self.sections for b in s.blocks if b.kind == "chart"]


def _p(text: str) -> Block:
    return Block("p", text)


def _notice(text: str) -> Block:
    return Block("notice", text)


def _chart(c: charts.Chart) -> Block:
    return Block("chart", chart=c, id=f"chart-{c.name}")


def _table(t: Table) -> Block:
    return Block("table", table=t, id=t.id)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _investor_table(inv: dict, cur: str) -> Table:
    """The investors' view (docs/social-investment.md): all investors, and each tranche when there are several."""
    cols = [inv] + inv.get("tranches", [])
    key = lambda c: "" if c is inv else f"[{c['tranche']}]"  # noqa: E731

    def irr(c: dict) -> str:
        q = c["irr"]
        if q.get("median") is None:
            return fmt.DASH
        return f"{fmt.pct(q['median'])} ({fmt.pct(q['p5'])} to {fmt.pct(q['p95'])})"

    def payback(c: dict) -> str:
        return fmt.DASH if c["payback_month"]["median"] is None else fmt.month(c["payback_month"]["median"])

    rows = [(label, [cell(f(c), metric=m + key(c)) for c in cols]) for label, f, m in (
        ("put in (drawdowns and fees)", lambda c: fmt.interval(c["drawn"], "money", cur), "investor_drawn"),
        ("received (repayments, coupons, guarantees)", lambda c: fmt.interval(c["repaid"], "money", cur), "investor_repaid"),
        ("money multiple (received ÷ put in)", lambda c: fmt.interval(c["multiple"], "ratio"), "investor_multiple"),
        ("capital lost (mean)", lambda c: fmt.interval(c["loss"], "money", cur), "investor_loss"),
        ("lost capital (share of runs)", lambda c: fmt.interval(c["lost_money"]), "investor_lost"),
        ("IRR a year: median (5th to 95th percentile)", irr, "investor_irr"),
        (f"IRR below the {fmt.pct(inv['hurdle_rate'])} hurdle (share of runs)", lambda c: fmt.interval(c["irr_below_hurdle"]),
         "investor_below_hurdle"),
        ("payback month (median)", payback, "investor_payback_month"),
    )]
    for k, label in (("guaranteed", "paid by the guarantor"), ("intermediary_fees", "management fees to the intermediary"),
                     ("topped_up", "top-up outcome payments")):
        if k in inv:
            rows.append((label, [cell(fmt.interval(inv[k], "money", cur))] + [cell(fmt.DASH) for _ in cols[1:]]))
    head = [""] + ["all investors"] + [c["tranche"] for c in cols[1:]]
    return Table("table-investor", f"Investors: {inv['investor']} → {inv['organisation']} (per contract, over runs)", head, rows,
                 "Investors are repaid only out of what the contract brings in, so they carry the loss when results fall short. "
                 "IRR: the annual rate at which the investors' monthly flows net to zero; a run in which nothing came back "
                 "counts as -100%. Payback month: from when the investors are never again out of pocket.")


def _limit_text(o, currency: str) -> str:
    if not o.limit_known:
        return "unknown"
    if o.credit_limit is None:
        return "unlimited"
    return fmt.money(o.credit_limit, currency)


CASH_INTRO = ("Payment by results means the provider spends first and is paid later. This section follows each "
              "organisation's bank balance month by month across all runs: how low it goes, how often it runs out "
              "(the balance falls below what its credit limit allows), and when it gets back to where it started.")
BREAK_EVEN_NOTE = ("Break-even month: the month from which the month-end balance stays at or above the opening cash "
                   "for the rest of the run (0 if it never fell below); the median over runs, or “not reached” when "
                   "at least half the runs were still below their opening cash at the end.")
OUTCOMES_INTRO = ("How many referred clients reach the contract's outcome, by client segment. Rates are pooled over "
                  "runs (all outcomes ÷ all referrals) with 95% intervals.")
DROPPED_INTRO = ("Payment by results can tempt a provider short of money to ‘park’ clients who are unlikely to earn "
                 "it a payment — give them minimal service — and to let them drop out. This section shows how much "
                 "of that happens, and to whom.")
COMMISSIONER_INTRO = ("What the commissioner pays, when, and for what: total spend by payment type, the cost per "
                      "outcome, how much of the money is paid upfront rather than on results, and whether the "
                      "contract's cap was reached.")


# ---------------------------------------------------------------------------------------------
# Single run


def run_report(d: RunData) -> Report:
    s, man = d.summary, d.manifest
    R = int(s.get("replications") or len(d.per_rep))
    scen = s.get("scenario", d.path.name)
    facts = [
        ("What was run", f"scenario {scen}" + (f" (file {man.get('scenario')})" if man.get("scenario") else "")),
        ("Designs", "one design: a single run of this scenario (use an experiment to compare designs)"),
        ("Replications", f"{R:,}"),
        ("Seed", str(s.get("seed", man.get("seed")))),
        ("Contract", f"{s.get('months')} months (followed for {s.get('horizon')} months to collect late payments); "
                     f"outcome = first entry into {s.get('primary_outcome')}"),
        ("Organisations", ", ".join(f"{o.name} ({o.role if len(d.orgs) > 1 else 'provider'})" for o in d.orgs)),
        ("pbrsim version", str(man.get("version", "unknown"))),
        ("Run written", str(man.get("written_at", "unknown"))),
        ("Command", str(man.get("command_line") or "unknown")),
        ("Scenario SHA-256", str(man.get("scenario_sha256") or "unknown")),
    ]
    notes = []
    if d.scenario_note:
        notes.append(f"Credit limits: {d.scenario_note}, so they are not drawn; opening cash is worked out from the "
                     "results (final cash minus margin).")
    sections = [
        Section("cash-flow", "Cash flow", _run_cash(d, R)),
        Section("outcomes", "Outcomes", _run_outcomes(d)),
        Section("who-gets-dropped", "Who gets dropped", _run_dropped(d)),
        Section("commissioner", "Commissioner view", _run_commissioner(d)),
    ]
    if "value" in s:  # public value comes first: what the outcomes are worth, to whom (pbrsim.value)
        sections.insert(0, Section("value-for-money", "Value for money", _plain_blocks(value_content(s["value"], d.currency))))
    sections = [sec for sec in sections if sec.blocks]  # a section with nothing to show is left out
    return Report(f"pbrsim report: {scen}", f"{R:,} runs of scenario {scen}, seed {s.get('seed')}", "run", facts, notes,
                  sections, _now(), headlines=run_headlines(s, d.currency))


def _plain_blocks(items: list[tuple]) -> list[Block]:
    """Paragraphs and tables given as plain tuples (see ``report.value``) as blocks."""
    out = []
    for item in items:
        if item[0] == "p":
            out.append(_p(item[1]))
        else:
            _, id_, caption, head, rows, note = item
            out.append(_table(Table(id_, caption, head, [(label, [cell(text, metric=metric) for text, metric in cells])
                                                         for label, cells in rows], note)))
    return out


def _run_cash(d: RunData, R: int) -> list[Block]:
    cur = d.currency
    blocks = [_p(CASH_INTRO)]
    be = {o.name: break_even_summary(break_even(d.cash_of(o.name), o.opening_cash)) if o.opening_cash is not None
          else {"median": None, "share": None} for o in d.orgs}
    summ = {o.name: d.org_summary(o.name) for o in d.orgs}

    def row(label, metric, f):
        return (label, [cell(f(o, summ[o.name]), org=o.name, metric=metric) for o in d.orgs])

    rows = [
        row("role", "role", lambda o, x: o.role if len(d.orgs) > 1 else "provider"),
        row("opening cash", "opening_cash", lambda o, x: fmt.money(o.opening_cash, cur)),
        row("credit limit (overdraft allowed)", "credit_limit", lambda o, x: _limit_text(o, cur)),
        row("income", "income", lambda o, x: fmt.interval(x["income"], "money", cur)),
        row("costs", "costs", lambda o, x: fmt.interval(x["costs"], "money", cur)),
        row("margin: median (5th percentile)", "margin", lambda o, x: f"{fmt.money(x['margin']['p50'], cur)} ({fmt.money(x['margin']['p5'], cur)})"),
        row("lowest cash: median (5th percentile)", "lowest_cash",
            lambda o, x: f"{fmt.money(x['lowest_cash']['p50'], cur)} ({fmt.money(x['lowest_cash']['p5'], cur)})"),
        row("month of the trough (median)", "trough_month", lambda o, x: fmt.month(x["trough_month"]["median"])),
        row("months below zero (mean)", "months_below_zero", lambda o, x: fmt.number(x["months_below_zero"]["mean"])),
        row("ran out of cash (share of runs, 95% interval)", "ran_out_of_cash", lambda o, x: fmt.interval(x["ran_out_of_cash"])),
        row("when it failed: month (median)", "failure_month", lambda o, x: fmt.month(x["failure_month"]["median"])),
        row("when it failed: clients affected (mean)", "clients_affected",
            lambda o, x: fmt.number(x["clients_affected"]["mean"], 0)),
        row("break-even month (median)", "break_even",
            lambda o, x: "not reached" if be[o.name]["median"] is None and be[o.name]["share"] is not None else fmt.month(be[o.name]["median"])),
        row("runs that broke even", "break_even_share", lambda o, x: fmt.pct(be[o.name]["share"])),
    ]
    blocks.append(_table(Table("table-cash", f"Cash position of each organisation over {R:,} runs (money per contract)",
                               ["", *[o.name for o in d.orgs]], rows,
                               "Means with 95% intervals unless stated; medians and 5th percentiles are over runs. "
                               + BREAK_EVEN_NOTE)))
    for o in d.orgs:
        x = summ[o.name]
        blocks.append(Block("h3", f"{o.name} ({o.role if len(d.orgs) > 1 else 'provider'})", id=f"cash-{charts.safe_name(o.name)}"))
        fails = x["ran_out_of_cash"]
        med = be[o.name]["median"]
        blocks.append(_p(
            f"{o.name} ran out of cash in {fmt.interval(fails)} of runs. Its lowest balance was "
            f"{fmt.money(x['lowest_cash']['p50'], cur)} in the median run and {fmt.money(x['lowest_cash']['p5'], cur)} "
            f"or less in 1 run in 20; the median break-even month is "
            + ("“not reached” (at least half the runs ended below the opening cash)" if med is None else f"{med:.0f}") + "."))
        q = fan(d.cash_of(o.name), "cash")
        blocks.append(_chart(charts.cash_fan(q, o.name, o.opening_cash, o.credit_limit, o.limit_known, cur, R)))
        col = f"lowest_cash[{o.name}]"
        if col in d.per_rep:
            blocks.append(_chart(charts.lowest_cash_hist(d.per_rep[col], o.name, o.credit_limit, o.limit_known,
                                                         fails.get("mean"), cur)))
    return blocks


def _run_outcomes(d: RunData) -> list[Block]:
    s = d.summary
    blocks = [_p(OUTCOMES_INTRO + f" The outcome is the first entry into “{s.get('primary_outcome')}”.")]
    rows = []
    for r in s["segments"]:
        g = r["segment"]
        rows.append((g, [cell(fmt.number(r["referrals"]["mean"]), segment=g, metric="referrals"),
                         cell(fmt.number(r["outcomes"]["mean"]) if "outcomes" in r else fmt.DASH, segment=g, metric="outcomes"),
                         cell(fmt.interval(r.get("outcome_rate")), segment=g, metric="outcome_rate"),
                         cell(fmt.interval(r.get("milestone_rate")), segment=g, metric="milestone_rate")]))
    ms = s.get("milestone_state")
    blocks.append(_table(Table("table-outcomes", "Clients by segment (per contract; means over runs, rates with 95% intervals)",
                               ["segment", "referrals", "outcomes", f"outcome rate ({s.get('primary_outcome')})",
                                f"milestone rate ({ms})" if ms else "milestone rate"], rows,
                               "Each rate is named by its state: the share of referrals who ever entered it (pooled over "
                               "runs). The milestone rate follows the state of the contract's first milestone line; – where "
                               "the contract has none.")))
    blocks.append(_chart(charts.rates_by_segment(s["segments"], s.get("primary_outcome"), ms)))
    if d.cumulative:
        blocks.append(_chart(charts.cumulative_lines(
            d.cumulative, "Cumulative outcomes over the contract, by segment", "cumulative_outcomes",
            "outcomes so far (median run)",
            f"Line chart of the cumulative number of outcomes ({s.get('primary_outcome')}) month by month, median over "
            f"runs, one line per segment and one for all clients with a band for 90% of runs.",
            "Each line counts the outcomes reached so far in the median run; the shaded dotted band around the ‘all’ line "
            "holds 90% of runs. Lines differ by style and marker as well as colour and are labelled at their right end. "
            "A late, steep rise means outcome payments — and the provider's income — come late in the contract.")))
    else:
        blocks.append(_notice("Cumulative outcomes over time are not shown: the run has no clients table or no primary outcome."))
    return blocks


def _run_dropped(d: RunData) -> list[Block]:
    blocks = [_p(DROPPED_INTRO)]
    pk = d.parking
    if pk is None:
        blocks.append(_notice(
            "This run has no parking or dropped-client figures: its replications table has no parking_rate, "
            "dropped_rate or equity_ratio columns (the pbrsim version that wrote it did not compute them). Parking "
            "rates, dropped-client rates and the equity ratio appear here for runs written by a pbrsim that does."))
        return blocks
    count = lambda ci, r, m: cell(fmt.interval(ci, "count") if ci else fmt.DASH, segment=r["segment"], metric=m)  # noqa: E731
    rows = [(r["segment"], [cell(fmt.interval(r.get("parking_rate")), segment=r["segment"], metric="parking_rate"),
                            count(r.get("dropped"), r, "dropped"), count(r.get("dropped_failure"), r, "dropped_failure"),
                            cell(fmt.interval(r.get("dropped_rate")), segment=r["segment"], metric="dropped_rate")])
            for r in pk["segments"]]
    blocks.append(_table(Table("table-dropped", "Parking and dropped clients by segment (95% intervals)",
                               ["segment", "parking rate", "dropped clients (total, mean per contract)",
                                "of which: provider failed", "dropped-client rate"], rows,
                               "Parking rate = months at minimal service ÷ months in service; dropped-client rate = "
                               "clients dropped ÷ clients referred (both pooled over runs). Dropped = left without an "
                               "outcome, either taken off the caseload when their provider failed or after little full "
                               "service.")))
    if pk.get("classes"):  # latent classes: who is parked inside each payment group
        rows = [(f"{r['segment']}: {r['latent_class']}",
                 [cell(fmt.interval(r.get("referrals"), "count"), segment=r["segment"], metric="class_referrals"),
                  cell(fmt.interval(r.get("parking_rate")), segment=r["segment"], metric="class_parking_rate"),
                  cell(fmt.interval(r.get("outcome_rate")), segment=r["segment"], metric="class_outcome_rate")])
                for r in pk["classes"]]
        blocks.append(_table(Table("table-classes", "Inside each segment: parking and outcomes by latent class (95% intervals)",
                                   ["segment: class", "clients referred (mean per contract)", "parking rate", "outcome rate"], rows,
                                   "Latent classes are differences inside a payment group that the contract does not record "
                                   "(docs/behaviour.md §6). A provider that sees them parks the slow classes more, at the same "
                                   "price.")))
    gap = fmt.clean(pk.get("equity_ratio"))
    if pk.get("has_equity_ratio") or gap:
        text = fmt.interval(gap, "ratio") if gap and gap.get("mean") is not None else None
        most, least = ", ".join(pk.get("most_complex") or []), ", ".join(pk.get("least_complex") or [])
        facts = [("Equity ratio" + (f" ({most} ÷ {least})" if most and least else ""), text or "not defined for this run")]
        cpc = fmt.clean(pk.get("cost_per_complex_outcome"))
        if cpc and cpc.get("mean") is not None:
            facts.append((f"Cost per outcome of the most complex clients{f' ({most})' if most else ''}",
                          fmt.interval(cpc, "money", d.currency)))
        for o in pk.get("organisations") or []:
            if len(pk["organisations"]) > 1 or o.get("parking_rate"):
                facts.append((f"Parking rate of {o['organisation']}", fmt.interval(o.get("parking_rate"))))
        blocks.append(Block("facts", id="equity-ratio", facts=facts))
        blocks.append(_p("Equity ratio: the outcome rate of the most complex clients divided by the outcome rate of the "
                         "least complex. 1 would mean equal chances; higher is fairer, and the lower it is, the more the "
                         "contract favours the easy clients." + ("" if text else " It is undefined here: all segments "
                                                                 "rank equal in complexity, or the least complex had no outcomes.")))
    else:
        blocks.append(_notice("The equity ratio is not available for this run (no equity_ratio column)."))
    if any((fmt.clean(r.get("parking_rate")) or {}).get("mean") is not None or (fmt.clean(r.get("dropped_rate")) or {}).get("mean") is not None
           for r in pk["segments"]):
        blocks.append(_chart(charts.parking_by_segment(pk)))
    return blocks


def _run_commissioner(d: RunData) -> list[Block]:
    s, cur = d.summary, d.currency
    c = s["commissioner"]
    blocks = [_p(COMMISSIONER_INTRO)]
    rows = []
    for kind, ci in c["paid_by_kind"].items():
        if ci.get("mean"):
            rows.append((fmt.label(kind), [cell(fmt.interval(ci, "money", cur), metric=f"paid[{kind}]")]))
    if "clawed_back" in c:
        rows.append(("clawed back at volume reconciliation", [cell(fmt.interval(c["clawed_back"], "money", cur), metric="clawed_back")]))
    rows.append(("total" + (" (net of clawback)" if "clawed_back" in c else ""),
                 [cell(fmt.interval(c["paid_total"], "money", cur), metric="paid_total")]))
    if "prime_kept" in c:
        rows.append(("of which the prime keeps", [cell(fmt.interval(c["prime_kept"], "money", cur), metric="prime_kept")]))
        rows.append(("of which passed to subcontractors",
                     [cell(fmt.interval(c["paid_to_subcontractors"], "money", cur), metric="paid_to_subcontractors")]))
    rows.append(("not paid: over the cap", [cell(fmt.interval(c["capped_total"], "money", cur), metric="capped_total")]))
    rows.append(("cap reached (share of runs)", [cell(fmt.interval(c["cap_reached"]), metric="cap_reached")]))
    rows.append(("cost per outcome", [cell(fmt.interval(c.get("cost_per_outcome"), "money", cur), metric="cost_per_outcome")]))
    shares = spend_shares({k: v.get("mean") for k, v in c["paid_by_kind"].items()})
    for g in ("upfront", "milestones", "outcomes"):
        rows.append((f"{g} share of actual spend", [cell(fmt.pct(shares[g]), metric=f"share_{g}")]))
    if c.get("service_fee_share_of_value") is not None:
        rows.append(("contract terms: service fee as a share of contract value",
                     [cell(fmt.pct(c["service_fee_share_of_value"]), metric="service_fee_share_of_value")]))
    blocks.append(_table(Table("table-commissioner", "What the commissioner pays per contract (means over runs, 95% intervals)",
                               ["", "per contract"], rows,
                               "Shares of actual spend: upfront = service fee and attachment fees; milestones = milestone "
                               "payments; outcomes = outcome and sustainment payments, each ÷ what the commissioner paid in "
                               "all. The contract's service fee share is of the contract value, a different base: it differs "
                               "from the upfront share of spend when results pay more or less than the value, or attachment "
                               "fees are paid. Cost per outcome = all payments ÷ all outcomes (pooled over runs).")))
    cap = fmt.clean(c["cap_reached"]) or {}
    if not c["capped_total"].get("mean") and not cap.get("mean"):
        cap_text = "The cap was never reached (or the contract has no cap): every payment earned was paid."
    else:
        cap_text = (f"The cap was reached in {fmt.interval(cap)} of runs; on average "
                    f"{fmt.money(c['capped_total']['mean'], cur)} earned was not paid because of it.")
    blocks.append(_p(f"Cost per outcome: {fmt.interval(c.get('cost_per_outcome'), 'money', cur)}. {cap_text}"))
    inv = s.get("investor")
    if inv:
        blocks.append(_table(_investor_table(inv, cur)))
    if len(d.spend.columns):
        blocks.append(_chart(charts.spend_over_time(d.spend, cur)))
    blocks.append(_chart(charts.spend_shares_bar({s.get("scenario", "this run"): shares}, "spend_shares",
                                                 "Share of commissioner spend paid upfront, on milestones and on outcomes", cur)))
    return blocks


# ---------------------------------------------------------------------------------------------
# Experiment


def experiment_report(x: ExperimentData) -> Report:
    man = x.manifest
    exp = man.get("experiment", {})
    R = {n: len(df) for n, df in x.per_rep.items()}
    reps = sorted(set(R.values()))
    facts = [
        ("What was run", f"experiment {exp.get('name')}" + (f" (file {exp.get('file')})" if exp.get("file") else "")),
        ("Description", exp.get("description") or "–"),
        ("Designs", f"{len(x.designs)}: " + ", ".join(d.name + (" (baseline)" if d.baseline else "") for d in x.designs)),
        ("Replications", (f"{reps[0]:,} of each design" if len(reps) == 1 else f"{min(reps):,}–{max(reps):,} per design")
         + f" (asked for {man.get('replications')})"),
        ("Seed", f"{man.get('seed')} (common random numbers: replication r of every design has the same clients and luck)"),
        ("pbrsim version", str(man.get("version", "unknown"))),
        ("Run", f"started {man.get('started_at')}, finished {man.get('finished_at') or 'not finished'} (status {man.get('status')})"),
        ("Tables kept", ", ".join(x.tables) or "–"),
        ("Experiment SHA-256", str(exp.get("sha256") or "unknown")),
    ]
    design_rows = [(d.name, [cell("yes" if d.baseline else "no", cls="", design=d.name, metric="baseline"),
                             cell(d.description or "", cls="text", design=d.name, metric="description")]) for d in x.designs]
    intro = [_table(Table("table-designs", "Designs compared", ["design", "baseline", "description"], design_rows))]
    sections = [
        Section("cash-flow", "Cash flow", _exp_cash(x)),
        Section("outcomes", "Outcomes", _exp_outcomes(x)),
        Section("who-gets-dropped", "Who gets dropped", _exp_dropped(x)),
        Section("commissioner", "Commissioner view", _exp_commissioner(x)),
        Section("design-comparison", "Design comparison", _exp_comparison(x)),
    ]
    # the comparison is what a board came for: it comes first (with the designs it compares), after the headlines
    sections.sort(key=lambda sec: sec.id != "design-comparison")
    sections[0].blocks = intro + sections[0].blocks
    sections = [sec for sec in sections if sec.blocks]
    return Report(f"pbrsim report: {exp.get('name')}", f"{len(x.designs)} designs × {reps[-1]:,} replications, seed {man.get('seed')}",
                  "experiment", facts, list(x.notes), sections, _now(),
                  headlines=experiment_headlines(x.summary, x.baseline, x.currency))


def _orgs(x: ExperimentData) -> list[str]:
    seen = []
    for d in x.designs:
        for o in d.orgs:
            if o.name not in seen:
                seen.append(o.name)
    return seen


def _est(x: ExperimentData, metric: str, design: str, unit: str | None = None) -> str:
    rows = x.rows(metric)
    if design not in rows.index:
        return fmt.DASH
    r = rows.loc[design]
    u = unit or r["unit"]
    if r["estimator"] == "distribution":
        return f"{fmt.value(r['p50'], u, x.currency)} ({fmt.value(r['p5'], u, x.currency)})"
    return fmt.estimate(r["mean"], r["lo"], r["hi"], u, x.currency)


def _exp_cash(x: ExperimentData) -> list[Block]:
    blocks = [_p(CASH_INTRO)]
    orgs = _orgs(x)
    be: dict[tuple[str, str], dict] = {}
    for d in x.designs:
        if d.name not in x.cash:
            continue
        for o in d.orgs:
            sel = x.cash[d.name][x.cash[d.name]["organisation"] == o.name]
            if o.opening_cash is not None and not sel.empty:
                be[(d.name, o.name)] = break_even_summary(break_even(sel, o.opening_cash))
    if not x.cash:
        blocks.append(_notice("Month-by-month cash balances are not in this dataset (it keeps only the "
                              f"{', '.join(x.tables)} table{'s' if len(x.tables) != 1 else ''}; `pbrsim compare --out` keeps "
                              "only per-replication figures). The fan charts and break-even months need the monthly table: "
                              "run `pbrsim batch` without a `tables:` restriction to get them. Lowest balances and "
                              "failure rates below come from the per-replication figures."))
    fail_metrics = [(f"failed[{o}]", o) for o in orgs]
    if len(orgs) > 1:
        fail_metrics.append(("failed_any", "any organisation"))
    if any(x.has(m) for m, _ in fail_metrics):
        blocks.append(_chart(charts.by_design_panels(
            x, fail_metrics, "pct", "failure", "Share of runs in which the organisation ran out of cash",
            "share of runs (95% Wilson interval)",
            "One row per design (the baseline is the diamond); the dot is the share of runs in which the organisation "
            "ran out of cash and the whiskers its 95% interval. Further right = more likely to fail.")))
    for org in orgs:
        designs = [d for d in x.designs if any(o.name == org for o in d.orgs)]
        blocks.append(Block("h3", org, id=f"cash-{charts.safe_name(org)}"))
        rows = []
        for d in designs:
            o = next(o for o in d.orgs if o.name == org)
            b = be.get((d.name, org))
            rows.append((d.name + (" (baseline)" if d.baseline else ""), [
                cell(fmt.money(o.opening_cash, x.currency), design=d.name, org=org, metric="opening_cash"),
                cell(_limit_text(o, x.currency), design=d.name, org=org, metric="credit_limit"),
                cell(_est(x, f"lowest_cash[{org}]", d.name), design=d.name, org=org, metric=f"lowest_cash[{org}]"),
                cell(_est(x, f"failed[{org}]", d.name), design=d.name, org=org, metric=f"failed[{org}]"),
                cell(_est(x, f"margin[{org}]", d.name), design=d.name, org=org, metric=f"margin[{org}]"),
                cell(fmt.DASH if b is None else ("not reached" if b["median"] is None else fmt.month(b["median"])),
                     design=d.name, org=org, metric="break_even"),
                cell(fmt.DASH if b is None else fmt.pct(b["share"]), design=d.name, org=org, metric="break_even_share"),
            ]))
        blocks.append(_table(Table(f"table-cash-{charts.safe_name(org)}", f"Cash position of {org}, by design",
                                   ["design", "opening cash", "credit limit", "lowest cash: median (5th percentile)",
                                    "ran out of cash (share of runs)", "margin: median (5th percentile)",
                                    "break-even month (median)", "runs that broke even"], rows,
                                   "Shares with 95% intervals. " + BREAK_EVEN_NOTE)))
        if x.cash:
            blocks.append(_chart(charts.cash_fans_by_design(x.cash, designs, org, x.currency, fan)))
        vals = {d.name: x.per_rep[d.name][f"lowest_cash[{org}]"] for d in designs if f"lowest_cash[{org}]" in x.per_rep[d.name]}
        if vals:
            limits = {d.name: next(o.credit_limit for o in d.orgs if o.name == org) for d in designs
                      if next(o for o in d.orgs if o.name == org).limit_known}
            blocks.append(_chart(charts.lowest_cash_box(vals, org, x.baseline, limits, x.currency)))
    if len(x.designs) > charts.MAX_PANELS and x.cash:
        blocks.append(_notice(f"Fan charts show the first {charts.MAX_PANELS} of {len(x.designs)} designs; the tables show all."))
    return blocks


def _segments(x: ExperimentData, base: str) -> list[str]:
    keys = x.metrics(base)
    return keys + ([] if not x.has(base) else ["all"])


def _metric_name(base: str, key: str) -> str:
    return base if key == "all" else f"{base}[{key}]"


def _design_table(x: ExperimentData, id_: str, caption: str, metrics: list[tuple[str, str]], note: str = "",
                  unit: str | None = None) -> Table:
    metrics = [(m, label) for m, label in metrics if x.has(m)]
    rows = [(d.name + (" (baseline)" if d.baseline else ""),
             [cell(_est(x, m, d.name, unit), design=d.name, metric=m) for m, _ in metrics]) for d in x.designs]
    return Table(id_, caption, ["design", *[label for _, label in metrics]], rows, note, wide=len(metrics) > 5)


def _exp_outcomes(x: ExperimentData) -> list[Block]:
    blocks = [_p(OUTCOMES_INTRO + (f" The outcome is the first entry into “{x.primary_outcome}”." if x.primary_outcome else ""))]
    segs = _segments(x, "outcome_rate")
    om = [(_metric_name("outcome_rate", g), g) for g in segs]
    if om:
        blocks.append(_table(_design_table(x, "table-outcome-rates", "Outcome rate by segment and design (95% intervals)", om)))
        blocks.append(_chart(charts.by_design_panels(
            x, om, "pct", "outcome_rates", "Outcome rate by segment and design", "share of referred clients (95% interval)",
            "One panel per client segment, one row per design (the baseline is the diamond). The dot is the share of "
            "referred clients reaching the outcome; the whiskers are its 95% interval. Further right is better.")))
    states = [m[len("milestone_rate_"):] for m in dict.fromkeys(x.summary["metric"])
              if m.startswith("milestone_rate_") and "[" not in m]
    ms = []
    for state in states:  # one table per milestone state: only the same state is set side by side
        base = f"milestone_rate_{state}"
        rows_ = [(_metric_name(base, g), g) for g in _segments(x, base)]
        ms += rows_
        blocks.append(_table(_design_table(x, f"table-milestone-rates-{state}", f"Milestone rate ({state}) by segment and "
                                           "design (95% intervals)", rows_,
                                           f"Share of referrals who entered {state}. Designs whose first milestone is "
                                           "another state, or that have none, have no row here (–).")))
        blocks.append(_chart(charts.by_design_panels(
            x, rows_, "pct", f"milestone_rates_{state}", f"Milestone rate ({state}) by segment and design",
            "share of referred clients (95% interval)",
            f"As the outcome chart, for entry into {state}; designs without a milestone there have no row.")))
    if not om and not ms:
        blocks.append(_notice("The designs have no outcome or milestone rates (no primary outcome defined)."))
    if x.cumulative:
        blocks.append(_chart(charts.cumulative_lines(
            x.cumulative, "Cumulative outcomes over the contract, by design", "cumulative_outcomes",
            "outcomes so far (median run)",
            "Line chart of the cumulative number of outcomes month by month, median over runs, one line per design.",
            "Each line is one design's median run: the number of outcomes reached so far. Lines differ by style and "
            "marker as well as colour and are labelled at their right end; the baseline is drawn thicker.",
            band_key=None, baseline=x.baseline)))
    else:
        blocks.append(_notice("Cumulative outcomes over time are not shown: this dataset does not keep the clients table "
                              "(run `pbrsim batch` without a `tables:` restriction to get it)."))
    return blocks


def _exp_dropped(x: ExperimentData) -> list[Block]:
    blocks = [_p(DROPPED_INTRO)]
    pr = [(_metric_name("parking_rate", g), g) for g in _segments(x, "parking_rate")]
    dr = [(_metric_name("dropped_rate", g), g) for g in _segments(x, "dropped_rate")]
    gap = x.has("equity_ratio")
    if not (pr or dr or gap):
        blocks.append(_notice(
            "These runs have no parking or dropped-client figures: the per-replication tables have no parking_rate, "
            "dropped_rate or equity_ratio columns (the pbrsim version that wrote them did not compute them). They appear "
            "here, by segment and design, for datasets written by a pbrsim that does."))
        return blocks
    note = ("Parking rate = months at minimal service ÷ months in service; dropped-client rate = clients dropped ÷ "
            "clients referred; pooled over runs with 95% intervals. Dropped clients include those lost when their "
            "provider failed.")
    for rows, key, title, axis, further, missing in (
        (pr, "parking", "Parking rate", "share of service months at minimal service",
         "clients parked on minimal service.", "No parking rates in these runs."),
        (dr, "dropped", "Dropped-client rate", "share of referred clients dropped",
         "clients left without an outcome (their provider failed, or after little full service).",
         "No dropped-client rates in these runs."),
    ):
        if not rows:
            blocks.append(_notice(missing))
            continue
        blocks.append(_table(_design_table(x, f"table-{key}", f"{title} by segment and design", rows, note)))
        blocks.append(_chart(charts.by_design_panels(
            x, rows, "pct", key, f"{title} by segment and design", axis,
            "One panel per segment, one row per design (baseline: diamond), dot with 95% interval. Further right = more "
            + further)))
    if gap:
        blocks.append(_table(_design_table(x, "table-equity", "Equity ratio by design", [("equity_ratio", "equity ratio")],
                                           "Outcome rate of the most complex clients ÷ that of the least complex: 1 = "
                                           "equal chances; higher is fairer, lower = the contract favours the easy clients.")))
        blocks.append(_chart(charts.by_design_panels(
            x, [("equity_ratio", "equity ratio")], "ratio", "equity_ratio", "Equity ratio by design",
            "most complex clients' outcome rate ÷ least complex clients' rate",
            "One row per design (baseline: diamond), dot with 95% interval. Further right (towards 1) = fairer.")))
    else:
        blocks.append(_notice("The equity ratio is not available for these runs (no equity_ratio column)."))
    return blocks


def _shares(x: ExperimentData) -> dict[str, dict]:
    out = {}
    for d in x.names:
        paid = {}
        for k in PAYMENT_KINDS:
            rows = x.rows(f"paid[{k}]")
            paid[k] = float(rows.loc[d, "mean"]) if d in rows.index else 0.0
        out[d] = spend_shares(paid)
    return out


def _exp_commissioner(x: ExperimentData) -> list[Block]:
    blocks = [_p(COMMISSIONER_INTRO)]
    shares = _shares(x)
    rows = []
    for d in x.designs:
        cells = [cell(_est(x, "paid_total", d.name), design=d.name, metric="paid_total"),
                 cell(_est(x, "cost_per_outcome", d.name), design=d.name, metric="cost_per_outcome")]
        cells += [cell(fmt.pct(shares[d.name][g]), design=d.name, metric=f"share_{g}") for g in ("upfront", "milestones", "outcomes")]
        cells.append(cell(_est(x, "cap_reached", d.name), design=d.name, metric="cap_reached"))
        rows.append((d.name + (" (baseline)" if d.baseline else ""), cells))
    blocks.append(_table(Table("table-commissioner", "What the commissioner pays, by design (per contract)",
                               ["design", "total spend", "cost per outcome", "upfront share of actual spend",
                                "milestones share of actual spend", "outcomes share of actual spend",
                                "cap reached (share of runs)"], rows,
                               "Means with 95% intervals. Shares of actual spend (what the commissioner paid, not the "
                               "contract value): upfront = service fee and attachment fees; milestones = milestone "
                               "payments; outcomes = outcome and sustainment payments. A design's service fee written as a "
                               "share of contract value (share_of_value) is on a different base.", wide=True)))
    if x.has("cap_reached"):
        cap = x.rows("cap_reached")
        reached = [d for d, r in cap.iterrows() if (r["mean"] or 0) > 0]
        blocks.append(_p("The cap was reached in some runs of: " + ", ".join(reached) + "." if reached else
                         "The cap was never reached in any design (or the contract has no cap)."))
    if any(x.has(f"paid[{k}]") for k in PAYMENT_KINDS):
        blocks.append(_chart(charts.spend_by_design(x)))
    blocks.append(_chart(charts.spend_shares_bar(shares, "spend_shares",
                                                 "Share of commissioner spend paid upfront, on milestones and on outcomes", x.currency)))
    if x.spend:
        curves = {}
        for name, sp in x.spend.items():
            cum = sp.sum(axis=1).cumsum()
            curves[name] = pd.DataFrame({"p5": cum, "p25": cum, "p50": cum, "p75": cum, "p95": cum})
        c = charts.cumulative_lines(
            curves, "Cumulative commissioner spend over the contract, by design", "spend_over_time",
            "paid so far (mean over runs)",
            "Line chart of cumulative commissioner spend month by month, mean over runs, one line per design.",
            "Each line is one design's spend so far (mean over runs), labelled at its right end; the baseline is drawn "
            "thicker. A line that rises late means the commissioner pays — and the provider is paid — later.",
            band_key=None, baseline=x.baseline, currency=x.currency)
        blocks.append(_chart(c))
        base = x.spend.get(x.baseline)
        if base is not None and len(base.columns):
            blocks.append(_chart(charts.spend_over_time(base, x.currency, name="spend_over_time_baseline",
                                                        title=f"What the commissioner pays each month, by payment type: {x.baseline} (baseline)")))
    else:
        blocks.append(_notice("Spend over time is not shown: this dataset does not keep the ledger table."))
    return blocks


def best_designs(rows: pd.DataFrame, metric: str) -> set[str]:
    """Designs with the best value on ``metric`` (ties all best); empty when no direction or all equal."""
    way = direction(metric)
    if way is None or rows.empty:
        return set()
    col = "p50" if (rows["estimator"] == "distribution").all() else "mean"
    vals = rows[col].astype(float).dropna()
    if len(vals) < 2 or np.isclose(vals.max(), vals.min(), rtol=1e-9, atol=1e-12):
        return set()
    target = vals.max() if way == "higher" else vals.min()
    return {d for d, v in vals.items() if np.isclose(v, target, rtol=1e-9, atol=1e-12)}


def comparison_cell(r: pd.Series, currency: str) -> list[str]:
    """Lines of one comparison cell: the estimate, then the paired difference from the baseline."""
    unit = r["unit"]
    if r["estimator"] == "distribution":
        lines = [f"median {fmt.value(r['p50'], unit, currency)}", f"p5 {fmt.value(r['p5'], unit, currency)}"]
    else:
        lines = [fmt.estimate(r["mean"], r["lo"], r["hi"], unit, currency)]
    if not bool(r["baseline"]):
        lead = "Δ mean " if r["estimator"] == "distribution" else "Δ "
        d = fmt.difference(r["diff"], r["diff_lo"], r["diff_hi"], r["diff_se"], unit, currency, lead)
        if d:
            lines.append(d)
    return lines


PER_TABLE = 3  # designs besides the baseline in one comparison table


def _exp_comparison(x: ExperimentData) -> list[Block]:
    shown = x.summary[x.summary["in_table"].astype(bool)]
    metrics = list(dict.fromkeys(shown["metric"]))
    labels = dict(zip(shown["metric"], shown["label"]))
    others = [d for d in x.names if d != x.baseline]
    groups = [others[i:i + PER_TABLE] for i in range(0, len(others), PER_TABLE)] or [[]]
    best = {m: best_designs(x.rows(m), m) for m in metrics}
    blocks = [_p("All designs side by side, one row per metric. Because every design saw the same clients and the same "
                 "luck in replication r, the paired differences (Δ) are much more precise than comparing separate runs: "
                 "a Δ interval that excludes 0 is a real difference between the designs, not noise.")]
    same = same_outcomes_as_baseline(x.summary)
    if same:
        blocks.append(_notice(f"Prices only: {', '.join(same)}: " + PRICE_ONLY_NOTE))
    if len(groups) > 1:
        blocks.append(_p(f"With {len(x.names)} designs the comparison is split into {len(groups)} tables, each with the "
                         "baseline first; “★ best” is the best of all designs, not only of those in the same table."))
    for k, group in enumerate(groups):
        names = [x.baseline] + group
        rows = []
        for m in metrics:
            mrows = x.rows(m)
            cells = [cell(direction(m) or "–", cls="text", metric=m)]
            for d in names:
                if d in mrows.index:
                    cells.append(cell(comparison_cell(mrows.loc[d], x.currency), best=d in best[m], design=d, metric=m))
                else:
                    cells.append(cell(fmt.DASH, design=d, metric=m))
            rows.append((labels[m], cells))
        head = ["metric", "better when"] + [d + (" (baseline)" if d == x.baseline else "") for d in names]
        part = f" (part {k + 1} of {len(groups)})" if len(groups) > 1 else ""
        blocks.append(_table(Table(
            "table-comparison" + (f"-{k + 1}" if k else ""),
            f"Designs compared with the baseline ({x.baseline}): estimates and paired differences{part}", head, rows,
            "Each cell: the design's estimate (mean with 95% interval; for lowest cash and margin the median and 5th "
            "percentile over runs), then Δ, its paired difference from the baseline over the same replications "
            "(common random numbers) with a 95% interval — pp = percentage points. ★ best marks the best design on "
            "each metric (by the mean, or the median for lowest cash and margin) in the direction shown in “better "
            "when”; it is also shaded and bold. Lower spend and cost per outcome is best for the commissioner; higher "
            "cash and margin is best for the provider.", kind="comparison", wide=True)))
    return blocks
