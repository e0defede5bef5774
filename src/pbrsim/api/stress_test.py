"""Stress tests in memory: ``pbrsim.stress`` runs the built-in (and your own) stresses for one organisation
and returns a :class:`StressTest` (the figures of ``pbrsim stress``; docs/python.md, docs/stress-testing.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    import pandas as pd

    from ..scenario.schema import Scenario
    from ..stress.run import StressResult


class StressTest:
    """A stress test's result: ``result`` is the full :class:`pbrsim.stress.run.StressResult`; money in pounds."""

    def __init__(self, result: "StressResult"):
        self.result = result

    def table(self) -> "pd.DataFrame":
        """One row per stress: its label, the share of replications in which the organisation ran out of
        cash (``failure``, a fraction, with its 95% interval), the working capital needed to keep that
        at the target (pounds), the median lowest cash and margin (pounds) and a sentence."""
        import pandas as pd

        rows = []
        for r in self.result.rows:
            row = {"stress": r["name"], "label": r["label"], "kind": r["kind"], "applicable": r["applicable"]}
            if r.get("replications"):
                row.update(failure=r["ran_out_of_cash"]["mean"], failure_lo=r["ran_out_of_cash"]["lo"],
                           failure_hi=r["ran_out_of_cash"]["hi"], working_capital=r["working_capital"]["estimate"],
                           lowest_cash_p50=r["lowest_cash"]["p50"], margin_p50=r["margin"]["p50"])
            row["sentence"] = r.get("sentence")
            rows.append(row)
        return pd.DataFrame(rows)

    def tables(self) -> dict[str, "pd.DataFrame"]:
        """The tables ``pbrsim stress`` writes (stresses, replications, cash in pence, reverse)."""
        return self.result.tables()

    def __repr__(self) -> str:
        t = self.table()
        base = t[t["kind"] == "base"]
        worst = t[t["kind"] != "base"].dropna(subset=["failure"]).sort_values("failure").tail(1)
        parts = [f"<StressTest {self.result.scenario!r} for {self.result.organisation!r}: {len(t) - 1} stresses, "
                 f"{self.result.replications} replications, seed {self.result.seed}"]
        if len(base) and base["failure"].notna().all():
            parts.append(f"base runs out of cash in {base['failure'].iloc[0]:.1%} of replications")
        if len(worst):
            parts.append(f"worst: {worst['stress'].iloc[0]} {worst['failure'].iloc[0]:.1%}")
        return "; ".join(parts) + ">"

    def _repr_html_(self) -> str:
        from .tidy import format_value, html_table

        t = self.table()
        t["ran out of cash"] = [format_value(x, "fraction") for x in t.get("failure", [])]
        t["working capital needed"] = [format_value(x, "pounds") for x in t.get("working_capital", [])]
        return html_table(t, ["label", "ran out of cash", "working capital needed"],
                          f"Stress test of {self.result.organisation} in {self.result.scenario}: {self.result.replications} "
                          f"replications (target {self.result.target:.0%}; money in pounds)")

    def plot(self, ax=None):
        """Tornado chart: each stress's chance of running out of cash against the base."""
        from .plots import tornado

        t = self.table().dropna(subset=["failure"])
        return tornado(t, ax=ax, title=f"Stress test of {self.result.organisation}")

    def save(self, folder: str | Path, *, overwrite: bool = False) -> Path:
        """Write the result as ``pbrsim stress --out`` does (docs/outputs.md: pbrsim's own files only)."""
        from ..store import manifest
        from ..stress.run import write_results

        man = manifest(None, self.result.seed, {"scenario": self.result.scenario, "organisation": self.result.organisation,
                                                "replications": self.result.replications,
                                                "made_by": "pbrsim Python API (StressTest.save)"})
        return Path(write_results(self.result, folder, man, overwrite=overwrite))

    def export(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write ``table()`` to a .csv, .parquet or .json file."""
        from .run_methods import export_frame

        return export_frame(self.table(), path, overwrite=overwrite)


def stress(
    scenario: "Scenario",
    organisation: str | None = None,
    *,
    replications: int = 200,
    seed: int = 0,
    target: float = 0.05,
    stresses: str | Path | None = None,
    combine: Iterable[str] = (),
    only: Iterable[str] | None = None,
    reverse: bool = False,
    extra_reserve: float = 0.0,
    workers: int | None = None,
    executor: str = "process",
) -> StressTest:
    """Stress-test ``organisation`` (default: the contract holder) of ``scenario`` in memory: the base and
    every stress on the same random numbers. ``stresses`` is a stresses file (docs/stress-testing.md);
    ``combine`` strings such as ``"shortfall_25,delay_3"`` also run stresses together. Raises
    ScenarioError for bad input before anything runs."""
    from ..stress.catalogue import contract_holder, load_stresses_file, parse_combine_option
    from ..stress.run import run_stress_test

    raw = scenario.to_dict()
    org = organisation or contract_holder(raw)
    sfile = load_stresses_file(stresses) if stresses else None
    result = run_stress_test(raw, org, source=f"scenario {scenario.name}", stresses_file=sfile,
                             combine_option=parse_combine_option(list(combine)), only=list(only) if only else None,
                             replications=replications, seed=seed, target=target, executor=executor, workers=workers,
                             reverse=reverse, extra_reserve=extra_reserve)
    return StressTest(result)
