"""The ``value:`` section of a scenario: what outcomes are worth, to whom, against a counterfactual.

A value line says what a client's first entry into a state, or each month a client spends in a
state, changes for one budget holder (NHS, DWP, the local authority, justice, ...) or for the person
(earnings, wellbeing). Figures are gains: positive is a saving to a public body or a gain to the
person, negative a cost. The counterfactual gives the same clients' transitions without the
programme; the Green Book appraisal (``pbrsim.value``) discounts the difference. Nothing here imports
the rest of pbrsim; ``check_value`` is called by the scenario's cross-field rules.
"""

# annotations are evaluated as the classes are made (no `from __future__ import annotations`): pydantic
# would otherwise compile every annotation string again, at every start-up
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .limits import MAX_MONTHS_EVER

PERSON = "person"  # the one party that is not a public budget holder
PRICE_YEAR = re.compile(r"^\d{4}-\d{2}$")
ROW_TOLERANCE = 1e-9


class _Model(BaseModel):
    # the same strictness as the rest of the scenario schema
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False, defer_build=True)


def _price_year(v: str | None) -> str | None:
    if v is not None:
        if not PRICE_YEAR.match(v) or (int(v[:4]) + 1) % 100 != int(v[5:]):
            raise ValueError("a price year is a financial year written like '2014-15'")
    return v


class UnitCost(_Model):
    """A published unit cost: what one unit of something costs a budget holder (or is worth to a person)."""

    value: float = Field(..., description="Pounds per unit, in prices of `price_year`.")
    unit: str = Field(..., description="What one unit is, e.g. 'GP appointment'.")
    price_year: str = Field(..., description="Financial year of the prices, e.g. '2014-15'.")
    publisher: str
    publication: str = Field(..., description="Title of the publication the figure is read from.")
    year: int | None = Field(None, ge=1900, le=2100, description="Year of publication (null when not known).")
    source: str | None = Field(None, description="Key of the publication in docs/sources.md (every shipped entry has one), or your own reference.")
    url: str | None = Field(None, description="Where the publication is, for entries whose publication has no `source` key.")
    note: str | None = Field(None, description="How the figure was read or derived.")

    @field_validator("price_year")
    @classmethod
    def _year(cls, v):
        return _price_year(v)


class ValueLine(_Model):
    name: str = Field(..., description="Label of the line, unique within the section.")
    to: str = Field(..., description="Who gains: a budget holder (e.g. nhs, dwp, local_authority, justice) or `person`.")
    per: Literal["month", "entry"] = Field(
        ..., description="`month`: each client-month spent in the state(s); `entry`: a client's first entry into the state(s)."
    )
    state: str | None = Field(None, description="The state (or give `states`).")
    states: list[str] | None = Field(None, description="Several states: any month in one of them, or first entry into any of them.")
    amount: float | dict[str, float] | None = Field(
        None, description="Gain per client-month (per: month) or per entry, pounds; per segment allowed with per: entry (with optional `default`)."
    )
    unit_cost: str | float | None = Field(None, description="Instead of `amount`: a key of the unit-cost table, or pounds per unit.")
    units: float | None = Field(None, description="With `unit_cost`: units per client-month (per: month) or per entry.")
    reduction: float = Field(1.0, description="With `unit_cost`: share of the units avoided (negative: an increase). Gain = units x reduction x unit cost.")
    months: int | None = Field(None, ge=1, le=MAX_MONTHS_EVER, description="per: entry: the gain recurs each month for this many months from the entry month (default: once, in the entry month).")
    decay: float = Field(0.0, ge=0, le=1, description="Share of the effect lost each year: since entry (per: entry), or after the contract end (per: month).")
    after_contract_months: int = Field(
        0, ge=0, le=MAX_MONTHS_EVER, description="per: month: months after the contract end that the states clients end in keep counting (states freeze at the contract end)."
    )
    price_year: str | None = Field(None, description="Price year of `amount` or a numeric `unit_cost` (default `value.price_year`).")
    source: str = Field(..., description="Where the figures of this line come from (units, reduction, persistence, amount).")

    @field_validator("price_year")
    @classmethod
    def _year(cls, v):
        return _price_year(v)


class Counterfactual(_Model):
    """The same clients without the programme: one set of monthly transition rows per segment."""

    transitions: dict[str, dict[str, dict[str, float]]] = Field(
        ..., description="Per segment (or `default` for segments not listed), rows `from: {to: probability}`; absorbing states may be omitted."
    )
    source: str = Field(..., description="Where the counterfactual rates come from.")


class OptimismBias(_Model):
    costs: float = Field(0.0, ge=0, le=2, description="Uplift on the commissioner's spend (Green Book optimism bias), e.g. 0.2 = +20%.")
    benefits: float = Field(0.0, ge=0, lt=1, description="Share taken off every gain.")
    source: str | None = None


class Deflators(_Model):
    """A GDP deflator index by financial year, used to express every figure in prices of `base_year`."""

    index: dict[str, float] = Field(..., description="Index by financial year, e.g. {'2014-15': 95.1, '2016-17': 100}.")
    source: str = Field(..., description="The deflator release the index is read from.")

    @field_validator("index")
    @classmethod
    def _years(cls, v):
        for year, x in v.items():
            _price_year(year)
            if x <= 0:
                raise ValueError(f"deflator for {year} must be positive")
        return v


