"""Draft scenarios from the GO Lab INDIGO impact-bond dataset (``pbrsim import-indigo``).

INDIGO (https://golab.bsg.ox.ac.uk/knowledge-bank/indigo/impact-bond-dataset-v2/) records, for each
impact-bond project, its dates and cohort (``projects.csv``), its outcome metrics
(``projects_outcome_metrics.csv``), the price of each metric (``projects_outcome_pricings.csv``) and,
for some projects, how many outcomes were achieved (``projects_results.csv``). This module reads those
files and writes a *draft* scenario: the rate card comes from the data, the pathway is a nested ladder
of the priced outcomes, and everything the data do not say is marked ``ASSUMPTION`` or ``PLACEHOLDER``
in the file. When results are recorded, the ladder's monthly probabilities are fitted so that the
probability of reaching each outcome within the service window equals achieved / engaged.

Everything here is a pure function of the files read; writing is left to the command
(``cli/indigo.py``). See docs/indigo-import.md.
"""

from __future__ import annotations

import difflib
import io
import json
import math
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ..scenario import limits
from ..scenario.errors import ScenarioError
from ..scenario.loading import load_yaml_text, read_bytes

INDIGO_URL = "https://golab.bsg.ox.ac.uk/knowledge-bank/indigo/impact-bond-dataset-v2/"
DEFAULT_DROPOUT = 0.02  # ASSUMPTION: monthly probability of disengaging from any rung of the ladder
DEFAULT_LAG = 3  # ASSUMPTION: months from achieving an outcome to the payment arriving
PLACEHOLDER_P = 0.1  # monthly probability of moving up a rung when nothing is recorded
PLACEHOLDER_USERS = 100  # service users when INDIGO records neither a target nor an engaged number
PLACEHOLDER_MONTHS = 36
PLACEHOLDER_COST_FULL = 100.0
PLACEHOLDER_COST_MINIMAL = 30.0
TARGET_TOLERANCE = 0.01
REACH_TOLERANCE = 1e-12  # a reach this close to its target counts as met
DECIMALS = 12  # probabilities are written with this many decimals (rows then sum to 1 within 1e-11)

TABLES = {
    "projects": ("projects.csv", "original_projects.csv"),
    "metrics": ("projects_outcome_metrics.csv", "original_projects_outcome_metrics.csv"),
    "pricings": ("projects_outcome_pricings.csv", "original_projects_outcome_pricings.csv"),
    "results": ("projects_results.csv", "original_projects_results.csv"),
    "commitments": ("projects_outcome_payment_commitments.csv", "original_projects_outcome_payment_commitments.csv"),
    "organisations": ("organisations.csv", "original_organisations.csv", "original_orgs.csv"),
}
REQUIRED_TABLES = ("projects", "metrics", "pricings")

# Columns used, by INDIGO's header without the " - (Value)" suffix (matched case-insensitively).
COLUMNS = {
    "projects": {
        "id": "ID",
        "name": "Impact Bond Name",
        "alt_names": "Alternative Names",
        "start": "Dates - Start date of service provision",
        "end_actual": "Dates - Actual end date of service provision",
        "end_anticipated": "Dates - Anticipated end date of service provision",
        "duration_actual": "Dates - Actual duration of service provision",
        "duration_anticipated": "Dates - Anticipated duration of service provision",
        "completion_actual": "Dates - Actual completion date",
        "completion_anticipated": "Dates - Anticipated completion date",
        "target_population": "Service and beneficiaries - Target population",
        "targeted": "Service and beneficiaries - Targeted number of unique service users or beneficiaries (total)",
        "engaged": "Service and beneficiaries - Actual number of unique service users or beneficiaries engaged (total)",
        "max_payment": "Overall project finance - Maximum potential outcome payment - Amount",
        "max_payment_currency": "Overall project finance - Maximum potential outcome payment - Currency",
        "investment_exact": "Overall project finance - Total investment commitment - Amount - Exact",
        "investment_min": "Overall project finance - Total investment commitment - Amount - Min",
        "investment_max": "Overall project finance - Total investment commitment - Amount - Max",
        "investment_currency": "Overall project finance - Total investment commitment - Currency",
        "outcome_funder": "Outcome Funder",
        "service_provider": "Service Provider",
    },
    "metrics": {
        "project": "Project ID",
        "id": "Id",
        "definition": "Outcome Definition",
        "targeted": "Targeted number of service users Or beneficiaries (total)",
    },
    "pricings": {
        "project": "Project ID",
        "metric": "Outcome Metric Id",
        "currency": "Currency",
        "price": "Price Per Unit - Amount",
        "max_price": "Maximum Price if all targets achieved - Amount",
        "description": "Price Description",
        "notes": "Notes",
    },
    "results": {
        "project": "Project ID",
        "metric": "Outcome Metric Id",
        "level": "Result level",
        "type": "Result type",
        "period_start": "Period - Start",
        "period_end": "Period - End",
        "achieved": "Outcomes achieved",
        "engaged": "Number engaged In impact bond",
    },
    "commitments": {"project": "Project ID", "organisation": "Organisation ID"},
    "organisations": {"id": "ID", "name": "Name"},
}
REQUIRED_COLUMNS = {
    "projects": ("id", "name"),
    "metrics": ("project", "id", "definition"),
    "pricings": ("project", "metric", "price"),
    "results": ("project", "metric", "achieved"),
    "commitments": ("project", "organisation"),
    "organisations": ("id", "name"),
}

RESERVED_STATES = {"referred", "disengaged", "exited", "dropped_provider_failure"}
RESERVED_LINE_NAMES = {"service_fee", "delivery_full", "delivery_minimal", "overhead", "interest", "ffs_start",
                       "ffs_month", "volume_reconciliation", "investment", "repayment"}
RESERVED_PARTIES = {"staff_and_suppliers", "lender"}


class IndigoError(Exception):
    """The INDIGO files cannot give a draft: a file, a column or the project is missing."""


# ---------------------------------------------------------------------------------------------
# Reading the files


@dataclass
class Table:
    """One INDIGO CSV file: its path, its rows (all text) and the header of each column used."""

    key: str
    path: Path
    frame: pd.DataFrame
    headers: dict[str, str]  # our key -> the file's column header

    @property
    def file(self) -> str:
        return self.path.name

    def has(self, key: str) -> bool:
        return key in self.headers

    def col(self, key: str) -> pd.Series:
        if key not in self.headers:
            return pd.Series([None] * len(self.frame), index=self.frame.index, dtype=object)
        return self.frame[self.headers[key]]


def _norm_header(h: str) -> str:
    h = re.sub(r"\s*-\s*\(value\)\s*$", "", str(h).strip(), flags=re.I)
    return re.sub(r"\s+", " ", h).lower()


def find_table(folder: Path, key: str) -> Path | None:
    for name in TABLES[key]:
        p = folder / name
        if p.exists() or p.is_symlink():  # a pipe or device by that name is refused when read, not skipped
            return p
    return None


