"""Portfolios: separate contracts run together; the whole's figures are the members' summed replication by
replication, each member with its own seed; the Fair Chance Fund's seven projects as one fund."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from pbrsim.cli.main import main
from pbrsim.library.calibrate import load_targets
from pbrsim.portfolio.portfolio import PortfolioError, load_portfolio, member_seed
from pbrsim.portfolio.run import run_portfolio
from pbrsim.simulate import simulate

from .conftest import make

ROOT = Path(__file__).resolve().parents[1]
FCF = ROOT / "scenarios" / "portfolios" / "fair_chance_fund.yaml"


def _two_members(tmp_path: Path, **spec) -> Path:
    """Two copies of the small test contract under different names, and a portfolio of them."""
    for name, rate in (("north", 20), ("south", 12)):
        d = make(**{"name": name, "referrals.rate": rate})
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(d))
    doc = {"name": "pair", "seed": 3, "replications": 4,
           "members": [{"scenario": "north.yaml"}, {"scenario": "south.yaml"}], **spec}
    path = tmp_path / "pair.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_the_total_is_the_sum_of_the_members_replication_by_replication(tmp_path):
    pf = load_portfolio(_two_members(tmp_path))
    res = run_portfolio(pf)
    alone = {m.name: simulate(m.scenario, seed=member_seed(3, m.name), replications=4).per_replication for m in pf.members}
    for col in ("referrals", "paid_total", "capped_total"):
        want = sum(alone[n][col].to_numpy() for n in alone)
        assert np.allclose(res.fund.sort_values("replication")[col].to_numpy(), want), col
    # each member's own figures are those of running it alone with its seed
    north = res.members[res.members.member == "north"].sort_values("replication")
    assert np.allclose(north["paid_total"].to_numpy(), alone["north"]["paid_total"].to_numpy())
    # per payment line: accepted claims add up to the members' claims tables
    lines = res.lines.groupby(["replication", "line"])["accepted"].sum()
    for m in pf.members:
        claims = simulate(m.scenario, seed=member_seed(3, m.name), replications=4).claims
        got = res.lines[res.lines.member == m.name].set_index(["replication", "line"])["accepted"]
        want = (claims["claims"] - claims["rejected"]).groupby([claims.replication, claims["item"]], observed=True).sum()
        assert (got.reindex(want.index).to_numpy() == want.to_numpy()).all()
    assert lines.sum() > 0
    s = res.summary["fund"]
    assert s["paid_total"]["mean"] == pytest.approx(res.fund["paid_total"].mean())


def test_members_run_with_their_own_seeds_and_the_run_is_reproducible(tmp_path):
    pf = load_portfolio(_two_members(tmp_path))
    assert member_seed(3, "north") != member_seed(3, "south")
    a, b = run_portfolio(pf), run_portfolio(pf)
    pd.testing.assert_frame_equal(a.fund, b.fund)
    pd.testing.assert_frame_equal(a.lines, b.lines)
    other = run_portfolio(pf, seed=4)
    assert not np.allclose(other.fund["paid_total"], a.fund["paid_total"])


def test_the_command_writes_tables_and_a_summary(tmp_path):
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["portfolio", str(_two_members(tmp_path)), "-n", "3", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "total" in r.output and "north" in r.output
    s = json.loads((out / "summary.json").read_text())
    fund = pd.read_parquet(out / "fund.parquet")
    assert s["replications"] == 3 and len(fund) == 3
    assert s["fund"]["paid_total"]["mean"] == pytest.approx(fund["paid_total"].mean())
    man = json.loads((out / "manifest.json").read_text())
    assert [m["seed"] for m in man["members"]] == [member_seed(3, "north"), member_seed(3, "south")]


@pytest.mark.parametrize("change, where, rule", [
    ({"members": [{"scenario": "missing.yaml"}]}, "members[0].scenario", "no such file"),
    ({"members": [{"scenario": "north.yaml"}, {"scenario": "north.yaml"}]}, "members", "used more than once"),
    ({"members": []}, "members", ""),
    ({"replications": 0}, "replications", ""),
    ({"colour": "red"}, "colour", "unknown field"),
])
def test_a_bad_portfolio_file_names_the_field_and_writes_nothing(tmp_path, change, where, rule):
    path = _two_members(tmp_path, **change)
    with pytest.raises(PortfolioError) as e:
        load_portfolio(path)
    assert any(p == where and rule in r for p, r in e.value.problems), e.value.problems
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["portfolio", str(path), "--out", str(out)])
    assert r.exit_code == 2 and not out.exists()
    assert where in r.output


def test_a_bad_member_scenario_is_reported_with_its_file(tmp_path):
    path = _two_members(tmp_path)
    bad = yaml.safe_load((tmp_path / "south.yaml").read_text())
    bad["months"] = 0
    (tmp_path / "south.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(PortfolioError) as e:
        load_portfolio(path)
    assert any(p.startswith("members[1].scenario (south.yaml): months") for p, _ in e.value.problems), e.value.problems


def _recorded_fund_counts(pf) -> dict[str, float]:
    """Outcomes achieved over the fund, per payment line, from the members' targets files (rate x engaged)."""
    total: dict[str, float] = {}
    for m in pf.members:
        sc = m.scenario
        engaged = sc.referrals.rate * (sc.referrals.end - sc.referrals.start)
        line_of_metric = {int(re.search(r"metric (\d+):", r.source).group(1)): r.name for r in sc.contract.payments}
        targets = load_targets(ROOT / "scenarios" / "library" / "targets" / f"{sc.name}.targets.yaml")
        for t in targets.targets:
            metric = int(re.search(r"outcome metric (\d+)", t.source).group(1))
            total[line_of_metric[metric]] = total.get(line_of_metric[metric], 0.0) + t.rate * engaged
    return total


def test_the_fair_chance_fund_portfolio_reproduces_the_funds_recorded_outcomes():
    """Fund-level outcome counts come from the seven calibrated projects: each line's accepted claims over the
    fund match what the seven recorded, within 4 standard errors plus 2% for the calibration window."""
    pf = load_portfolio(FCF)
    assert len(pf.members) == 7 and len({m.scenario.contract.per_person_cap for m in pf.members}) == 1
    res = run_portfolio(pf, replications=10)
    recorded = _recorded_fund_counts(pf)
    per_rep = res.lines.groupby(["line", "replication"])["accepted"].sum()
    checked = 0
    for line, count in recorded.items():
        if count < 100:
            continue
        x = per_rep.loc[line].to_numpy(dtype=float)
        se = x.std(ddof=1) / np.sqrt(len(x))
        assert abs(x.mean() - count) <= 4 * se + 0.02 * count, f"{line}: model {x.mean():.1f}, recorded {count:.1f}"
        checked += 1
    assert checked >= 12
    # the whole fund: 1,909 young people engaged in all, and payments below the recorded results' list-price value
    assert abs(res.fund["referrals"].mean() - 1909) <= 4 * res.fund["referrals"].std(ddof=1) / np.sqrt(10)
    list_value = sum(r.tariff * recorded.get(r.name, 0.0) for r in pf.members[0].scenario.contract.payments)  # same card
    assert 0.8 * list_value < res.fund["paid_total"].mean() < list_value  # the per-person cap binds for some
