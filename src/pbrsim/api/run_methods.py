"""What a simulation result offers in a notebook: a short repr, an HTML summary, tidy tables, charts, exports.

``pbrsim.simulate.SimulationResult`` inherits these; they read its ``model``, ``seed``, ``replications``,
``per_replication`` and ``monthly``. Money is in pounds in everything here (the run tables keep integer
pence, as written to Parquet).
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

HEADLINE = ("outcome_rate", "paid_total", "cost_per_outcome", "failed_any")  # the figures a repr names


class RunMethods:
    """Mixin of ``SimulationResult``: display, tidy tables, plots and exports (docs/python.md)."""

    # -- tidy tables ---------------------------------------------------------------------------------

    @cached_property
    def _tidy(self) -> "pd.DataFrame":
        from ..analysis.compare import summary_table
        from .tidy import tidy_summary

        name = self.model.scenario.name
        table = summary_table({name: self.per_replication}, [name], name)
        return tidy_summary(table, self._segments, self._organisations, self.model.scenario.currency)

    @property
    def _segments(self) -> list[str]:
        return list(self.model.scenario.segments)

    @property
    def _organisations(self) -> list[str]:
        return [o.name for o in self.model.scenario.organisation_specs]

    def summary_table(self) -> "pd.DataFrame":
        """One row per figure: metric, organisation, segment, item, label, unit (fraction, pounds, count,
        months), mean, 95% interval (lo, hi), 5th percentile and median where they apply."""
        return self._tidy.drop(columns=["diff", "diff_lo", "diff_hi", "pairs", "baseline"]).copy()

    def replications_long(self) -> "pd.DataFrame":
        """Every replication's figures in long format: replication, metric, organisation, segment, item,
        value (pounds for money) — the table ``replications_long.parquet`` of an experiment dataset."""
        from ..experiments.long_format import long_replications

        return long_replications(self.per_replication, self._segments, self._organisations)

    # -- display -------------------------------------------------------------------------------------

    def _headline(self) -> list[str]:
        from .tidy import format_value

        t = self._tidy
        out = []
        for figure in HEADLINE:
            row = t[t["figure"] == figure]
            if len(row):
                r = row.iloc[0]
                out.append(f"{r['label']} {format_value(r['mean'], r['unit'])}")
        return out

    def __repr__(self) -> str:
        sc = self.model.scenario
        return (f"<{type(self).__name__} {sc.name!r}: {self.replications} replications, seed {self.seed}; "
                + "; ".join(self._headline()) + ">")

    def _repr_html_(self) -> str:
        from .tidy import format_value, headline, html_table

        t = headline(self._tidy).copy()
        t["value"] = [format_value(m, u) for m, u in zip(t["mean"], t["unit"])]
        t["95% interval"] = [f"{format_value(lo, u)} to {format_value(hi, u)}" for lo, hi, u in zip(t["lo"], t["hi"], t["unit"])]
        sc = self.model.scenario
        return html_table(t, ["label", "value", "95% interval"],
                          f"{sc.name}: {self.replications} replications, seed {self.seed} (money in pounds)")

    # -- charts --------------------------------------------------------------------------------------

    def plot_cash(self, organisation: str | None = None, ax=None):
        """Cash fan of ``organisation`` (default: the contract holder): month-end cash over replications, in pounds."""
        from .plots import cash_fan

        specs = {o.name: o for o in self.model.scenario.organisation_specs}
        org = organisation or next(iter(specs))
        if org not in specs:
            raise ValueError(f"unknown organisation {org!r}; organisations are {list(specs)}")
        return cash_fan(self.monthly, org, specs[org].opening_cash, ax=ax)

    def plot_outcomes(self, ax=None):
        """Outcome rate by segment with 95% intervals."""
        from .plots import outcomes_by_segment

        return outcomes_by_segment(self._tidy, ax=ax, title=f"Outcomes by segment: {self.model.scenario.name}")

    # -- exports -------------------------------------------------------------------------------------

    def save(self, folder: str | Path, *, overwrite: bool = False) -> Path:
        """Write the run as ``pbrsim run`` does (Parquet tables, summary.json, manifest.json; docs/outputs.md):
        a folder holding files pbrsim did not write is refused unless ``overwrite`` (which still never
        changes them). ``pbrsim report FOLDER`` then draws its HTML report."""
        from ..store import manifest, write_folder

        sc = self.model.scenario
        digest = hashlib.sha256(json.dumps(sc.to_dict(), sort_keys=True, default=str).encode()).hexdigest()
        man = manifest(digest, self.seed, {"scenario": sc.name, "method": "montecarlo", "replications": self.replications,
                                           "made_by": "pbrsim Python API (SimulationResult.save)"})
        return Path(write_folder(folder, self.arrow_tables(), self.summary, man, overwrite=overwrite))

    def export(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write ``summary_table()`` to one file: .csv, .parquet or .json by its suffix (atomically; an
        existing file is replaced only with ``overwrite``)."""
        return export_frame(self.summary_table(), path, overwrite=overwrite)


def export_frame(df: "pd.DataFrame", path: str | Path, *, overwrite: bool = False) -> Path:
    """One table to a .csv, .parquet or .json file, atomically; refuses to replace a file unless ``overwrite``."""
    import io

    from ..store import write_file

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".json"):
        raise ValueError(f"{path}: write .csv, .parquet or .json")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    if suffix == ".csv":
        data = df.to_csv(index=False).encode()
    elif suffix == ".json":
        data = df.to_json(orient="records", indent=2).encode()
    else:
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        data = buf.getvalue()
    return write_file(path, data)