def read_table(path: Path, key: str) -> Table:
    try:
        data = read_bytes(path, kind="CSV file", max_bytes=limits.active().csv_bytes)
    except ScenarioError as exc:
        raise IndigoError(str(exc)) from None
    try:
        frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise IndigoError(f"{path}: cannot be read as a CSV file ({exc})") from None
    frame = frame.apply(lambda s: s.str.strip())
    by_norm = {}
    for h in frame.columns:
        by_norm.setdefault(_norm_header(h), h)
    headers = {k: by_norm[_norm_header(v)] for k, v in COLUMNS[key].items() if _norm_header(v) in by_norm}
    missing = [COLUMNS[key][k] for k in REQUIRED_COLUMNS[key] if k not in headers]
    if missing:
        raise IndigoError(f"{path}: column{'s' if len(missing) > 1 else ''} {', '.join(repr(m) for m in missing)} "
                          f"not found; is this the INDIGO {TABLES[key][0]}?")
    return Table(key, path, frame, headers)


def read_folder(folder: str | Path) -> dict[str, Table]:
    """The INDIGO tables in ``folder`` (results, payment commitments and organisations are optional)."""
    folder = Path(folder)
    if not folder.exists():
        raise IndigoError(f"folder {folder} not found (download the INDIGO dataset and give the folder holding its CSV files)")
    if not folder.is_dir():
        raise IndigoError(f"{folder} is not a folder")
    tables = {}
    for key in TABLES:
        path = find_table(folder, key)
        if path is None:
            if key in REQUIRED_TABLES:
                names = " or ".join(TABLES[key])
                raise IndigoError(f"{folder}: {names} not found (it is one of the INDIGO impact-bond dataset files)")
            continue
        tables[key] = read_table(path, key)
    return tables


# ---------------------------------------------------------------------------------------------
# Parsing values


def _text(v) -> str | None:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    s = str(v).strip()
    return s or None


_NUMBER = re.compile(r"^\s*[£$€]?\s*(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?")


def parse_number(v) -> float | None:
    """A plain number ("1,234", "409.0", "£2,000"); None for text that is not one."""
    s = _text(v)
    if s is None:
        return None
    m = _NUMBER.match(s)
    if not m or s[m.end():].strip():
        return None
    return float(m.group(1).replace(",", "") + (m.group(2) or ""))


def parse_count(v) -> tuple[float | None, bool]:
    """A count, also from text that starts with one ("285 (up to 30/6/18)"); second item: whether text followed."""
    s = _text(v)
    if s is None:
        return None, False
    m = _NUMBER.match(s)
    if not m:
        return None, False
    rest = s[m.end():]
    if rest.strip().startswith("%") or (rest and not rest[0].isspace()):
        return None, False
    return float(m.group(1).replace(",", "") + (m.group(2) or "")), bool(rest.strip())


def parse_month(v) -> tuple[int, int, bool] | None:
    """(year, month, month_given) from '2015-01', '2015-01-31' or '2015'."""
    s = _text(v)
    if s is None:
        return None
    m = re.match(r"^(\d{4})(?:[-/](\d{1,2}))?", s)
    if not m:
        m2 = re.match(r"^(\d{1,2})[-/](\d{4})$", s)
        if not m2:
            return None
        return int(m2.group(2)), int(m2.group(1)), True
    year, month = int(m.group(1)), m.group(2)
    if month is not None and not 1 <= int(month) <= 12:
        return None
    return year, (int(month) if month else 0), month is not None


def metric_number(metric_id: str) -> tuple[int, str]:
    m = re.search(r"(\d+)[a-z]?\s*$", metric_id, flags=re.I)
    return (int(m.group(1)) if m else 10**9, metric_id)


def slugify(text: str, max_words: int = 7, max_chars: int = 60) -> str:
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words = [w for w in re.split(r"[^a-z0-9]+", text.lower()) if w]
    out: list[str] = []
    for w in words:
        if len(out) >= max_words or len("_".join(out + [w])) > max_chars:
            break
        out.append(w)
    return "_".join(out)


_STOP = {"a", "an", "the", "of", "for"}
_TRAILING = {"with", "into", "to", "in", "on", "and", "or", "at", "by", "from", "as"}


def readable_name(definition: str, keep_remarks: bool = False) -> str:
    """A short readable phrase from an INDIGO outcome definition: its title, without the detail.

    Parenthetical remarks are dropped unless they carry a number ("(13 weeks)") or ``keep_remarks``
    is set (used to tell apart metrics that differ only there, "(vulnerable person)").
    """
    s = unicodedata.normalize("NFKC", definition).replace("\n", " ")
    s = re.sub(r"^\s*(metric|outcome|indicator)\s*\d+[a-z]?\s*[:.)\-–]\s*", "", s, flags=re.I)
    s = re.sub(r"\(([^()]*)\)", lambda m: f" {m.group(1)} " if keep_remarks or re.search(r"\d", m.group(1)) else " ", s)
    # cut at the end of the first sentence or clause (a dash only after at least two words)
    cut = len(s)
    for m in re.finditer(r"(?<!\d)\.(?=\s|$)|[,;:•‘’“”\"(\[]|\s\d+\)|\s[-–]\s", s):
        if m.group().strip() in {"-", "–"} and len(s[: m.start()].split()) < 2:
            continue
        cut = m.start()
        break
    words = [w for w in re.split(r"[\s/\-–]+", s[:cut]) if w]
    # a title running into its description without a full stop ("... for 3 Months Sustainment of accommodation
    # for 3 months ..."): cut where a capitalised word starts a lower-case run that repeats a word of the title
    for i in range(2, len(words) - 1):
        w, prev, nxt = words[i], words[i - 1], words[i + 1]
        title = {x.lower() for x in words[:i] if len(x) >= 3 and x.lower() not in _STOP | _TRAILING}
        if (w[:1].isupper() and not w.isupper() and nxt[:1].islower()
                and prev.lower() not in _STOP | _TRAILING and not prev[:1].isdigit()
                and title & {x.lower() for x in words[i: i + 12]}):
            words = words[:i]
            break
    words = [w for w in words if w.lower() not in _STOP] or words
    slug_words = slugify(" ".join(words)).split("_")
    while len(slug_words) > 1 and slug_words[-1] in _TRAILING:
        slug_words.pop()
    return "_".join(w for w in slug_words if w)


def _first_sentence(text: str, limit: int = 160) -> str:
    s = re.sub(r"\s+", " ", text).strip()
    m = re.search(r"(?<!\d)\.(\s|$)", s)
    if m and m.start() > 0:
        s = s[: m.start() + 1]
    return s if len(s) <= limit else s[: limit - 1].rstrip() + "…"


def _clip(text: str | None, limit: int) -> str:
    s = re.sub(r"\s+", " ", text or "").strip()
    return s if len(s) <= limit else s[: limit - 1].rstrip() + "…"


_CAP_SENTENCE = re.compile(
    r"(max(imum)?|cap)\b.{0,80}?\bper\s+(individual|person|participant|client|service\s+user|young\s+person|beneficiary|head)"
    r"|\bper\s+(individual|person|participant|client|service\s+user|young\s+person|beneficiary)\b.{0,40}?\b(max(imum)?|cap)\b",
    re.I,
)
_AMOUNT = re.compile(r"(?P<pre>£|\$|€|GBP\s?|USD\s?|EUR\s?)?(?P<num>\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?P<post>\s?(?:GBP|USD|EUR|pounds)\b|\s?(?:months?|weeks?|years?|days?|hours?|%))?", re.I)