class Value(_Model):
    price_year: str = Field(..., description="Financial year of the prices in this section and of the contract's money.")
    base_year: str | None = Field(None, description="Price year the appraisal reports in (default `price_year`).")
    commissioner_budget: str = Field(..., description="Budget holder that pays the contract (its spend is the programme's cost).")
    horizon_years: int = Field(10, ge=1, le=100, description="Appraisal period from the contract start, years.")
    optimism_bias: OptimismBias = Field(default_factory=OptimismBias)
    deflators: Deflators | None = Field(None, description="Needed when any figure's price year differs from `base_year`.")
    counterfactual: Counterfactual
    unit_costs: dict[str, UnitCost] = Field(default_factory=dict, description="Unit costs added to (or replacing) the shipped table.")
    lines: list[ValueLine] = Field(..., min_length=1)
    source: str | None = None

    @field_validator("price_year", "base_year")
    @classmethod
    def _year(cls, v):
        return _price_year(v)

    @property
    def base(self) -> str:
        return self.base_year or self.price_year


def check_value(v: Value, states: list[str], absorbing: list[str], segments: list[str],
                engine_states: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """Cross-field rules of the value section: states, segments, counterfactual rows, line shapes. Lines may also
    name ``engine_states`` (the engine's own state for clients of a failed provider)."""
    p: list[tuple[str, str]] = []
    known = set(states)
    line_states = known | set(engine_states)
    names = [line.name for line in v.lines]
    if v.commissioner_budget == PERSON:
        p.append(("value.commissioner_budget", f"{PERSON!r} is the person, not a budget holder that pays"))
    for i, line in enumerate(v.lines):
        path = f"value.lines[{i}]"
        if names.count(line.name) > 1:
            p.append((f"{path}.name", f"line name {line.name!r} is used more than once"))
        if (line.state is None) == (line.states is None):
            p.append((f"{path}.state", "give exactly one of `state` or `states`"))
        for j, s in enumerate([line.state] if line.state is not None else line.states or []):
            if s not in line_states:
                where = f"{path}.state" if line.state is not None else f"{path}.states[{j}]"
                p.append((where, f"unknown state {s!r}; states are {states + list(engine_states)}"))
        if line.states is not None and not line.states:
            p.append((f"{path}.states", "name at least one state"))
        if (line.amount is None) == (line.unit_cost is None):
            p.append((f"{path}.amount", "give exactly one of `amount` or `unit_cost` (with `units`)"))
        if line.unit_cost is not None and line.units is None:
            p.append((f"{path}.units", "required with `unit_cost`: units per client-month or per entry"))
        if line.unit_cost is None and (line.units is not None or "reduction" in line.model_fields_set):
            p.append((f"{path}.units", "`units` and `reduction` only apply with `unit_cost`"))
        if isinstance(line.amount, dict):
            if line.per == "month":
                p.append((f"{path}.amount", "per-segment amounts apply to per: entry lines (months in a state are counted for all segments together)"))
            for seg in line.amount:
                if seg != "default" and seg not in segments:
                    p.append((f"{path}.amount.{seg}", f"unknown segment {seg!r}; segments are {segments}"))
            missing = [s for s in segments if s not in line.amount]
            if missing and "default" not in line.amount:
                p.append((f"{path}.amount", f"no amount for segments {missing}; list them or give `default`"))
        if line.per == "month" and line.months is not None:
            p.append((f"{path}.months", "`months` applies to per: entry lines (a per: month line counts months in the state)"))
        if line.per == "entry" and "after_contract_months" in line.model_fields_set:
            p.append((f"{path}.after_contract_months", "applies to per: month lines (use `months` for how long an entry's gain lasts)"))
        if line.price_year is not None and line.unit_cost is not None and not isinstance(line.unit_cost, float | int):
            p.append((f"{path}.price_year", "a unit-cost key carries its own price year"))
    cf = v.counterfactual
    absorbing_set = set(absorbing)
    for seg in cf.transitions:
        if seg != "default" and seg not in segments:
            p.append((f"value.counterfactual.transitions.{seg}", f"unknown segment {seg!r}; segments are {segments}"))
    missing = [s for s in segments if s not in cf.transitions]
    if missing and "default" not in cf.transitions:
        p.append(("value.counterfactual.transitions", f"no rows for segments {missing}; list them or give `default`"))
    for seg, rows in cf.transitions.items():
        prefix = f"value.counterfactual.transitions.{seg}"
        for frm, row in rows.items():
            path = f"{prefix}.{frm}"
            if frm not in known:
                p.append((path, f"unknown state {frm!r}; states are {states}"))
                continue
            for to, prob in row.items():
                if to not in known:
                    p.append((f"{path}.{to}", f"unknown state {to!r}; states are {states}"))
                if not 0 <= prob <= 1:
                    p.append((f"{path}.{to}", f"probability {prob} must be between 0 and 1"))
            total = sum(row.values())
            if abs(total - 1) > ROW_TOLERANCE:
                p.append((path, f"row must sum to 1 (it sums to {total:.10g})"))
            if frm in absorbing_set and abs(row.get(frm, 0) - 1) > ROW_TOLERANCE:
                p.append((path, f"{frm!r} is absorbing, so its row must be {{{frm}: 1}} or omitted"))
        for s in states:
            if s not in absorbing_set and s not in rows:
                p.append((prefix, f"no row for non-absorbing state {s!r}"))
    return p
