"""Public value: what outcomes are worth, to whom, against a counterfactual, by the Green Book (docs/value.md)."""