def per_person_caps(text: str) -> list[float]:
    """Amounts stated as a maximum per individual in a note ("The maximum amount payable per individual is 8,200 …")."""
    amounts: list[float] = []
    for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z])", re.sub(r"\s+", " ", text)):
        if not _CAP_SENTENCE.search(sentence):
            continue
        for m in _AMOUNT.finditer(sentence):
            post = (m.group("post") or "").strip().lower()
            if post and post not in {"gbp", "usd", "eur", "pounds"}:
                continue
            num = m.group("num")
            value = float(num.replace(",", ""))
            if value >= MAX_FIGURE:
                continue  # not a real amount
            if m.group("pre") or post or "," in num or value >= 100:
                amounts.append(value)
    return amounts


# ---------------------------------------------------------------------------------------------
# The project and its rate card


@dataclass
class Metric:
    id: str
    definition: str
    price: float
    currency: str | None
    state: str = ""
    kind: str = "milestone"
    max_price: float | None = None
    other_prices: list[float] = field(default_factory=list)
    targeted: float | None = None
    achieved: float | None = None
    achieved_raw: str | None = None
    engaged: float | None = None
    engaged_source: str = ""
    result_type: str | None = None
    period: str | None = None

    @property
    def rate(self) -> float | None:
        if self.achieved is None or not self.engaged:
            return None
        return self.achieved / self.engaged


@dataclass
class Step:
    """One rung of the ladder: the row of the state before it."""

    metric: Metric
    from_state: str
    p: float
    dropout: float
    status: str  # fitted | lowered_dropout | not_met | placeholder
    target: float | None = None
    reach: float | None = None


@dataclass
class Draft:
    project_id: str
    project_name: str
    name: str
    scenario_text: str
    targets_text: str | None
    steps: list[Step]
    months: int
    currency: str
    warnings: list[str]
    placeholders: list[str]
    not_met: list[Step]
    files: dict[str, str]
    headline: Metric | None = None  # contract.primary_outcome's metric
    headline_reason: str = ""


def _suggest(query: str, candidates: list[str], projects: Table) -> str:
    ids = [i for i in projects.col("id") if i]
    names = {n: i for i, n in zip(projects.col("id"), projects.col("name")) if n}
    hits = [h for c in candidates for h in difflib.get_close_matches(c, ids, n=5, cutoff=0.8)]
    hits += [names[n] for n in difflib.get_close_matches(query, list(names), n=5, cutoff=0.5)]
    lower = query.lower()
    hits += [i for n, i in names.items() if len(lower) >= 3 and lower in n.lower()]
    seen: list[str] = []
    for h in hits:
        if h not in seen:
            seen.append(h)
    if not seen:
        return ""
    by_id = dict(zip(projects.col("id"), projects.col("name")))
    return "; close matches: " + ", ".join(f"{i} ({by_id.get(i, '')})" for i in seen[:6])


def resolve_project(projects: Table, query: str) -> pd.Series:
    """The row of ``query``: an INDIGO ID (``INDIGO-POJ-0131``, ``POJ-0131`` or ``131``) or a project name."""
    q = query.strip()
    ids = projects.col("id").str.upper()
    candidates = [q.upper()]
    digits = re.fullmatch(r"(?:INDIGO-)?(?:POJ-)?(\d{1,4})", q, flags=re.I)
    if digits:
        candidates.append(f"INDIGO-POJ-{int(digits.group(1)):04d}")
    for c in candidates:
        hit = projects.frame[ids == c]
        if len(hit):
            return hit.iloc[0]
    names = projects.col("name").str.lower()
    hit = projects.frame[names == q.lower()]
    if len(hit) == 1:
        return hit.iloc[0]
    raise IndigoError(f"{projects.path}: no project {query!r} (give an ID such as INDIGO-POJ-0131)"
                      f"{_suggest(q, candidates, projects)}")


def _value(table: Table, row: pd.Series, key: str) -> str | None:
    return _text(row[table.headers[key]]) if table.has(key) else None


MAX_FIGURE = 1e13  # amounts and counts read from INDIGO must be below this (no impact bond is near it)


def _too_large(table: Table, row: pd.Series, key: str) -> IndigoError:
    raw = _value(table, row, key) or ""
    shown = raw if len(raw) <= 24 else f"{raw[:12]}…{raw[-6:]} ({len(raw)} characters)"
    who = " ".join(x for x in (_value(table, row, "project" if table.key != "projects" else "id"),
                               _value(table, row, "metric") if table.has("metric") else None) if x)
    return IndigoError(f'{table.path}: "{table.headers[key]}" of {who or "a row"}: {shown} is too large; amounts and '
                       f"counts must be below {MAX_FIGURE:,.0f}")


def _number(table: Table, row: pd.Series, key: str) -> float | None:
    """``parse_number`` of a cell, refusing a number too large to be real (IndigoError naming the file and column)."""
    x = parse_number(_value(table, row, key))
    if x is not None and not x < MAX_FIGURE:
        raise _too_large(table, row, key)
    return x


def _count(table: Table, row: pd.Series, key: str) -> tuple[float | None, bool]:
    """``parse_count`` of a cell, refusing a number too large to be real."""
    x, text = parse_count(_value(table, row, key))
    if x is not None and not x < MAX_FIGURE:
        raise _too_large(table, row, key)
    return x, text


def _quote_header(table: Table, key: str) -> str:
    return f'{table.file} "{table.headers.get(key, COLUMNS[table.key][key])}"'


def _rows_for(table: Table, pid: str) -> pd.DataFrame:
    return table.frame[table.col("project").str.upper() == pid.upper()]


def _rate_card(tables: dict[str, Table], pid: str, pname: str, warnings: list[str]) -> list[Metric]:
    pricings, metrics = tables["pricings"], tables["metrics"]
    rows = _rows_for(pricings, pid)
    if rows.empty:
        raise IndigoError(f"{pricings.path}: no price rows for {pid} ({pname}); without a rate card there is nothing to import "
                          f"(column {pricings.headers['project']!r})")
    definitions: dict[str, tuple[str, float | None]] = {}
    for _, r in _rows_for(metrics, pid).iterrows():
        mid = _value(metrics, r, "id")
        if mid and mid not in definitions:
            target, _ = _count(metrics, r, "targeted")
            definitions[mid] = (_value(metrics, r, "definition") or mid, target)
    card: dict[str, Metric] = {}
    for _, r in rows.iterrows():
        mid = _value(pricings, r, "metric")
        price = _number(pricings, r, "price")
        if not mid:
            warnings.append(f"{pricings.file}: a price row of {pid} has no outcome metric id; skipped")
            continue
        if price is None:
            warnings.append(f"{pricings.file}: {mid} has no usable price ({_value(pricings, r, 'price')!r}); skipped")
            continue
        if mid in card:
            card[mid].other_prices.append(price)
            continue
        definition, target = definitions.get(mid, (mid, None))
        card[mid] = Metric(id=mid, definition=definition, price=price, currency=_value(pricings, r, "currency"),
                           max_price=_number(pricings, r, "max_price"), targeted=target)
    if not card:
        raise IndigoError(f"{pricings.path}: the price rows for {pid} ({pname}) have no usable 'Price Per Unit' amount")
    for m in card.values():
        if m.other_prices:
            warnings.append(f"{m.id}: {len(m.other_prices) + 1} price rows (tiered pricing?); the first ({m.price:g}) is used")
    undefined = [mid for mid in card if mid not in definitions]
    if undefined:
        warnings.append(f"{metrics.file} has no definition of {', '.join(undefined)}: their states are named after the ids")
    unpriced = sorted(set(definitions) - set(card), key=metric_number)
    if unpriced:
        warnings.append(f"metrics without a price are not modelled: {', '.join(unpriced)}")
    return sorted(card.values(), key=lambda m: metric_number(m.id))


