"""A scenario's ``value:`` section compiled to numbers: each line's gain in base-year pounds, holders,
discount factors, the optimism-bias factors, and the shipped unit-cost table.

Problems a schema cannot see (a unit-cost key that does not exist, a price year with no deflator, an
appraisal too short for the contract) are reported as ``ScenarioError`` naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml
from pydantic import ValidationError

from ..model.pathway import Pathway
from ..scenario.schema import ScenarioError, Scenario, pydantic_problems
from ..scenario.value_schema import PERSON, UnitCost, Value
from .greenbook import deflate, monthly_factors

UNIT_COSTS_FILE = Path(__file__).with_name("unit_costs.yaml")


@lru_cache(maxsize=1)
def shipped_unit_costs() -> dict[str, UnitCost]:
    """The unit-cost table shipped with pbrsim (``value/unit_costs.yaml``), validated."""
    raw = yaml.safe_load(UNIT_COSTS_FILE.read_text(encoding="utf-8")) or {}
    out = {}
    for key, entry in raw.items():
        entry = {**entry, "price_year": str(entry["price_year"])}
        try:
            out[key] = UnitCost.model_validate(entry)
        except ValidationError as exc:  # a broken shipped file is a bug, said plainly
            raise ScenarioError(str(UNIT_COSTS_FILE), [(f"{key}.{p}", r) for p, r in pydantic_problems(exc)]) from None
    return out


@dataclass(frozen=True)
class Line:
    """One value line: the gain (base-year pounds) per client-month in ``states`` or per first entry into them."""

    name: str
    holder: str
    per: str  # month | entry
    states: np.ndarray  # int indices into the pathway's states
    gain: np.ndarray  # [G] pounds per unit (the same for every segment on per: month lines)
    months: int | None
    decay: float
    after: int  # per: month: months counted after the contract end


@dataclass(frozen=True)
class ValueModel:
    spec: Value
    lines: tuple[Line, ...]
    holders: tuple[str, ...]  # the commissioner's budget first, other public holders, then the person (if any line names it)
    commissioner: str
    months: int  # appraisal months
    discount: np.ndarray  # [months] Green Book factor of each month
    contract_factor: float  # contract money (prices of value.price_year) -> base-year pounds
    cost_factor: float  # 1 + optimism bias on costs
    benefit_factor: float  # 1 - optimism bias on benefits

    @property
    def public(self) -> tuple[str, ...]:
        return tuple(h for h in self.holders if h != PERSON)


def compile_value(sc: Scenario, pathway: Pathway, horizon: int, source: str = "<scenario>") -> ValueModel:
    """Compile ``sc.value`` for a model whose run records ``horizon`` months; raises ScenarioError."""
    v = sc.value
    if v is None:
        raise ValueError("the scenario has no value section")
    table = {**shipped_unit_costs(), **v.unit_costs}
    base = v.base
    index = v.deflators.index if v.deflators else {}
    problems: list[tuple[str, str]] = []

    def to_base(amount: float, year: str, path: str) -> float:
        if year != base and (year not in index or base not in index):
            missing = [y for y in (year, base) if y not in index]
            problems.append((path, f"prices of {year} need a deflator to express them in {base} prices: add "
                                   f"value.deflators with an index for {', '.join(missing)} (and its source)"))
            return float(amount)
        return deflate(amount, year, base, index)

    segments = list(pathway.segments)
    lines = []
    for i, spec in enumerate(v.lines):
        path = f"value.lines[{i}]"
        states = [spec.state] if spec.state is not None else list(spec.states)
        if spec.amount is not None:
            year = spec.price_year or v.price_year
            raw = spec.amount if isinstance(spec.amount, dict) else {"default": spec.amount}
            gain = np.array([to_base(raw.get(g, raw.get("default", 0.0)), year, f"{path}.amount") for g in segments])
        else:
            if isinstance(spec.unit_cost, str):
                if spec.unit_cost not in table:
                    problems.append((f"{path}.unit_cost", f"unknown unit cost {spec.unit_cost!r}; the table has {sorted(table)} "
                                                          "(add your own under value.unit_costs)"))
                    continue
                uc = table[spec.unit_cost]
                per_unit = to_base(uc.value, uc.price_year, f"{path}.unit_cost")
            else:
                per_unit = to_base(float(spec.unit_cost), spec.price_year or v.price_year, f"{path}.unit_cost")
            gain = np.full(len(segments), spec.units * spec.reduction * per_unit)
        lines.append(Line(name=spec.name, holder=spec.to, per=spec.per,
                          states=np.array([pathway.index(s) for s in states], dtype=np.int64), gain=gain,
                          months=spec.months, decay=spec.decay, after=spec.after_contract_months))
    contract_factor = to_base(1.0, v.price_year, "value.price_year")
    months = 12 * v.horizon_years
    if months < horizon:
        problems.append(("value.horizon_years", f"{v.horizon_years} years ({months} months) is shorter than the contract and its "
                                                f"payment run-off ({horizon} months): make it at least {-(-horizon // 12)}"))
    if problems:
        raise ScenarioError(source, problems)
    named = [line.holder for line in lines]
    others = sorted({h for h in named if h not in (v.commissioner_budget, PERSON)})
    holders = (v.commissioner_budget, *others) + ((PERSON,) if PERSON in named else ())
    ob = v.optimism_bias
    return ValueModel(spec=v, lines=tuple(lines), holders=holders, commissioner=v.commissioner_budget, months=months,
                      discount=monthly_factors(months), contract_factor=contract_factor,
                      cost_factor=1.0 + ob.costs, benefit_factor=1.0 - ob.benefits)
