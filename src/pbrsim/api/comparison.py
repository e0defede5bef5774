"""Comparing designs in memory: ``pbrsim.compare`` runs every design on common random numbers and returns a
:class:`Comparison` (the figures of ``pbrsim compare``, as tidy tables, charts and exports; docs/python.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

if TYPE_CHECKING:
    import pandas as pd

    from ..scenario.schema import Scenario
    from ..simulate import SimulationResult


class Comparison:
    """Designs run on the same random numbers (replication r of every design sees the same referrals and
    draws), with paired differences from the baseline. ``comparison["name"]`` is that design's
    :class:`~pbrsim.simulate.SimulationResult`."""

    def __init__(self, results: dict[str, "SimulationResult"], baseline: str, seed: int, replications: int,
                 sweeps: dict[str, dict] | None = None, name: str = "comparison"):
        self.results, self.baseline, self.seed, self.replications = results, baseline, seed, replications
        self.sweeps, self.name = sweeps or {}, name
        self._table = None

    @property
    def designs(self) -> list[str]:
        return list(self.results)

    def __getitem__(self, design: str) -> "SimulationResult":
        return self.results[design]

    def __len__(self) -> int:
        return len(self.results)

    # -- tables ----------------------------------------------------------------------------------------

    def table(self) -> "pd.DataFrame":
        """One row per design x figure: metric, organisation, segment, item, label, unit (fraction, pounds,
        count, months), mean and 95% interval, the paired difference from the baseline (diff, diff_lo,
        diff_hi) and sweep values as typed columns at the end."""
        if self._table is None:
            from ..analysis.compare import summary_table
            from ..experiments.long_format import with_sweep_columns
            from .tidy import tidy_summary

            per_rep = {n: r.per_replication for n, r in self.results.items()}
            summary = summary_table(per_rep, self.designs, self.baseline)
            first = next(iter(self.results.values())).scenario
            segments = {s for r in self.results.values() for s in r.scenario.segments}
            orgs = {o.name for r in self.results.values() for o in r.scenario.organisation_specs}
            tidy = tidy_summary(summary, segments, orgs, first.currency)
            self._table = with_sweep_columns(tidy, "design", self.sweeps, at_end=True)
        return self._table.copy()

    def replications_long(self) -> "pd.DataFrame":
        """Every design's replications in long format: design, sweep columns, replication, metric,
        organisation, segment, item, value (pounds for money)."""
        import pandas as pd

        from ..experiments.long_format import with_sweep_columns

        parts = [r.replications_long().assign(design=n) for n, r in self.results.items()]
        df = pd.concat(parts, ignore_index=True)
        df = df[["design"] + [c for c in df.columns if c != "design"]]
        return with_sweep_columns(df, "design", self.sweeps)

    # -- display ---------------------------------------------------------------------------------------

    def __repr__(self) -> str:
        return (f"<Comparison {self.name!r}: {len(self)} designs ({', '.join(self.designs[:4])}"
                f"{', ...' if len(self) > 4 else ''}; baseline {self.baseline!r}), {self.replications} replications, seed {self.seed}>")

    def _repr_html_(self) -> str:
        from .tidy import format_value, headline, html_table

        t = headline(self.table())
        cells = {}
        for r in t.itertuples(index=False):
            text = format_value(r.mean, r.unit)
            if not r.baseline and r.diff == r.diff:  # a paired difference exists
                sign = "+" if r.diff >= 0 else ""
                d = f"{sign}{100 * r.diff:.1f} pp" if r.unit == "fraction" else f"{sign}{format_value(r.diff, r.unit)}"
                text += f" ({d})"
            cells.setdefault(r.label, {})[r.design] = text
        import pandas as pd

        grid = pd.DataFrame.from_dict(cells, orient="index").reindex(columns=self.designs).fillna("–").reset_index(names="figure")
        return html_table(grid, ["figure", *self.designs],
                          f"{self.name}: {len(self)} designs, {self.replications} replications, seed {self.seed} "
                          f"(difference from {self.baseline} in brackets; money in pounds)")

    # -- charts ----------------------------------------------------------------------------------------

    def plot(self, figure: str = "outcome_rate", *, differences: bool = True, ax=None):
        """One figure (a summary name such as ``outcome_rate``, ``paid_total`` or ``failed[charity]``) across
        designs: paired differences from the baseline with 95% intervals, or the values (``differences=False``)."""
        from .plots import comparison

        t = self.table()
        rows = t[t["figure"] == figure]
        if rows.empty:
            raise ValueError(f"no figure {figure!r}; figures are {sorted(t['figure'].unique())}")
        return comparison(t, figure, rows["label"].iloc[0], rows["unit"].iloc[0], ax=ax, differences=differences)

    def plot_cash(self, organisation: str | None = None, ax=None):
        """Cash fans of every design for one organisation, side by side."""
        import matplotlib.pyplot as plt

        if ax is None:
            fig, ax = plt.subplots(1, len(self), figsize=(4 * len(self), 3.5), sharey=True, squeeze=False)
            ax = ax[0]
        for a, (name, r) in zip(ax, self.results.items()):
            r.plot_cash(organisation, ax=a)
            a.set_title(name)
        return ax

    # -- exports ---------------------------------------------------------------------------------------

    def export(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write ``table()`` to a .csv, .parquet or .json file (atomically; replaces a file only with ``overwrite``)."""
        from .run_methods import export_frame

        return export_frame(self.table(), path, overwrite=overwrite)

    def export_replications(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write ``replications_long()`` to a .csv, .parquet or .json file."""
        from .run_methods import export_frame

        return export_frame(self.replications_long(), path, overwrite=overwrite)


def compare(
    designs: "Mapping[str, Scenario] | Sequence[Scenario] | str | Path",
    *,
    seed: int | None = None,
    replications: int | None = None,
    baseline: str | None = None,
    workers: int | None = 1,
    executor: str = "process",
    progress: Callable[[int], None] | None = None,
) -> Comparison:
    """Run designs side by side in memory and compare them with the baseline (default: the first design).

    ``designs`` is a mapping ``{name: scenario}``, a list of scenarios (named by their ``name``), or the
    path of an experiment file (its designs and sweeps; its seed and replications unless given here).
    Replication r of every design uses the same random numbers, so differences are paired. ``workers``
    processes (None: one per core) give the same figures as one.
    """
    from ..simulate import simulate

    sweeps: dict[str, dict] = {}
    name = "comparison"
    if isinstance(designs, (str, Path)):
        from ..experiments.experiment import load_experiment

        exp = load_experiment(designs)
        name = exp.name
        scenarios = {d.name: d.scenario for d in exp.designs}
        sweeps = {d.name: d.sweep for d in exp.designs if d.sweep}
        baseline = baseline or exp.baseline.name
        seed = exp.seed if seed is None else seed
        replications = exp.replications if replications is None else replications
    elif isinstance(designs, Mapping):
        scenarios = dict(designs)
    else:
        scenarios = {}
        for sc in designs:
            if sc.name in scenarios:
                raise ValueError(f"two designs are named {sc.name!r}: pass a mapping {{name: scenario}} or vary(..., name=...)")
            scenarios[sc.name] = sc
    if not scenarios:
        raise ValueError("compare needs at least one design")
    baseline = baseline or next(iter(scenarios))
    if baseline not in scenarios:
        raise ValueError(f"baseline {baseline!r} is not one of the designs {list(scenarios)}")
    seed = 0 if seed is None else seed
    replications = 100 if replications is None else replications
    results = {n: simulate(sc, seed=seed, replications=replications, progress=progress, workers=workers, executor=executor)
               for n, sc in scenarios.items()}
    return Comparison(results, baseline, seed, replications, sweeps, name)
