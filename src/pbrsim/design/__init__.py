"""Contract design search: goal-seek one lever to a target, or search many levers for the best design under
solvency, equity and budget limits (``pbrsim design``; docs/design.md)."""
