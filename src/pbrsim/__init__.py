"""pbrsim: simulate payment-by-results contracts — client pathways, payments, cash flow and parking.

The public names are imported when first used (module ``__getattr__``), so that ``import pbrsim`` and the
command line start quickly: pandas, pyarrow, SimPy and scipy load only with the work that needs them.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING

__version__ = "0.2.0"
__all__ = ["Comparison", "DesignSearch", "Scenario", "ScenarioError", "SimulationResult", "StressTest", "compare",
           "design_search", "load_scenario", "simulate", "stress", "__version__"]

_LAZY = {
    "Scenario": "pbrsim.scenario.schema",
    "ScenarioError": "pbrsim.scenario.schema",
    "load_scenario": "pbrsim.scenario.schema",
    "SimulationResult": "pbrsim.simulate",
    "simulate": "pbrsim.simulate",
    "compare": "pbrsim.api.comparison",
    "Comparison": "pbrsim.api.comparison",
    "stress": "pbrsim.api.stress_test",
    "StressTest": "pbrsim.api.stress_test",
    "design_search": "pbrsim.api.design_search",  # (pbrsim.design is the package: the function has its own name)
    "DesignSearch": "pbrsim.api.design_search",
}

if TYPE_CHECKING:  # (simulate, compare and stress are left out: their modules write through store, which imports this package)
    from .scenario.schema import Scenario, ScenarioError, load_scenario


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pbrsim' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """Keeps ``pbrsim.simulate`` the function: importing the submodule ``pbrsim.simulate`` later would
    otherwise rebind the package attribute to the module (the module stays in ``sys.modules``)."""

    def __setattr__(self, name: str, value) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
