"""Spreadsheet exports of a result folder: an Excel workbook or CSV files, in pounds, units in the headers.

Finance directors and commissioners work in spreadsheets: ``pbrsim export DIR`` turns a run folder
(``pbrsim run``), an experiment dataset (``pbrsim batch`` / ``compare --out``) or a stress test
(``pbrsim stress``) into sheets a person reads — every money figure in pounds (never pence), every rate as a
percentage, the unit of each column in its header (or, where rows mix units, in a Unit column), frozen
header rows and number formats. The figures are the folder's own (``summary.json``, ``summary.parquet``,
the tables): nothing is recomputed differently, so a number in the workbook is the number in the terminal
and the report (docs/reports.md, "Spreadsheet exports").
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..engine.records import with_current_names
from ..store import KIND_EXPORT, check_out, manifest, write_files
from .data import ReportError, kind_of

EXPORT_FOLDER = "export"
WORKBOOK = "pbrsim.xlsx"
FORMATS = ("xlsx", "csv")
MAX_ROWS = 1_048_575  # Excel's rows less the header
SYMBOLS = {"GBP": "£", "EUR": "€", "USD": "$"}

# Units of summary figures, by the name of the figure (its last key, else the keys above it). The first rule
# that matches wins; a figure matching none has no unit, which tests/test_export.py does not allow for the
# shipped scenarios, so a new figure must be given one here.
_UNIT_RULES: tuple[tuple[str, str], ...] = (
    # the investors' figures (docs/social-investment.md): IRRs are annual rates, statuses are counts of runs
    (r"^(irr_status|runs|ok|several_roots|total_loss|no_sign_change|no_root|investor_irr_status)$", "count"),
    (r"^(investor_)?irr$|^(investor_)?(irr_)?below_hurdle$|^hurdle_rate$|^investor_lost$", "percent"),
    (r"^(investor_)?(loss|guaranteed)$|^topped_up$|^commitment$", "money"),
    (r"(^|_)(months?|month_p50|payback_months)$|_month$|^month", "months"),
    (r"ratio|fiscal_return|multiple", "ratio"),
    (r"rate|share|reached|ran_out|deadweight|^never$|gap|failed|probability|loss|lost", "percent"),
    (r"^(referrals|outcomes|milestones|dropped|dropped_service|dropped_failure|clients_affected|additional_outcomes|outcomes_without_programme|claims)$"
     r"|_count$|^n_", "count"),
    (r"paid|cost|income|margin|cash|spend|price|value|gains|pays|saves|^net$|interest|drawn|repaid|capital|fee"
     r"|reserve|facility|total|clawback|outcome_payments|^service_fee$|^attachment$|^milestone$|^outcome$"
     r"|^sustainment$|fee_for_service", "money"),
)
UNIT_LABELS = {"money": "{symbol}", "percent": "%", "count": "count", "months": "months", "ratio": "ratio"}
# the compare summary's own unit names (analysis/compare.py) in the words used here
_COMPARE_UNITS = {"pct": "percent", "money": "money", "count": "count", "months": "months", "ratio": "ratio"}


def unit_of(path: tuple[str, ...]) -> str:
    """The unit of a summary figure from its key path: money, percent, count, months, ratio, or '' if unknown."""
    for key in reversed(path):
        for pattern, unit in _UNIT_RULES:
            if re.search(pattern, key):
                return unit
    return ""


@dataclass
class Sheet:
    """One sheet: a table, and how to format its columns (``formats``: column -> unit) or rows (``row_unit``)."""

    name: str
    frame: pd.DataFrame
    formats: dict[str, str] = field(default_factory=dict)
    row_unit: str | None = None  # the column holding each row's unit, when rows mix units
    note: str = ""
    symbol: str = "£"  # the currency's symbol, for money formats and unit words


# ---------------------------------------------------------------------------------------------
# Sheets from a run folder


def _is_interval(o) -> bool:
    return isinstance(o, dict) and "mean" in o and all(not isinstance(v, (dict, list)) for v in o.values())


def _tag(item: dict, index: int) -> str:
    for key in ("segment", "organisation", "holder", "line", "stress", "design", "name", "kind"):
        if isinstance(item.get(key), str):
            return item[key]
    return str(index)


def flatten_summary(summary: dict) -> tuple[list[dict], list[dict]]:
    """Interval figures as rows (section, group, figure, unit, mean, low, high, p5, p50) and plain facts as rows
    (section, field, value)."""
    figures: list[dict] = []
    facts: list[dict] = []

    def walk(o, path: tuple[str, ...], groups: tuple[str, ...]):
        if _is_interval(o):
            figures.append({"section": path[0] if len(path) > 1 else "", "group": " / ".join(groups),
                            "figure": " / ".join(p for p in path[1:] if p not in groups) or path[0],
                            "unit": unit_of(path), **{k: o.get(k) for k in ("mean", "lo", "hi", "p5", "p50")}})
        elif isinstance(o, dict):
            for k, v in o.items():
                walk(v, path + (k,), groups)
        elif isinstance(o, list):
            if all(not isinstance(v, (dict, list)) for v in o):
                facts.append({"section": path[0] if path else "", "field": " / ".join(path), "value": ", ".join(map(str, o))})
                return
            for i, v in enumerate(o):
                tag = _tag(v, i) if isinstance(v, dict) else str(i)
                walk(v, path + (tag,), groups + (tag,))
        else:
            if path and path[-1] in ("segment", "organisation", "holder", "line", "stress", "design") and path[-2:-1] == groups[-1:]:
                return  # the group's own name, already in the group column
            facts.append({"section": path[0] if len(path) > 1 else "", "field": " / ".join(path), "value": o})

    walk(summary, (), ())
    return figures, facts


def _money(pence) -> np.ndarray:
    return np.asarray(pence, dtype=np.float64) / 100.0


def _quantiles(df: pd.DataFrame, keys: list[str], col: str, prefix: str) -> pd.DataFrame:
    g = df.groupby(keys, observed=True)[col]
    out = pd.DataFrame({f"{prefix} mean": g.mean(), f"{prefix} 5th percentile": g.quantile(0.05),
                        f"{prefix} median": g.quantile(0.5), f"{prefix} 95th percentile": g.quantile(0.95)})
    return out.reset_index()


def _run_sheets(path: Path, symbol: str) -> list[Sheet]:
    summary = json.loads((path / "summary.json").read_text())
    figures, facts = flatten_summary(summary)
    sheets = [Sheet("Summary", pd.DataFrame(figures, columns=["section", "group", "figure", "unit", "mean", "lo", "hi", "p5", "p50"])
                    .rename(columns={"section": "Section", "group": "Group", "figure": "Figure", "unit": "Unit", "mean": "Mean",
                                     "lo": "95% interval: low", "hi": "95% interval: high", "p5": "5th percentile",
                                     "p50": "Median"}), row_unit="Unit",
                    note="Means over replications with 95% intervals; money in pounds.")]
    monthly_path = path / "monthly.parquet"
    if monthly_path.exists():
        mon = with_current_names(pd.read_parquet(monthly_path))
        R = mon["replication"].nunique()
        # the tables keep pence (names ending _pence); the sheets show pounds, named without the suffix
        pence = [c for c in mon.columns if c.endswith("_pence")]
        mon = mon.assign(**{c.removesuffix("_pence"): _money(mon.pop(c)) for c in pence})
        money_cols = [c.removesuffix("_pence") for c in pence if c != "cash_pence"]
        cash = _quantiles(mon, ["organisation", "month"], "cash", f"Cash at month end ({symbol})")
        flows = mon.groupby(["organisation", "month"], observed=True)[money_cols].mean().reset_index()
        flows.columns = ["organisation", "month"] + [f"{_words(c)}, mean ({symbol})" for c in money_cols]
        table = cash.merge(flows, on=["organisation", "month"]).rename(columns={"organisation": "Organisation", "month": "Month"})
        sheets.append(Sheet("Cash by month", table, formats={c: "money" for c in table.columns if symbol in c} | {"Month": "count"},
                            note=f"Each organisation's cash and flows month by month over {R} replications; pounds."))
    ledger_path = path / "ledger.parquet"
    if ledger_path.exists():
        led = with_current_names(pd.read_parquet(ledger_path))
        R = max(int(led["replication"].nunique()), 1) if len(led) else 1
        if "replications" in summary and isinstance(summary["replications"], int):
            R = summary["replications"]
        g = led.groupby(["month", "kind", "payer", "payee"], observed=True)["amount_pence"].sum().reset_index()
        g["amount"] = _money(g.pop("amount_pence")) / R
        g = g[g["amount"] != 0].rename(columns={"month": "Month", "kind": "Kind", "payer": "Payer", "payee": "Payee",
                                                "amount": f"Amount, mean per replication ({symbol})"})
        sheets.append(Sheet("Ledger by kind and month", g.reset_index(drop=True),
                            formats={f"Amount, mean per replication ({symbol})": "money", "Month": "count"},
                            note="Money moved, by month, kind, payer and payee: the mean over replications; pounds."))
    reps_path = path / "replications.parquet"
    if reps_path.exists():
        reps = pd.read_parquet(reps_path)
        sheets.append(Sheet("Replications", reps, formats={c: _column_unit(c) for c in reps.columns},
                            note="One row per replication: the figures the summary's means and intervals are made from."))
    sheets.append(Sheet("About", pd.DataFrame(facts, columns=["section", "field", "value"])
                        .rename(columns={"section": "Section", "field": "Field", "value": "Value"}).astype({"Value": str})))
    return sheets


def _words(column: str) -> str:
    return column.replace("_", " ").capitalize()


def _column_unit(column: str) -> str:
    name = column.split("[", 1)[0]
    return unit_of((name,)) or "count"


# ---------------------------------------------------------------------------------------------
# Sheets from an experiment dataset and a stress test


def _experiment_sheets(path: Path, symbol: str) -> list[Sheet]:
    summary = pd.read_parquet(path / "summary.parquet")
    table = summary.copy()
    table["unit"] = table["unit"].map(lambda u: _COMPARE_UNITS.get(u, u))
    keep = {"design": "Design", "baseline": "Baseline", "label": "Figure", "metric": "Column", "unit": "Unit",
            "estimator": "Estimator", "replications": "Replications", "mean": "Mean", "lo": "95% interval: low",
            "hi": "95% interval: high", "p5": "5th percentile", "p50": "Median", "diff": "Difference from baseline",
            "diff_lo": "Difference: 95% low", "diff_hi": "Difference: 95% high"}
    table = table[[c for c in keep if c in table.columns]].rename(columns=keep)
    manifest_data = json.loads((path / "manifest.json").read_text())
    designs = pd.DataFrame([{"Design": d.get("name"), "Description": d.get("description", ""),
                             "Changes from the base scenario": json.dumps(d.get("overrides", {}), ensure_ascii=False),
                             "Scenario hash (sha256)": d.get("sha256", "")} for d in manifest_data.get("designs", [])])
    about = pd.DataFrame([{"Field": k, "Value": str(manifest_data.get(k))} for k in
                          ("experiment", "seed", "replications", "baseline", "random_numbers", "version", "status")
                          if k in manifest_data])
    return [Sheet("Comparison", table, row_unit="Unit",
                  note="Every design's figures with 95% intervals, and paired differences from the baseline "
                       "(common random numbers); money in pounds."),
            Sheet("Designs", designs), Sheet("About", about)]


_STRESS_UNITS = ((r"ran_out|never|failed|investor_irr|lost_capital", "percent"), (r"investor_multiple", "ratio"), (r"month", "months"),
                 (r"cash|capital|facility|margin|reserve|interest", "money"))


def _stress_unit(column: str) -> str:
    for pattern, unit in _STRESS_UNITS:
        if re.search(pattern, column):
            return unit
    return ""


def _stress_sheets(path: Path, symbol: str) -> list[Sheet]:
    sheets = []
    stresses = pd.read_parquet(path / "stresses.parquet")
    sheets.append(Sheet("Stresses", stresses, formats={c: _stress_unit(c) for c in stresses.columns},
                        note="Each stress against the base: chance of running out of cash, lowest cash, working capital "
                             "needed and margin, with 95% intervals (d_: difference from the base); money in pounds."))
    cash_path = path / "cash.parquet"
    if cash_path.exists():
        cash = with_current_names(pd.read_parquet(cash_path))
        cash["cash"] = _money(cash.pop("cash_pence"))
        table = _quantiles(cash, ["stress", "month"], "cash", f"Cash at month end ({symbol})")
        table = table.rename(columns={"stress": "Stress", "month": "Month"})
        sheets.append(Sheet("Cash by month", table, formats={c: "money" for c in table.columns if symbol in c} | {"Month": "count"},
                            note="The organisation's cash month by month under each stress; pounds."))
    ue_path = path / "unit_economics.parquet"
    if ue_path.exists():
        ue = pd.read_parquet(ue_path)
        sheets.append(Sheet("Unit economics", ue, formats={c: "money" if c.endswith("_per_client") else "count" for c in ue.columns
                                                           if c != "segment"},
                            note="The unstressed bid: money per client referred, by segment, pounds (docs/stress-testing.md). "
                                 "net_per_client of a segment is its contribution after delivery and payments passed on."))
    reps = pd.read_parquet(path / "replications.parquet")
    sheets.append(Sheet("Replications", reps, formats={c: _stress_unit(c) or "count" for c in reps.columns if c != "stress"}))
    return sheets


def sheets_of(path: str | Path) -> list[Sheet]:
    """The sheets of a run folder, experiment dataset or stress-test folder (``ReportError`` for anything else)."""
    path = Path(path)
    kind = kind_of(path)
    man = json.loads((path / "manifest.json").read_text())
    currency = man.get("currency") or _currency(path)
    symbol = SYMBOLS.get(str(currency), str(currency))
    if kind == "experiment":
        out = _experiment_sheets(path, symbol)
    elif kind == "stress":
        out = _stress_sheets(path, symbol)
    else:
        out = _run_sheets(path, symbol)
    for s in out:
        s.symbol = symbol
        if len(s.frame) > MAX_ROWS:
            raise ReportError(f"{path}: the sheet '{s.name}' would have {len(s.frame):,} rows, more than a spreadsheet holds; "
                              "read the Parquet tables instead")
    return out


def _currency(path: Path) -> str:
    summary = path / "summary.json"
    if summary.exists():
        return json.loads(summary.read_text()).get("currency", "GBP")
    return "GBP"


# ---------------------------------------------------------------------------------------------
# Writing


def _number_format(unit: str, symbol: str) -> str | None:
    return {"money": f'"{symbol}"#,##0.00;-"{symbol}"#,##0.00', "percent": "0.0%", "count": "#,##0.##",
            "months": "0.#", "ratio": "0.00"}.get(unit)


def _headers(s: Sheet, csv: bool) -> list[str]:
    """Column headers with their unit, e.g. ``lowest_cash_p50 (£)``; rates are fractions in CSV (1 = 100%)."""
    out = []
    for c in s.frame.columns:
        unit = s.formats.get(c, "")
        word = {"money": s.symbol, "percent": "fraction" if csv else "%", "months": "months"}.get(unit)
        out.append(f"{c} ({word})" if word and "(" not in str(c) else str(c))
    return out


def workbook_bytes(sheets: list[Sheet]) -> bytes:
    """The sheets as one .xlsx workbook: frozen header row, number formats by unit, readable column widths."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font
    from openpyxl.utils import get_column_letter

    wb = Workbook()
    wb.remove(wb.active)
    for s in sheets:
        ws = wb.create_sheet(s.name[:31])
        symbol = s.symbol
        df = s.frame
        ws.append(_headers(s, csv=False))
        for cell in ws[1]:
            cell.font = Font(bold=True)
            cell.alignment = Alignment(wrap_text=True, vertical="top")
        unit_idx = list(df.columns).index(s.row_unit) if s.row_unit else None
        fmts = [_number_format(s.formats.get(c, ""), symbol) for c in df.columns]
        numeric = [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in df.columns]
        for row in df.itertuples(index=False, name=None):
            values = [_cell(v) for v in row]
            ws.append(values)
            r = ws.max_row
            row_fmt = _number_format(values[unit_idx], symbol) if unit_idx is not None else None
            for j, v in enumerate(values):
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    f = row_fmt if (row_fmt and numeric[j]) else fmts[j]
                    if f:
                        ws.cell(row=r, column=j + 1).number_format = f
        if s.row_unit:  # say the unit in words where rows mix units
            for r in range(2, ws.max_row + 1):
                c = ws.cell(row=r, column=unit_idx + 1)
                c.value = UNIT_LABELS.get(c.value, c.value or "").format(symbol=symbol)
        ws.freeze_panes = "B2" if len(df.columns) > 1 else "A2"
        for j, col in enumerate(df.columns, start=1):
            width = max([len(str(col))] + [len(_shown(v)) for v in df.iloc[:200, j - 1]]) if len(df) else len(str(col))
            ws.column_dimensions[get_column_letter(j)].width = min(max(10, width + 2), 48)
        if s.note:
            ws.cell(row=1, column=len(df.columns) + 2, value=s.note).font = Font(italic=True)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _cell(v):
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return None if np.isnan(v) else float(v)
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (str, int)):
        return v
    return str(v)


