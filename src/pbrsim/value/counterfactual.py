"""The counterfactual: the same clients without the programme, on the same random numbers.

The counterfactual scenario keeps the referrals, segments, states and forced-exit rules of the
programme and replaces every segment's transition rows (full and minimal service alike) with
``value.counterfactual.transitions``; it has no payments and one costless provider that cannot fail.
Run with the programme's seed and replication numbers it draws the same referral counts and segments
(the referral and tie-break streams) and the same per-(month, client) transition uniforms, so client
i of replication r is the same person in both runs and the difference is the programme's effect.
"""

from __future__ import annotations

from ..scenario.schema import Scenario, scenario_from_dict

NO_PROGRAMME = "no_programme"


def counterfactual_scenario(sc: Scenario) -> Scenario:
    """The scenario's clients with the counterfactual transitions and no contract."""
    cf = sc.value.counterfactual
    rows = {g: cf.transitions[g] if g in cf.transitions else cf.transitions["default"] for g in sc.segments}
    pathway = sc.pathway.model_dump(exclude_unset=True)
    pathway["transitions"] = {g: {"full": r, "minimal": r} for g, r in rows.items()}
    data = {
        "name": f"{sc.name}_counterfactual",
        "months": sc.months,
        "currency": sc.currency,
        "referrals": sc.referrals.model_dump(exclude_unset=True),
        "segments": {g: seg.model_dump(exclude_unset=True) for g, seg in sc.segments.items()},
        "pathway": pathway,
        "contract": {},
        "provider": {"name": NO_PROGRAMME, "cost_per_client_month": {"full": 0.0, "minimal": 0.0}, "credit": {"limit": None}},
    }
    return scenario_from_dict(data, f"{sc.name}: value.counterfactual")
