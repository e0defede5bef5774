"""``pbrsim.design_search``: a contract design search, or a goal seek of one lever, in memory (docs/python.md).

The same search as ``pbrsim design`` (docs/design.md) with nothing written: the result holds the summary
the command would write as ``summary.json``, the table of designs assessed and the Pareto front.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


class DesignSearch:
    """The outcome of a design search or goal seek: ``summary`` (as ``summary.json``), ``table()`` of the
    designs assessed, ``front()`` (the Pareto front), ``chosen`` (the design chosen, or the answer)."""

    def __init__(self, summary: dict, designs: "pd.DataFrame | None"):
        self.summary = summary
        self._designs = designs

    @property
    def feasible(self) -> bool:
        return bool(self.summary.get("feasible"))

    @property
    def chosen(self) -> dict | None:
        """The chosen design's row (search), or the goal seek's answer; None when nothing met every constraint."""
        return self.summary.get("chosen") if self.summary["kind"] == "search" else self.summary.get("answer")

    def table(self) -> "pd.DataFrame":
        """Every design assessed, one row each (levers, figures with their intervals, feasibility)."""
        import pandas as pd

        if self._designs is not None:
            return self._designs
        return pd.DataFrame([{"value": c["value"], "met": c["met"], **{f"estimate_{k}": v for k, v in c["estimate"].items()}}
                             for c in self.summary.get("curve", [])])

    def front(self) -> "pd.DataFrame":
        """The Pareto front of a search (empty for a goal seek)."""
        import pandas as pd

        from ..design.summary import front_table

        return front_table(self.summary) if self.summary["kind"] == "search" else pd.DataFrame()

    def __repr__(self) -> str:
        name = self.summary["problem"]["name"]
        if self.summary["kind"] == "goal_seek":
            ans = self.summary.get("answer")
            found = ans is not None and self.summary.get("precision") is not None
            what = f"answer {ans['value']} ± {self.summary['precision']}" if found else f"no answer ({self.summary['status']})"
            return f"<DesignSearch goal seek {name}: {self.summary['target']['text']}: {what}>"
        effort = self.summary["effort"]
        return (f"<DesignSearch {name}: {'a design meets every constraint' if self.feasible else 'no design meets every constraint'}, "
                f"{effort['designs']} designs, {effort['replications_run']:,} replications>")

    def _repr_html_(self) -> str:
        from html import escape

        table = self.front() if self.summary["kind"] == "search" else self.table()
        return f"<p>{escape(repr(self))}</p>" + table.head(20).to_html(index=False)


def design_search(problem: str | Path, *, lever: str | None = None, target: str | None = None,
           range_: tuple[float, float] | None = None, step: float | None = None, seed: int | None = None,
           replications: int | None = None, verify_replications: int | None = None, executor: str = "process",
           workers: int | None = None) -> DesignSearch:
    """Search the design problem file ``problem``; or, with ``lever`` and ``target``, goal-seek that lever of the
    scenario file ``problem`` (``pbrsim design SCENARIO --lever PATH --target TARGET``). Nothing is written.
    Raises ``ScenarioError`` (a ``DesignError``) naming the file and field for a bad problem."""
    from dataclasses import replace

    from ..design.evaluate import Evaluator
    from ..design.goalseek import goal_seek
    from ..design.problem import goal_seek_problem, load_problem
    from ..design.run import is_goal_seek
    from ..design.search import Search
    from ..design.summary import designs_table, goal_seek_summary, search_summary

    if lever or target:
        if not (lever and target):
            raise ValueError("a goal seek needs both lever and target")
        pr = goal_seek_problem(problem, lever, target, range_=range_, step=step, seed=seed or 0,
                               replications=replications or 200, verify_replications=verify_replications or 500)
    else:
        pr = load_problem(problem)
        if seed is not None:
            pr = replace(pr, search=pr.search.model_copy(update={"seed": seed}))
        if verify_replications is not None:
            pr = replace(pr, verify=pr.verify.model_copy(update={"replications": verify_replications}))
    evaluator = Evaluator(pr.search.seed, executor=executor, workers=workers, chunk=pr.search.chunk)
    try:
        if is_goal_seek(pr):
            return DesignSearch(goal_seek_summary(goal_seek(pr, evaluator)), None)
        result = Search(pr, evaluator).run()
        return DesignSearch(search_summary(result), designs_table(result))
    finally:
        evaluator.close()