def _shown(v) -> str:
    if isinstance(v, float):
        return f"{v:,.2f}"
    return str(v)


def _csv_name(sheet: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", sheet.lower()).strip("_") + ".csv"


def csv_files(sheets: list[Sheet]) -> dict[str, bytes]:
    """One CSV file per sheet (UTF-8 with a byte-order mark, so spreadsheet programs read £ correctly); units
    in the headers, rates as fractions (1 = 100%), the unit in words in a Unit column where rows mix units."""
    files = {}
    for s in sheets:
        df = s.frame.copy()
        symbol = s.symbol
        if s.row_unit:
            df[s.row_unit] = df[s.row_unit].map(lambda u: UNIT_LABELS.get(u, u or "").format(symbol=symbol))
        df.columns = _headers(s, csv=True)
        files[_csv_name(s.name)] = df.to_csv(index=False).encode("utf-8-sig")
    return files


def export_results(path: str | Path, out: str | Path | None = None, *, formats: tuple[str, ...] = ("xlsx",),
                   overwrite: bool = False) -> Path:
    """Write the spreadsheet export of the result folder at ``path`` into ``out`` (default ``<path>/export``).

    ``formats``: ``xlsx`` (one workbook, ``pbrsim.xlsx``) and/or ``csv`` (one file per sheet). The folder
    follows the output rule (``pbrsim.store``): an earlier export there is replaced, a folder holding other
    files is refused unless ``overwrite``. Returns the folder. Raises ``ReportError`` for a folder that is not
    a pbrsim result.
    """
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ReportError(f"unknown export format {', '.join(bad) or '(none)'}: choose from {', '.join(FORMATS)}")
    path = Path(path)
    kind = kind_of(path)
    out = Path(out) if out is not None else path / EXPORT_FOLDER
    if out.resolve() == path.resolve():
        raise ReportError(f"{out} is the folder the export is made from; give the export a folder of its own with --out")
    check_out(out, KIND_EXPORT, overwrite=overwrite)
    sheets = sheets_of(path)
    files: dict[str, bytes] = {}
    if "xlsx" in formats:
        files[WORKBOOK] = workbook_bytes(sheets)
    if "csv" in formats:
        files.update(csv_files(sheets))
    write_files(out, files, manifest(None, None, {"made_from": str(path), "source_kind": kind, "formats": list(formats)}),
                kind=KIND_EXPORT, overwrite=overwrite)
    return out
