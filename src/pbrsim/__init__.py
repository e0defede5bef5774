"""pbrsim: simulate payment-by-results contracts — client pathways, payments, cash flow and parking."""

from .scenario.schema import Scenario, ScenarioError, load_scenario
from .simulate import SimulationResult, simulate

__version__ = "0.1.0"
__all__ = ["Scenario", "ScenarioError", "SimulationResult", "load_scenario", "simulate", "__version__"]