def _pick_result(rows: pd.DataFrame, results: Table) -> pd.Series | None:
    best, best_key = None, None
    for order, (_, r) in enumerate(rows.iterrows()):
        achieved, _ = _count(results, r, "achieved")
        if achieved is None:
            continue
        final = (_value(results, r, "type") or "").lower() == "final"
        end = parse_month(_value(results, r, "period_end")) or (0, 0, False)
        start = parse_month(_value(results, r, "period_start")) or (0, 0, False)
        key = (final, end[:2], start[:2], order)
        if best_key is None or key > best_key:
            best, best_key = r, key
    return best


def _attach_results(tables: dict[str, Table], pid: str, card: list[Metric], project_engaged: float | None,
                    fallback_users: tuple[float, str] | None, warnings: list[str]) -> bool:
    results = tables.get("results")
    if results is None:
        warnings.append("no projects_results.csv in the folder: no outcome rates to fit, every ladder probability is a PLACEHOLDER")
        return False
    rows = _rows_for(results, pid)
    found = False
    for m in card:
        r = _pick_result(rows[rows[results.headers["metric"]] == m.id], results)
        if r is None:
            continue
        achieved, had_text = _count(results, r, "achieved")
        engaged, _ = _count(results, r, "engaged")
        m.achieved = achieved
        m.achieved_raw = _value(results, r, "achieved") if had_text else None
        m.result_type = _value(results, r, "type")
        ps, pe = _value(results, r, "period_start"), _value(results, r, "period_end")
        m.period = f"{ps or '?'} to {pe or '?'}" + (f" ({m.result_type})" if m.result_type else "")
        if engaged:
            m.engaged, m.engaged_source = engaged, f'{_quote_header(results, "engaged")} of the same row'
        elif project_engaged:
            m.engaged = project_engaged
            m.engaged_source = f'{_quote_header(tables["projects"], "engaged")}'
        elif fallback_users:
            m.engaged, m.engaged_source = fallback_users[0], f"ASSUMPTION: no engaged number recorded; {fallback_users[1]} used"
        found = found or m.engaged is not None
    if not found:
        if any(m.achieved is not None for m in card):
            warnings.append(f"{results.file}: outcomes recorded for {pid} but no number engaged or targeted to divide by; "
                            "ladder probabilities are PLACEHOLDERs")
        else:
            warnings.append(f"{results.file}: no recorded outcomes for {pid}'s priced metrics; ladder probabilities are PLACEHOLDERs")
    return found


# ---------------------------------------------------------------------------------------------
# The ladder: reach probabilities and their exact fit


def ladder_reach(p, d, window: int, max_months: int | None) -> np.ndarray:
    """Probability of first entering each rung within ``window`` monthly transitions.

    Rows ``k = 0 … n−1`` belong to the states ``referred, rung 1, …, rung n−1``: a client there moves
    up to rung ``k+1`` with probability ``p[k]``, disengages with ``d[k]`` and otherwise stays. Rung
    ``n`` is absorbing. The occupancy of the active states after ``t`` transitions is ``π_t = e_0 Q^t``
    (``Q`` the active-to-active block), so the entries into rung ``k+1`` at transition ``t`` are
    ``π_{t−1}[k] p[k]``. At transition ``max_months`` every client whose new state is not absorbing is
    moved to the exit state instead (docs/model.md §4), so a non-absorbing rung can only be entered in
    the first ``max_months − 1`` transitions; the absorbing last rung in all ``max_months``.
    Rung ``k+1``'s reach depends only on ``p[0 … k]`` and ``d[0 … k]``.
    """
    p = np.asarray(p, dtype=float)
    d = np.asarray(d, dtype=float)
    n = len(p)
    t_last = window if max_months is None else min(window, max_months)
    t_active = t_last if max_months is None or window < max_months else max_months - 1
    Q = np.diag(1.0 - p - d) + np.diag(p[:-1], k=1)
    occ = np.zeros(n)
    occ[0] = 1.0
    reach = np.zeros(n)
    for t in range(1, t_last + 1):
        entries = occ * p
        if t <= t_active:
            reach[:-1] += entries[:-1]
        reach[-1] += entries[-1]
        occ = occ @ Q
    return reach


def _round(x: float) -> float:
    return round(float(x), DECIMALS) + 0.0


def _root(f, lo: float, hi: float) -> float:
    """The root of increasing ``f`` on [lo, hi]; an end point when ``f`` is within rounding of zero there."""
    if f(lo) >= -REACH_TOLERANCE:
        return lo
    if f(hi) <= REACH_TOLERANCE:
        return hi
    from scipy.optimize import brentq  # scipy loads only when a ladder is fitted

    return brentq(f, lo, hi, xtol=1e-15, rtol=1e-15, maxiter=500)


def fit_ladder(targets: list[float | None], window: int, max_months: int | None, dropout: float) -> list[tuple[float, float, str]]:
    """Per row: (p, dropout, status) making each rung's reach equal its target, rung by rung.

    A rung without a target gets the placeholder probability. A target above what the rung can reach
    with the assumed dropout lowers that row's dropout just enough (status ``lowered_dropout``); one that
    cannot be reached even with no dropout and no staying is clamped at p = 1 (``not_met``).
    """
    n = len(targets)
    p = np.full(n, PLACEHOLDER_P)
    d = np.full(n, float(dropout))
    status = ["placeholder"] * n

    def reach_k(k, pk, dk):
        pp, dd = p.copy(), d.copy()
        pp[k], dd[k] = pk, dk
        return ladder_reach(pp, dd, window, max_months)[k]  # the whole ladder: only the last rung is absorbing

    for k, target in enumerate(targets):
        if target is None:
            continue
        target = min(max(target, 0.0), 1.0)
        if target == 0.0:
            p[k], status[k] = 0.0, "fitted"
            continue
        hi = 1.0 - dropout
        if reach_k(k, hi, dropout) >= target:
            p[k] = _round(_root(lambda x: reach_k(k, x, dropout) - target, 0.0, hi))
            status[k] = "fitted"
        elif reach_k(k, 1.0, 0.0) >= target - REACH_TOLERANCE:
            d[k] = _round(_root(lambda x: target - reach_k(k, 1.0 - x, x), 0.0, dropout))
            p[k] = _round(1.0 - d[k])
            status[k] = "lowered_dropout"
        else:
            p[k], d[k], status[k] = 1.0, 0.0, "not_met"
    return [(float(p[k]), float(d[k]), status[k]) for k in range(n)]


