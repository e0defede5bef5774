"""Loading a run folder or an experiment dataset, and the figures the charts and tables need.

Everything here is computed from the files pbrsim writes (``summary.json``, ``manifest.json`` and the
Parquet tables of a run; ``manifest.json``, ``summary.parquet`` and ``runs/<table>/...`` of an
experiment). Money in the Parquet tables is integer pence; everything returned here is in pounds.
Only the columns a chart needs are read, so large runs stay cheap to report on.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ..analysis.estimators import mean_ci, ratio_ci, ratio_of_ratios_ci
from ..analysis.metrics import PAYMENT_KINDS

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
UPFRONT_KINDS = ("service_fee", "attachment")
MILESTONE_KINDS = ("milestone",)
OUTCOME_KINDS = ("outcome", "sustainment")


class ReportError(Exception):
    """The folder cannot be reported on (not a pbrsim run or experiment, or missing files)."""


# ---------------------------------------------------------------------------------------------
# What kind of folder


def kind_of(path: Path) -> str:
    """``run`` (``pbrsim run``), ``experiment`` (``pbrsim batch`` / ``compare --out``), ``stress`` (``pbrsim stress``) or
    ``design`` (``pbrsim design``)."""
    path = Path(path)
    if not path.is_dir():
        raise ReportError(f"{path} is not a folder")
    man = path / "manifest.json"
    if not man.exists():
        raise ReportError(f"{path} is not a pbrsim run or experiment folder (no manifest.json)")
    try:
        manifest = json.loads(man.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ReportError(f"cannot read {man}: {exc}") from None
    if manifest.get("kind") == "pbrsim-experiment":
        return "experiment"
    if manifest.get("kind") == "pbrsim-stress":
        return "stress"
    if manifest.get("kind") == "pbrsim-design":
        if not (path / "summary.json").exists():
            raise ReportError(f"{path} holds a design run that has not finished ({manifest.get('status')}); run it again to finish it")
        return "design"
    if manifest.get("kind") == "pbrsim-report":
        raise ReportError(f"{path} is a report folder; give the run, experiment or stress-test folder it was made from")
    if (path / "summary.json").exists():
        return "run"
    raise ReportError(f"{path} is not a pbrsim run or experiment folder (manifest.json but no summary.json)")


# ---------------------------------------------------------------------------------------------
# Small helpers


def _read(path: Path, columns: list[str] | None = None, filters=None) -> pd.DataFrame:
    """Columns of a Parquet file that exist there (missing ones are skipped)."""
    if not path.exists():
        return pd.DataFrame()
    from ..engine.records import stored_names, with_current_names

    schema = pq.read_schema(path)
    if columns:  # a table written by pbrsim 0.1 names its pence columns without the suffix
        columns = stored_names(columns, schema.names)
    cols = [c for c in columns if c in schema.names] if columns else None
    df = pq.read_table(path, columns=cols, filters=filters).to_pandas()
    df = with_current_names(df)
    for c in df.columns:
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            df[c] = df[c].astype(str)
    return df


def bracketed(columns, base: str) -> list[str]:
    """Keys k of columns named ``base[k]``, in column order."""
    return [c[len(base) + 1:-1] for c in columns if c.startswith(base + "[") and c.endswith("]")]


@dataclass
class OrgInfo:
    name: str
    role: str = "prime"
    opening_cash: float | None = None
    credit_limit: float | None = None  # pounds of overdraft allowed; None with ``limit_known`` = unlimited
    limit_known: bool = False


def scenario_orgs(scenario) -> dict[str, OrgInfo]:
    out = {}
    for spec in scenario.organisation_specs:
        out[spec.name] = OrgInfo(spec.name, spec.role, float(spec.opening_cash),
                                 None if spec.credit.limit is None else float(spec.credit.limit), True)
    return out


def load_scenario_file(path: str | Path | None, base_dirs=(), expected_sha: str | None = None):
    """(Scenario or None, note) — the scenario a run was made from, if it is still there and unchanged."""
    from ..scenario.schema import ScenarioError, file_hash, load_scenario

    if not path:
        return None, "the manifest names no scenario file"
    candidates = [Path(path)] + [Path(b) / path for b in base_dirs if not Path(path).is_absolute()]
    for cand in candidates:
        if cand.is_file():
            try:
                if expected_sha and file_hash(cand) != expected_sha:
                    return None, f"the scenario file {path} has changed since the run"
                return load_scenario(cand), ""
            except (ScenarioError, OSError, ValueError) as exc:
                return None, f"the scenario file {path} cannot be read ({str(exc).splitlines()[0]})"
    return None, f"the scenario file {path} is no longer where the run found it"


def fan(df: pd.DataFrame, value: str, months=None) -> pd.DataFrame:
    """Quantiles of ``value`` across replications for each month (index month; columns p5 ... p95)."""
    if df.empty:
        return pd.DataFrame(columns=[f"p{int(q * 100)}" for q in QUANTILES])
    wide = df.pivot_table(index="month", columns="replication", values=value, aggfunc="sum")
    if months is not None:
        wide = wide.reindex(months)
    arr = wide.to_numpy(dtype=float)
    q = np.nanquantile(arr, QUANTILES, axis=1) if arr.size else np.empty((len(QUANTILES), 0))
    return pd.DataFrame(q.T, index=wide.index, columns=[f"p{int(x * 100)}" for x in QUANTILES])


def break_even(cash: pd.DataFrame, opening: dict | float) -> pd.Series:
    """Per replication: the first month from which the month-end balance stays at or above opening cash
    (0 if it never drops below; NaN if it is still below at the end of the run)."""
    if cash.empty:
        return pd.Series(dtype=float)
    wide = cash.pivot_table(index="replication", columns="month", values="cash", aggfunc="sum").sort_index(axis=1)
    months = wide.columns.to_numpy()
    op = pd.Series(opening).reindex(wide.index).to_numpy(dtype=float) if isinstance(opening, dict) else float(opening)
    below = wide.to_numpy(dtype=float) < (op[:, None] if isinstance(op, np.ndarray) else op) - 1e-6
    out = np.full(len(wide), np.nan)
    for i, row in enumerate(below):
        idx = np.flatnonzero(row)
        if len(idx) == 0:
            out[i] = months[0]
        elif idx[-1] < len(months) - 1:
            out[i] = months[idx[-1] + 1]
    return pd.Series(out, index=wide.index, name="break_even")


def break_even_summary(be: pd.Series) -> dict:
    """Median month of break-even (a run that never broke even counts as later than every month, so the
    median is None — "not reached" — when half the runs or more never did) and the share that did."""
    n = len(be)
    if n == 0:
        return {"median": None, "share": None, "n": 0}
    med = float(np.median(be.fillna(np.inf).to_numpy(dtype=float)))
    return {"median": None if math.isinf(med) else med, "share": float(be.notna().mean()), "n": n}


def cumulative_counts(clients: pd.DataFrame, column: str, months, by: str | None = "segment", order=None) -> dict[str, pd.DataFrame]:
    """Quantiles over replications of the cumulative number of clients whose ``column`` (a month) is set,
    by month; per value of ``by`` and for all clients (key ``all``)."""
    out: dict[str, pd.DataFrame] = {}
    if clients.empty or column not in clients:
        return out
    reps = np.sort(clients["replication"].unique())
    months = pd.Index(months, name="month")
    groups = [("all", clients)]
    if by and by in clients:
        found = {str(g): d for g, d in clients.groupby(by, sort=False, observed=True)}
        order = [str(g) for g in (order or [])]
        groups = [(g, found[g]) for g in order + sorted(set(found) - set(order)) if g in found] + groups
    for name, d in groups:
        hit = d[d[column].notna()]
        counts = (hit.groupby(["replication", hit[column].astype(int)]).size()
                  .unstack(fill_value=0).reindex(index=reps, columns=months, fill_value=0))
        cum = counts.cumsum(axis=1).to_numpy(dtype=float)
        q = np.quantile(cum, QUANTILES, axis=0) if len(reps) else np.zeros((len(QUANTILES), len(months)))
        out[name] = pd.DataFrame(q.T, index=months, columns=[f"p{int(x * 100)}" for x in QUANTILES])
    return out


def spend_shares(paid_by_kind: dict[str, float]) -> dict[str, float | None]:
    """Share of commissioner spend that was upfront (service fee, attachment), milestones and outcomes
    (outcome and sustainment payments)."""
    total = sum(v for v in paid_by_kind.values() if v is not None and not math.isnan(v))
    groups = {"upfront": UPFRONT_KINDS, "milestones": MILESTONE_KINDS, "outcomes": OUTCOME_KINDS}
    if total <= 0:
        return {k: None for k in groups}
    return {k: sum(paid_by_kind.get(x) or 0.0 for x in kinds) / total for k, kinds in groups.items()}


def parking_from_per_rep(per_rep: pd.DataFrame, segments: list[str]) -> dict | None:
    """Parking rate, dropped clients and rate (by segment and overall) and the equity ratio, with intervals,
    from per-replication columns; None when the run has no parking columns.

    The estimators of ``pbrsim.analysis.parking.summary`` (pooled ratios, means of counts), so a figure is the
    same number here as in ``pbrsim run`` (docs/metrics.md)."""
    cols = set(per_rep.columns)
    if not ("service_months" in cols or bracketed(per_rep.columns, "dropped")):
        return None

    def rate(num: str, den: str):
        return ratio_ci(per_rep[num], per_rep[den]) if num in cols and den in cols else None

    def count(col: str):
        return mean_ci(per_rep[col]) if col in cols else None

    rows = []
    for g in list(segments) + ["all"]:
        key = "" if g == "all" else f"[{g}]"
        rows.append({
            "segment": g,
            "parking_rate": rate(f"minimal_months{key}", f"service_months{key}"),
            "dropped": count(f"dropped{key}"),
            "dropped_failure": count(f"dropped_failure{key}"),
            "dropped_rate": rate(f"dropped{key}", f"referrals{key}"),
        })
    gap = None
    if {"outcomes_complex", "referrals_complex", "outcomes_least", "referrals_least"} <= cols:
        gap = ratio_of_ratios_ci(per_rep["outcomes_complex"], per_rep["referrals_complex"],
                                 per_rep["outcomes_least"], per_rep["referrals_least"])
    return {"segments": rows, "equity_ratio": gap, "has_equity_ratio": "equity_ratio" in cols}


def parking_from_summary(summary: dict) -> dict | None:
    """The parking block of a summary.json, if the engine wrote one (``parking`` key, or top level)."""
    block = summary.get("parking") if isinstance(summary.get("parking"), dict) else None
    if block is None and "equity_ratio" in summary:
        block = summary
    if not block or not isinstance(block.get("segments"), list):
        return None
    rows = [r for r in block["segments"] if "parking_rate" in r or "dropped_rate" in r]
    if not rows:
        return None
    return {"segments": [{"segment": r["segment"], "parking_rate": r.get("parking_rate"), "dropped": r.get("dropped"),
                          "dropped_failure": r.get("dropped_failure"), "dropped_rate": r.get("dropped_rate")} for r in rows],
            "equity_ratio": block.get("equity_ratio"), "has_equity_ratio": "equity_ratio" in block,
            "most_complex": block.get("most_complex"), "least_complex": block.get("least_complex"),
            "organisations": block.get("organisations") or [],
            "cost_per_complex_outcome": block.get("cost_per_complex_outcome"),
            "dropped_full_service_share": block.get("dropped_full_service_share"),
            "classes": block.get("classes") or []}


# ---------------------------------------------------------------------------------------------
# A single run


@dataclass
class RunData:
    path: Path
    summary: dict
    manifest: dict
    per_rep: pd.DataFrame
    cash: pd.DataFrame  # replication, organisation, month, cash (pounds)
    orgs: list[OrgInfo]
    commissioner: str
    spend: pd.DataFrame  # month x payment kind: mean commissioner payments per contract (pounds)
    cumulative: dict[str, pd.DataFrame]  # segment (and "all") -> quantiles of cumulative outcomes by month
    parking: dict | None
    scenario_note: str = ""
    months: list[int] = field(default_factory=list)

    @property
    def currency(self) -> str:
        return self.summary.get("currency", "GBP")

    @property
    def segments(self) -> list[str]:
        return [r["segment"] for r in self.summary["segments"] if r["segment"] != "all"]

    def org_summary(self, name: str) -> dict:
        return next(o for o in self.summary["organisations"] if o["organisation"] == name)

    def cash_of(self, org: str) -> pd.DataFrame:
        return self.cash[self.cash["organisation"] == org]


def _commissioner(scenario, ledger_payers: set[str], orgs: list[str]) -> str:
    if scenario is not None:
        return scenario.contract.commissioner
    others = sorted(ledger_payers - set(orgs))
    return others[0] if others else "commissioner"


def load_run(path: str | Path) -> RunData:
    path = Path(path)
    try:
        summary = json.loads((path / "summary.json").read_text())
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ReportError(f"cannot read the summary of {path}: {exc}") from None
    if manifest.get("method") == "exact" or not (path / "monthly.parquet").exists():
        raise ReportError(f"{path} holds exact expected values (pbrsim run --method exact) or no monthly table; "
                          "the report needs a Monte Carlo run (pbrsim run SCENARIO -n N)")
    per_rep = _read(path / "replications.parquet")
    if per_rep.empty:
        raise ReportError(f"{path} has no replications.parquet")
    per_rep = per_rep.set_index("replication").sort_index() if "replication" in per_rep else per_rep

    scenario, note = load_scenario_file(manifest.get("scenario"), (path.parent, path.parent.parent, Path.cwd()),
                                        manifest.get("scenario_sha256"))
    names = [o["organisation"] for o in summary["organisations"]]
    from_scenario = scenario_orgs(scenario) if scenario is not None else {}
    orgs = []
    for o in summary["organisations"]:
        n = o["organisation"]
        info = from_scenario.get(n) or OrgInfo(n, o.get("role", "prime"))
        if info.opening_cash is None and f"final_cash[{n}]" in per_rep and f"margin[{n}]" in per_rep:
            opening = (per_rep[f"final_cash[{n}]"] - per_rep[f"margin[{n}]"]).median()  # margin = final - opening
            info.opening_cash = float(round(opening, 2))
        orgs.append(info)

    cash = _read(path / "monthly.parquet", ["replication", "organisation", "month", "cash_pence"])
    cash = cash.assign(cash=cash.pop("cash_pence") / 100) if "cash_pence" in cash else cash
    months = sorted(cash["month"].unique().tolist())

    ledger_payers = set(_read(path / "ledger.parquet", ["payer"])["payer"].astype(str).unique()) if scenario is None else set()
    commissioner = _commissioner(scenario, ledger_payers, names)
    ledger = _read(path / "ledger.parquet", ["replication", "month", "kind", "amount_pence", "payer"],
                   filters=[("payer", "==", commissioner)])
    R = max(int(summary.get("replications") or per_rep.shape[0]), 1)
    spend = (ledger.groupby(["month", "kind"])["amount_pence"].sum().unstack(fill_value=0) / 100 / R) if len(ledger) else pd.DataFrame()
    spend = spend.reindex(index=months, fill_value=0.0)
    spend = spend[[k for k in PAYMENT_KINDS if k in spend.columns and spend[k].abs().sum() > 0]] if len(spend.columns) else spend

    primary = summary.get("primary_outcome")
    clients = _read(path / "clients.parquet", ["replication", "segment", f"first_{primary}"]) if primary else pd.DataFrame()
    segments = [r["segment"] for r in summary["segments"] if r["segment"] != "all"]
    cumulative = cumulative_counts(clients, f"first_{primary}", months, order=segments) if primary else {}
    parking = parking_from_summary(summary) or parking_from_per_rep(per_rep, segments)
    return RunData(path, summary, manifest, per_rep, cash, orgs, commissioner, spend, cumulative, parking, note, months)


# ---------------------------------------------------------------------------------------------
# An experiment dataset


@dataclass
class DesignInfo:
    name: str
    description: str | None
    baseline: bool
    scenario: object | None
    orgs: list[OrgInfo]


@dataclass
class ExperimentData:
    path: Path
    manifest: dict
    summary: pd.DataFrame  # one row per design x metric (pbrsim.analysis.compare.SUMMARY_COLUMNS)
    designs: list[DesignInfo]
    per_rep: dict[str, pd.DataFrame]
    cash: dict[str, pd.DataFrame]  # design -> replication, organisation, month, cash (pounds); empty if not kept
    cumulative: dict[str, pd.DataFrame]  # design -> quantiles of cumulative outcomes (all clients) by month
    spend: dict[str, pd.DataFrame]  # design -> month x kind mean commissioner payments (pounds)
    tables: list[str]
    currency: str = "GBP"
    primary_outcome: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def baseline(self) -> str:
        return next((d.name for d in self.designs if d.baseline), self.designs[0].name)

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.designs]

    def design(self, name: str) -> DesignInfo:
        return next(d for d in self.designs if d.name == name)

    def rows(self, metric: str) -> pd.DataFrame:
        """Summary rows of one metric, in design order (designs without it are left out)."""
        s = self.summary[self.summary["metric"] == metric]
        return s.set_index("design").reindex([n for n in self.names if n in set(s["design"])])

    def metrics(self, base: str) -> list[str]:
        """Keys k of metrics named ``base[k]`` present in the summary, in summary order."""
        return bracketed(list(dict.fromkeys(self.summary["metric"])), base)

    def has(self, metric: str) -> bool:
        return bool((self.summary["metric"] == metric).any())


def load_experiment(path: str | Path) -> ExperimentData:
    from ..experiments.dataset import DatasetError, finished_runs, read_manifest, read_table, tables_present

    path = Path(path)
    try:
        manifest = read_manifest(path)
    except DatasetError as exc:
        raise ReportError(str(exc)) from None
    done = finished_runs(path)
    names = [d["name"] for d in manifest.get("designs", []) if d["name"] in done]
    if not names:
        raise ReportError(f"{path} has no finished runs yet")
    notes = []
    if manifest.get("status") != "complete":
        notes.append(f"The batch is not complete (status: {manifest.get('status')}); this report uses the "
                     f"{sum(len(v) for v in done.values())} runs finished so far.")

    summary = None
    spath = path / "summary.parquet"
    if spath.exists() and manifest.get("status") == "complete":
        summary = pd.read_parquet(spath)
    if summary is None or not set(names) <= set(summary["design"]):
        from ..experiments.batch import summarise_dataset

        try:
            summary = summarise_dataset(path, manifest)
        except DatasetError as exc:
            raise ReportError(str(exc)) from None

    baseline = manifest.get("baseline") or names[0]
    designs = []
    currency, primary = "GBP", None
    for d in manifest["designs"]:
        if d["name"] not in names:
            continue
        scenario, note = load_scenario_file(path / "designs" / f"{d['name']}.yaml")
        if scenario is None:
            notes.append(f"Design {d['name']}: {note}; credit limits are not drawn.")
        else:
            currency = scenario.currency
            primary = primary or scenario.primary_outcome_state
        orgs = list(scenario_orgs(scenario).values()) if scenario is not None else []
        designs.append(DesignInfo(d["name"], d.get("description"), d["name"] == baseline, scenario, orgs))

    tables = tables_present(path)
    per_rep, cash, cumulative, spend = {}, {}, {}, {}
    for d in designs:
        df = read_table(path, "replications", designs=[d.name])
        per_rep[d.name] = df.drop(columns="design").set_index("replication").sort_index()
        if not d.orgs:  # no scenario: organisations and opening cash from the per-replication columns
            for n in bracketed(per_rep[d.name].columns, "lowest_cash"):
                pr = per_rep[d.name]
                opening = float((pr[f"final_cash[{n}]"] - pr[f"margin[{n}]"]).median()) if f"margin[{n}]" in pr else None
                d.orgs.append(OrgInfo(n, "prime" if not d.orgs else "subcontractor", opening))
        if "monthly" in tables:
            m = read_table(path, "monthly", designs=[d.name], columns=["replication", "organisation", "month", "cash_pence"])
            if not m.empty:
                m["organisation"] = m["organisation"].astype(str)
                m["cash"] = m.pop("cash_pence") / 100
                cash[d.name] = m.drop(columns="design")
        months = sorted(cash[d.name]["month"].unique()) if d.name in cash else None
        sc_primary = d.scenario.primary_outcome_state if d.scenario is not None else None
        if "clients" in tables and sc_primary:
            col = f"first_{sc_primary}"
            c = read_table(path, "clients", designs=[d.name], columns=["replication", col])
            if not c.empty:
                if months is None:
                    months = list(range(int(d.scenario.months) + 1))
                cumulative[d.name] = cumulative_counts(c, col, months, by=None)["all"]
        if "ledger" in tables and d.scenario is not None:
            comm = d.scenario.contract.commissioner
            led = read_table(path, "ledger", designs=[d.name], columns=["replication", "month", "payer", "kind", "amount_pence"])
            if not led.empty:
                led = led[led["payer"].astype(str) == comm]
                R = max(len(per_rep[d.name]), 1)
                sp = led.groupby(["month", "kind"])["amount_pence"].sum().unstack(fill_value=0) / 100 / R
                if months is not None:
                    sp = sp.reindex(index=months, fill_value=0.0)
                spend[d.name] = sp[[k for k in PAYMENT_KINDS if k in sp.columns]]
    return ExperimentData(path, manifest, summary, designs, per_rep, cash, cumulative, spend, tables, currency, primary, notes)
