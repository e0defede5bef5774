"""Portfolio files: several separate contracts run together, so that figures for the whole programme (a fund of
projects, say) come from the model: each replication's totals are sums over the members' runs.

Each member is its own scenario file with its own contract, provider and investors. Members are independent
of one another, so each runs with its own seed derived from the portfolio's seed and the member's name
(``member_seed``): replication r of the portfolio is replication r of every member, and a member can be
re-run alone with ``pbrsim run MEMBER --seed <its seed>``. See docs/portfolios.md.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..scenario.schema import Scenario, ScenarioError, file_hash, load_scenario, pydantic_problems, read_yaml

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$"


class PortfolioError(ScenarioError):
    """A portfolio file broke a rule; ``problems`` is a list of (field path, rule) pairs."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MemberSpec(_Model):
    scenario: str = Field(..., description="Scenario file of this member, relative to the portfolio file.")
    name: str | None = Field(None, pattern=NAME_PATTERN, max_length=100, description="Label (default: the scenario's name).")


class PortfolioSpec(_Model):
    name: str | None = Field(None, pattern=NAME_PATTERN, max_length=100, description="Default: the file name without extension.")
    description: str | None = None
    seed: int = Field(0, ge=0, description="Root seed; each member's seed is derived from it and the member's name.")
    replications: int = Field(..., ge=1, le=1_000_000, description="Replications of every member.")
    members: list[MemberSpec] = Field(..., min_length=1)


@dataclass(frozen=True)
class Member:
    name: str
    path: Path
    scenario: Scenario
    sha256: str


@dataclass(frozen=True)
class Portfolio:
    name: str
    description: str | None
    path: Path
    seed: int
    replications: int
    members: tuple[Member, ...]


def member_seed(seed: int, name: str) -> int:
    """The seed a member runs with: from the portfolio seed and the member's name, so members' random streams are
    independent of one another (the same seed for every member would give client i the same luck everywhere)."""
    ss = np.random.SeedSequence([seed, zlib.crc32(name.encode())])
    return int(ss.generate_state(1, np.uint32)[0])


def load_portfolio(path: str | Path) -> Portfolio:
    """Read and check a portfolio file and every member scenario; all problems are reported at once."""
    path = Path(path)
    raw = read_yaml(path)
    try:
        spec = PortfolioSpec.model_validate(raw)
    except ValidationError as exc:
        raise PortfolioError(str(path), pydantic_problems(exc, "docs/portfolios.md")) from None
    problems: list[tuple[str, str]] = []
    members: list[Member] = []
    for i, m in enumerate(spec.members):
        where = f"members[{i}].scenario"
        member_path = (path.parent / m.scenario).resolve()
        if not member_path.is_file():
            problems.append((where, f"no such file: {m.scenario} (paths are relative to the portfolio file)"))
            continue
        try:
            sc = load_scenario(member_path)
        except ScenarioError as exc:
            problems += [(f"{where} ({m.scenario}){': ' + p if p else ''}", rule) for p, rule in exc.problems]
            continue
        members.append(Member(name=m.name or sc.name, path=member_path, scenario=sc, sha256=file_hash(member_path)))
    names = [m.name for m in members]
    for i, name in enumerate(names):
        if names.count(name) > 1 and names.index(name) == i:
            problems.append(("members", f"member name {name!r} is used more than once (give `name:` to tell them apart)"))
    currencies = sorted({m.scenario.currency for m in members})
    if len(currencies) > 1:
        problems.append(("members", f"members are in different currencies {currencies}: totals would mix them"))
    if problems:
        raise PortfolioError(str(path), problems)
    return Portfolio(name=spec.name or path.stem, description=spec.description, path=path, seed=spec.seed,
                     replications=spec.replications, members=tuple(members))