# ---------------------------------------------------------------------------------------------
# YAML text


def _reads_back(text: str, expected: dict) -> bool:
    """Whether ``text`` reads as ``expected`` by pbrsim's YAML 1.2 rules and by YAML 1.1 readers alike."""
    try:
        return load_yaml_text(text, "<draft>") == expected and yaml.safe_load(text) == expected
    except (ScenarioError, yaml.YAMLError):
        return False


def _yaml_key(k: str) -> str:
    return k if _reads_back(f"{k}: 1", {k: 1}) else json.dumps(k)


def _plain(s: str) -> str:
    """``s`` as a YAML scalar: bare when it reads back as the same text, quoted otherwise."""
    return s if "#" not in s and _reads_back(f"x: {s}", {"x": s}) else _q(s)


def _q(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _c(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _num(x: float) -> str:
    x = float(x)
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return repr(round(x, DECIMALS) + 0.0)


def _money_text(x: float) -> str:
    return f"{x:,.0f}" if x == int(x) else f"{x:,.2f}"


@dataclass
class _Project:
    id: str
    name: str
    row: pd.Series


def _months_between(start: tuple[int, int, bool], end: tuple[int, int, bool]) -> int:
    """Months from ``start`` to ``end`` inclusive (a year alone: January to start, December to end)."""
    return (end[0] - start[0]) * 12 + ((end[1] or 12) - (start[1] or 1)) + 1


def _service_window(tables: dict[str, Table], proj: _Project, warnings: list[str]) -> tuple[int, str]:
    """(months, comment): service provision from its start to its end, a recorded duration, or a fallback."""
    projects = tables["projects"]
    start_raw = _value(projects, proj.row, "start")
    start = parse_month(start_raw)
    start_text = f'{start_raw} ("{projects.headers["start"]}")' if start else ""
    year_only = "; ASSUMPTION: a year alone is read as January (start) or December (end)"
    for key in ("end_actual", "end_anticipated", "duration_actual", "duration_anticipated",
                "completion_actual", "completion_anticipated"):
        raw = _value(projects, proj.row, key)
        if key.startswith("duration"):
            months = _number(projects, proj.row, key)
            if months and months >= 1:
                return min(int(round(months)), 600), f'INDIGO {projects.file}: "{projects.headers[key]}" = {raw} (months)'
            continue
        end = parse_month(raw)
        if start is None or end is None:
            continue
        months = _months_between(start, end)
        if months < 1:
            warnings.append(f'{projects.file}: "{projects.headers[key]}" ({raw}) is before the start ({start_raw}); ignored')
            continue
        comment = f'INDIGO {projects.file}: {start_text} to {raw} ("{projects.headers[key]}"), months inclusive'
        if key.startswith("completion"):
            comment += "; no end or duration of service provision recorded, the project's completion date is used"
        if not (start[2] and end[2]):
            comment += year_only
        return min(months, 600), comment
    results = tables.get("results")
    if start is not None and results is not None and results.has("period_end"):
        ends = [e for e in (parse_month(v) for v in _rows_for(results, proj.id)[results.headers["period_end"]]) if e]
        if ends and _months_between(start, max(ends)) >= 1:
            end = max(ends)
            warnings.append("no end date of service provision recorded: months run to the last results period")
            return min(_months_between(start, end), 600), (
                f'INDIGO {projects.file}: {start_text} to the latest {results.file} "{results.headers["period_end"]}" '
                f"({end[0]}{'-%02d' % end[1] if end[1] else ''}); ASSUMPTION: service ran to the end of the last results period")
    warnings.append(f"no service dates recorded: months is a PLACEHOLDER ({PLACEHOLDER_MONTHS})")
    return PLACEHOLDER_MONTHS, "PLACEHOLDER: INDIGO records no usable service-provision dates or duration"


def _service_users(tables, proj: _Project, card: list[Metric]) -> tuple[float, str, bool]:
    """(number of service users, comment, is placeholder)."""
    projects, metrics = tables["projects"], tables["metrics"]
    targeted, _ = _count(projects, proj.row, "targeted")
    if targeted:
        return targeted, f'INDIGO {projects.file} "{projects.headers["targeted"]}"', False
    metric_targets = [(m.targeted, m.id) for m in card if m.targeted]
    if metric_targets:
        value, mid = max(metric_targets)
        return value, (f'INDIGO {metrics.file} "{metrics.headers["targeted"]}" of {mid} (the largest metric-level target; '
                       "no project-level target recorded)"), False
    engaged, _ = _count(projects, proj.row, "engaged")
    if engaged:
        return engaged, f'INDIGO {projects.file} "{projects.headers["engaged"]}" (no target recorded)', False
    return PLACEHOLDER_USERS, "PLACEHOLDER: INDIGO records neither a targeted nor an engaged number of service users", True


def _commissioner(tables, proj: _Project) -> tuple[str | None, str]:
    projects = tables["projects"]
    funder = _value(projects, proj.row, "outcome_funder")
    if funder:
        return funder, f'INDIGO {projects.file} "{projects.headers["outcome_funder"]}"'
    com, orgs = tables.get("commitments"), tables.get("organisations")
    if com is not None and orgs is not None:
        names = dict(zip(orgs.col("id").str.upper(), orgs.col("name")))
        found = []
        for oid in _rows_for(com, proj.id)[com.headers["organisation"]]:
            n = names.get(str(oid).upper())
            if n and n not in found:
                found.append(n)
        if found:
            return " and ".join(found), f"INDIGO {com.file} (outcome payers) with names from {orgs.file}"
    return None, "PLACEHOLDER: no outcome funder in the INDIGO files read"


def _unique(name: str, used: set[str], reserved: set[str]) -> str:
    base = name if name not in reserved else f"{name}_outcome"
    out, i = base, 2
    while out in used or out in reserved:
        out, i = f"{base}_{i}", i + 1
    used.add(out)
    return out


def _ladder(card: list[Metric], has_results: bool, months: int, dropout: float) -> tuple[list[Step], list[Step]]:
    """The rungs in order (most-achieved first, unrecorded metrics last) with fitted or placeholder rows."""
    recorded = [m for m in card if m.rate is not None] if has_results else []
    ordered = sorted(recorded, key=lambda m: (-m.rate, metric_number(m.id)))
    ordered += [m for m in card if m not in ordered]
    for m in ordered:
        m.kind = "milestone"
    ordered[-1].kind = "outcome"
    fits = fit_ladder([m.rate if m in recorded else None for m in ordered], months, months, dropout)
    from_states = ["referred"] + [m.state for m in ordered[:-1]]
    steps = [Step(metric=m, from_state=f, p=p, dropout=dd, status=st,
                  target=min(max(m.rate, 0.0), 1.0) if m in recorded else None)
             for m, f, (p, dd, st) in zip(ordered, from_states, fits)]
    for s, r in zip(steps, ladder_reach([s.p for s in steps], [s.dropout for s in steps], months, months)):
        s.reach = float(r)
    not_met = [s for s in steps if s.status == "not_met" or (s.metric.rate is not None and s.metric.rate > 1)
               or (s.target is not None and abs(s.reach - s.target) > 1e-9)]
    for s in not_met:
        s.status = "not_met"
    return steps, not_met


def _currency(card: list[Metric], projects: Table, row: pd.Series, pricings: Table, warnings: list[str]) -> tuple[str, str]:
    currencies = [m.currency for m in card if m.currency]
    if currencies:
        currency = max(sorted(set(currencies)), key=currencies.count)
        if len(set(currencies)) > 1:
            warnings.append(f"price rows use several currencies ({', '.join(sorted(set(currencies)))}); {currency} is the label")
        return currency, f'INDIGO {pricings.file} "{pricings.headers["currency"]}"'
    for key in ("max_payment_currency", "investment_currency"):
        currency = _value(projects, row, key)
        if currency:
            return currency, f'INDIGO {projects.file} "{projects.headers[key]}"'
    return "GBP", "ASSUMPTION: no currency recorded"


def _per_person_cap(pricings: Table, pid: str, warnings: list[str]) -> tuple[float | None, str]:
    """The first amount stated as a maximum per individual in the project's pricing notes or descriptions."""
    seen: set[str] = set()
    for _, r in _rows_for(pricings, pid).iterrows():
        for key in ("notes", "description"):
            text = _value(pricings, r, key)
            if not text or text in seen:
                continue
            seen.add(text)
            amounts = per_person_caps(text)
            if not amounts:
                continue
            comment = f'INDIGO {pricings.file} "{pricings.headers[key]}" of {_value(pricings, r, "metric")}: "{_clip(text, 150)}"'
            if len(set(amounts)) > 1:
                listed = ", ".join(_money_text(a) for a in amounts)
                comment += f"; ASSUMPTION: the note gives several amounts ({listed}), the first is taken - check which applies"
                warnings.append(f"per-person cap: the note gives several amounts ({listed}); "
                                f"{_money_text(amounts[0])} taken - check which applies")
            return amounts[0], comment
    return None, ""


def _parties(tables: dict[str, Table], proj: _Project) -> tuple[str, str, str, str]:
    """(commissioner, its comment, provider, its comment), with distinct names that are not reserved."""
    projects = tables["projects"]
    commissioner, c_comment = _commissioner(tables, proj)
    provider = _value(projects, proj.row, "service_provider")
    p_comment = f'INDIGO {projects.file} "{projects.headers["service_provider"]}"' if provider else "PLACEHOLDER: the provider's name"
    provider = provider or "provider"
    if provider in RESERVED_PARTIES:
        provider = f"{provider} (provider)"
    if commissioner is None:
        commissioner = "commissioner"
    elif commissioner == provider or commissioner in RESERVED_PARTIES:
        commissioner, c_comment = f"{commissioner} (outcome payer)", c_comment + " (renamed: the name was taken)"
    return commissioner, c_comment, provider, p_comment


@dataclass
class _Parts:
    """Everything the draft's text is written from."""

    proj: _Project
    tables: dict[str, Table]
    name: str
    months: int
    months_comment: str
    users: float
    users_comment: str
    has_results: bool
    steps: list[Step]
    not_met: list[Step]
    placeholders: list[str]
    currency: str
    currency_comment: str
    cap: float | None
    per_person_cap: float | None
    per_person_comment: str
    per_person_cap_supported: bool
    commissioner: str
    commissioner_comment: str
    provider: str
    provider_comment: str
    investment: float | None
    investment_key: str | None
    dropout: float
    lag: int
    headline: Metric | None = None
    headline_reason: str = ""

    def header(self, key: str, table: str = "projects") -> str:
        t = self.tables[table]
        return f'{t.file} "{t.headers[key]}"'


def build_draft(folder: str | Path, project: str, *, dropout: float = DEFAULT_DROPOUT, lag: int = DEFAULT_LAG,
                per_person_cap_supported: bool | None = None) -> Draft:
    """Read the INDIGO files in ``folder`` and build the draft scenario (and targets) text for ``project``."""
    from ..scenario.schema import Contract

    if per_person_cap_supported is None:
        per_person_cap_supported = "per_person_cap" in Contract.model_fields
    tables = read_folder(folder)
    projects = tables["projects"]
    row = resolve_project(projects, project)
    proj = _Project(id=_value(projects, row, "id"), name=_value(projects, row, "name") or _value(projects, row, "id"), row=row)
    warnings: list[str] = []
    placeholders: list[str] = []
    card = _rate_card(tables, proj.id, proj.name, warnings)

    months, months_comment = _service_window(tables, proj, warnings)
    if months_comment.startswith("PLACEHOLDER"):
        placeholders.append("months")
    users, users_comment, users_placeholder = _service_users(tables, proj, card)
    if users_placeholder:
        placeholders.append("number of service users (referrals.rate)")
    project_engaged, _ = _count(projects, row, "engaged")
    has_results = _attach_results(tables, proj.id, card, project_engaged,
                                  None if users_placeholder else (users, users_comment), warnings)

    names = [readable_name(m.definition) for m in card]
    names = [readable_name(m.definition, keep_remarks=True) if names.count(n) > 1 else n for m, n in zip(card, names)]
    used: set[str] = set()
    for m, n in zip(card, names):
        m.state = _unique(n or slugify(m.id) or "outcome", used, RESERVED_STATES)
    steps, not_met = _ladder(card, has_results, months, dropout)
    headline, headline_reason = headline_outcome([s.metric for s in steps])
    n_placeholder = sum(s.status == "placeholder" for s in steps)
    if n_placeholder:
        placeholders.append(f"{n_placeholder} ladder probabilit{'y' if n_placeholder == 1 else 'ies'} "
                            f"(p = {PLACEHOLDER_P}, no recorded results)")

    currency, currency_comment = _currency(card, projects, row, tables["pricings"], warnings)
    cap = _number(projects, row, "max_payment")
    cap_currency = _value(projects, row, "max_payment_currency")
    if cap is not None and cap_currency and cap_currency != currency:
        warnings.append(f"maximum outcome payment is in {cap_currency}, prices in {currency}: the cap is not converted")
    pp_cap, pp_comment = _per_person_cap(tables["pricings"], proj.id, warnings)
    commissioner, c_comment, provider, p_comment = _parties(tables, proj)
    placeholders += [what for what, comment in (("contract.commissioner", c_comment), ("provider.name", p_comment))
                     if comment.startswith("PLACEHOLDER")]
    investment, investment_key = None, None
    for key in ("investment_exact", "investment_min", "investment_max"):
        investment = _number(projects, row, key)
        if investment is not None:
            investment_key = key
            break
    if investment is None:
        placeholders.append("provider.opening_cash")
    placeholders.append("provider.cost_per_client_month")

    parts = _Parts(proj=proj, tables=tables, name=slugify(proj.name, max_words=8, max_chars=60) or slugify(proj.id),
                   months=months, months_comment=months_comment, users=users, users_comment=users_comment,
                   has_results=has_results, steps=steps, not_met=not_met, placeholders=placeholders,
                   currency=currency, currency_comment=currency_comment, cap=cap, per_person_cap=pp_cap,
                   per_person_comment=pp_comment, per_person_cap_supported=per_person_cap_supported,
                   commissioner=commissioner, commissioner_comment=c_comment, provider=provider, provider_comment=p_comment,
                   investment=investment, investment_key=investment_key, dropout=dropout, lag=lag,
                   headline=headline, headline_reason=headline_reason)
    text = "\n".join(_header_lines(parts) + _top_lines(parts) + _pathway_lines(parts) + _contract_lines(parts)
                     + _provider_lines(parts)) + "\n"
    files = {k: t.file for k, t in tables.items()}
    targets = _targets_text(proj, steps, months, files["results"], parts.name) if any(s.target is not None for s in steps) else None
    return Draft(project_id=proj.id, project_name=proj.name, name=parts.name, scenario_text=text, targets_text=targets,
                 steps=steps, months=months, currency=currency, warnings=warnings, placeholders=placeholders,
                 not_met=not_met, files=files, headline=headline, headline_reason=headline_reason)


def headline_outcome(ladder: list[Metric]) -> tuple[Metric, str]:
    """The default headline outcome (``contract.primary_outcome``) and why: the metric carrying the most recorded
    outcome money (price x outcomes achieved), so that outcome rates and cost per outcome are about the result the
    contract mostly paid for; without results, the largest maximum price; without either, the top rung."""
    valued = [(m.price * m.achieved, -i, m) for i, m in enumerate(ladder) if m.achieved is not None and m.achieved > 0]
    if valued:
        value, _, m = max(valued, key=lambda v: v[:2])
        total = sum(v for v, _, _ in valued)
        return m, (f"the outcome carrying the most recorded outcome money: {m.achieved:,.0f} achieved x {_money_text(m.price)} = "
                   f"{_money_text(value)}, {value / total:.0%} of the {_money_text(total)} the recorded results are worth at list prices")
    capped = [(m.max_price, -i, m) for i, m in enumerate(ladder) if m.max_price]
    if capped:
        value, _, m = max(capped, key=lambda v: v[:2])
        return m, f"no results recorded: the outcome with the largest maximum payment ({_money_text(value)} if all targets are achieved)"
    return ladder[-1], "no results or maximum payments recorded: the top rung (least achieved) - choose the project's headline outcome"


def _header_lines(x: _Parts) -> list[str]:
    L = [
        f"# DRAFT pbrsim scenario for {x.proj.id} {_c(x.proj.name)}, imported by `pbrsim import-indigo` from the",
        "# GO Lab INDIGO Impact Bond Dataset v2 (Government Outcomes Lab, University of Oxford):",
        f"#   {INDIGO_URL}",
        f"# Files read: {', '.join(t.file for t in x.tables.values())}. Cite GO Lab INDIGO when using these figures.",
        "#",
        "# Every number says where it comes from: an INDIGO file and field, or ASSUMPTION (a modelling choice",
        "# stated here) or PLACEHOLDER (not in the data: replace it before relying on the results).",
        "# Structure (ASSUMPTION): INDIGO records how many clients achieved each outcome, not who achieved which",
        "# together, so the priced outcomes form a nested ladder, most-achieved first; reaching a rung implies",
        "# every rung below it. Each month a client on a rung moves up one rung, disengages or stays.",
    ]
    if x.has_results:
        L += [f"# Ladder probabilities are fitted so that the chance of reaching each rung within {x.months} months equals",
              f"# achieved / engaged in {x.tables['results'].file}; refine them with `pbrsim calibrate` and the targets file",
              "# written beside this one (<this file's name>.targets.yaml)."]
    else:
        L.append("# No recorded results: every ladder probability is a PLACEHOLDER.")
    if x.not_met:
        L += ["#", "# NOT MET: these recorded rates cannot be reached by the ladder (the nearest is used):"]
        for s in x.not_met:
            L.append(f"#   {s.metric.state} ({s.metric.id}): recorded {s.metric.rate:.4f}, ladder reaches {s.reach:.4f}"
                     + (" (more outcomes than clients engaged)" if s.metric.rate > 1 else ""))
    if x.placeholders:
        L += ["#", "# PLACEHOLDERS to replace: " + "; ".join(x.placeholders) + "."]
    return L + [""]


def _top_lines(x: _Parts) -> list[str]:
    population = _value(x.tables["projects"], x.proj.row, "target_population")
    population = _clip(population, 300).rstrip(". ") if population else "not recorded"
    desc = (f"{_c(x.proj.name)} ({x.proj.id}). Target population: {population}. "
            f"DRAFT imported from GO Lab INDIGO ({INDIGO_URL}): rate card, dates and cohort from the data; "
            "pathway structure, dropout, lags and provider finances are assumptions or placeholders.")
    ref_end = max(1, min(12, math.ceil(x.months / 2)))
    when = "the first year" if ref_end == 12 else "the first half of the service period"
    users = _money_text(x.users)
    return [
        f"name: {_plain(x.name)}  # slug of INDIGO {x.header('name')}",
        f"description: {_q(desc)}",
        f"months: {x.months}  # {x.months_comment}",
        f"currency: {_plain(x.currency)}  # {x.currency_comment}",
        "referrals:",
        f"  # ASSUMPTION: the {users} service users are referred evenly over months 0-{ref_end - 1} ({when});",
        "  # INDIGO does not record when clients were referred",
        f"  rate: {_num(round(x.users / ref_end, 6))}  # = {users} / {ref_end}; {users} from {x.users_comment}",
        "  start: 0  # ASSUMPTION: referrals open with the service",
        f"  end: {ref_end}  # ASSUMPTION: {when}",
        "  distribution: poisson  # ASSUMPTION: monthly counts vary at random around the rate",
        "segments:",
        "  all: {share: 1.0}  # ASSUMPTION: one client group; INDIGO records no segments with their own outcomes",
    ]


def _row_comment(x: _Parts, s: Step) -> str:
    m, results = s.metric, (x.tables["results"].file if "results" in x.tables else "")
    if s.status == "placeholder":
        return f"PLACEHOLDER: no recorded results; set from evidence or calibrate ({m.id})"
    if s.status == "not_met" and m.rate > 1:
        return (f"NOT MET: {results} {m.id} records more outcomes than clients engaged "
                f"({_money_text(m.achieved)}/{_money_text(m.engaged)} = {m.rate:.4f}); the ladder reaches {s.reach:.4f}")
    if s.status == "not_met":
        return f"NOT MET: {results} {m.id} gives {s.target:.4f} but the ladder reaches only {s.reach:.4f}; p clamped at 1"
    comment = (f"fitted: reach of {m.state} within {x.months} months = {_money_text(m.achieved)}/{_money_text(m.engaged)} "
               f"= {s.target:.4f} ({results} {m.id}, {m.period})")
    if m.achieved_raw:
        comment += f'; the count is read from the text "{_clip(m.achieved_raw, 60)}"'
    if m.engaged_source.startswith("ASSUMPTION"):
        comment += f"; {m.engaged_source}"
    if s.status == "lowered_dropout":
        comment += "; dropout lowered from the ASSUMPTION so that the rate can be reached"
    return comment


def _pathway_lines(x: _Parts) -> list[str]:
    last = x.steps[-1].metric.state
    L = ["pathway:", "  states:", "    - referred  # initial state: referred, no priced outcome yet"]
    for s in x.steps:
        L.append(f"    - {_yaml_key(s.metric.state)}  # {s.metric.id}: {_c(_first_sentence(s.metric.definition, 110))}")
    L += [
        "    - disengaged  # ASSUMPTION: left the programme early",
        "    - exited  # reached the end of the programme without the top rung",
        "  initial_state: referred  # a client enters here when referred",
        f"  absorbing: [{_yaml_key(last)}, disengaged, exited]  # ASSUMPTION: support ends at the top rung",
        "  exit_state: exited",
        f"  max_months_on_programme: {x.months}  # ASSUMPTION: support can last the whole service period ({x.months} months)",
        "  transitions:",
        "    all:",
    ]
    for level in ("full", "minimal"):
        if level == "full":
            L += ["      full:", f"        # rung k -> rung k+1 with p, -> disengaged with the dropout, otherwise stay; "
                                  f"dropout {_num(x.dropout)} a month is an ASSUMPTION"]
        else:
            L.append("      minimal:  # ASSUMPTION: same as full (INDIGO says nothing about reduced service)")
        for s in x.steps:
            stay = _round(max(0.0, 1.0 - s.p - s.dropout))
            row = (f"{{{_yaml_key(s.metric.state)}: {_num(s.p)}, {_yaml_key(s.from_state)}: {_num(stay)}, "
                   f"disengaged: {_num(s.dropout)}}}")
            comment = _row_comment(x, s) if level == "full" else "ASSUMPTION: as the full row"
            L.append(f"        {_yaml_key(s.from_state)}: {row}  # {comment}")
    return L


def _contract_lines(x: _Parts) -> list[str]:
    last = x.steps[-1].metric.state
    pricings = x.tables["pricings"]
    L = ["contract:", f"  commissioner: {_plain(x.commissioner)}  # {x.commissioner_comment}"]
    if x.cap is not None:
        L.append(f"  cap: {_num(x.cap)}  # INDIGO {x.header('max_payment')}")
    else:
        L.append("  # cap: none - INDIGO records no maximum potential outcome payment for this project")
    if x.per_person_cap is not None:
        if x.per_person_cap_supported:
            L.append(f"  per_person_cap: {_num(x.per_person_cap)}  # {x.per_person_comment}")
        else:
            L.append(f"  # per_person_cap: {_num(x.per_person_cap)}  # not supported by this pbrsim version; {x.per_person_comment}")
    L += [f"  primary_outcome: {_yaml_key(x.headline.state)}  # ASSUMPTION: {x.headline.id}, {_c(x.headline_reason)}; change it if the project's own headline outcome differs",
          "  payments:"]
    for s in x.steps:
        m = s.metric
        tariff = f"INDIGO {x.header('price', 'pricings')} of {m.id}"
        if m.other_prices:
            tariff += f"; further price rows {', '.join(_money_text(v) for v in m.other_prices)} (tiers) not modelled"
        if m.max_price is not None:
            tariff += f"; max if all targets achieved {_money_text(m.max_price)} (no per-line cap in pbrsim)"
        kind = "  # ASSUMPTION: the top rung is the outcome, the rungs below milestones" if m.state == last else ""
        source = f"GO Lab INDIGO {x.proj.id}, {pricings.file}, {m.id}: {_first_sentence(m.definition)}"
        L += [
            f"    - name: {_yaml_key(_line_name(m.state))}",
            f"      kind: {m.kind}{kind}",
            f"      state: {_yaml_key(m.state)}",
            f"      tariff: {_num(m.price)}  # {tariff}",
            f"      lag: {x.lag}  # ASSUMPTION: months from achieving the outcome to payment",
            f"      source: {_q(source)}",
        ]
    return L


def _provider_lines(x: _Parts) -> list[str]:
    if x.investment is not None:
        cash = (f"  opening_cash: {_num(x.investment)}  # INDIGO {x.header(x.investment_key)} (social investment); "
                "ASSUMPTION: all of it available as working capital from month 0")
    else:
        cash = "  opening_cash: 0  # PLACEHOLDER: no investment amount recorded"
    return [
        "provider:",
        f"  name: {_plain(x.provider)}  # {x.provider_comment}",
        cash,
        "  overhead_per_month: 0  # PLACEHOLDER: fixed costs not in INDIGO",
        f"  cost_per_client_month: {{full: {_num(PLACEHOLDER_COST_FULL)}, minimal: {_num(PLACEHOLDER_COST_MINIMAL)}}}"
        "  # PLACEHOLDER: delivery cost per client-month is not in INDIGO",
        "  credit: {limit: null, monthly_interest: 0}  # PLACEHOLDER: unlimited overdraft, so the draft never fails",
        "  policy: holistic  # ASSUMPTION: every client in a service state gets full service",
    ]


def _line_name(state: str) -> str:
    return state if state not in RESERVED_LINE_NAMES else f"{state}_payment"


def _targets_text(proj: _Project, steps: list[Step], months: int, results_file: str, name: str) -> str:
    L = [
        f"# Calibration targets for the draft scenario {name!r} ({proj.id} {_c(proj.name)}), from the GO Lab INDIGO",
        f"# Impact Bond Dataset v2 ({INDIGO_URL}); cite GO Lab INDIGO when using these figures.",
        "# Each target: the probability that a referred client first enters the state within `within_months`",
        "# monthly transitions under the `full` rows (forced exit after max_months_on_programme) should equal",
        "# outcomes achieved / number engaged. Each parameter is the monthly probability of moving up that rung;",
        "# the stay probability of the same row (`balance`) absorbs the change.",
        f"description: {_q(f'Outcome rates of {_c(proj.name)} ({proj.id}) recorded in GO Lab INDIGO {results_file}')}",
        "parameters:",
    ]
    for s in steps:
        if s.target is None:
            continue
        L += [
            f"  - name: {_q(f'p_{s.from_state}_to_{s.metric.state}')}",
            f"    paths: [{_q(f'pathway.transitions.all.full.{s.from_state}.{s.metric.state}')}]",
            f"    balance: {_yaml_key(s.from_state)}",
            f"    bounds: [0.0, {_num(1.0 - s.dropout) if s.dropout else '1.0'}]  # upper bound: 1 - the row's dropout",
        ]
    L.append("targets:")
    for s in steps:
        if s.target is None:
            continue
        m = s.metric
        if s.status == "not_met":
            L.append(f"  # NOT MET by the imported draft: the ladder reaches {s.reach:.4f}")
        raw = m.achieved / m.engaged
        L += [
            f"  - name: {_q(f'reach_{m.state}')}",
            "    segment: all",
            f"    states: [{_yaml_key(m.state)}]",
            f"    within_months: {months}",
            f"    rate: {_num(s.target)}  # {_money_text(m.achieved)} achieved / {_money_text(m.engaged)} engaged"
            + (f" = {raw:.4f}, clipped to 1" if raw > 1 else ""),
            f"    tolerance: {TARGET_TOLERANCE}",
            f"    source: {_q(f'GO Lab INDIGO {proj.id}, {results_file}, {m.id}, {m.period}')}",
        ]
    return "\n".join(L) + "\n"
