"""Shared helpers: small scenarios built in code, so each test states what it varies."""

from __future__ import annotations

import copy
import os

import pytest
from hypothesis import HealthCheck, settings

# Property-based tests are derandomized in CI, so every run draws the same examples on any machine;
# HYPOTHESIS_PROFILE=explore draws new ones each run to hunt for bugs locally.
settings.register_profile("ci", derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.register_profile("explore", derandomize=False, deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

from pbrsim.scenario.schema import scenario_from_dict

BASE = {
    "name": "tiny",
    "months": 18,
    "referrals": {"rate": 20, "start": 0, "end": 10, "distribution": "poisson"},
    "segments": {"easy": {"share": 0.6}, "hard": {"share": 0.4}},
    "pathway": {
        "states": ["referred", "engaged", "job", "sustained", "dropout", "exited"],
        "initial_state": "referred",
        "absorbing": ["sustained", "dropout", "exited"],
        "exit_state": "exited",
        "max_months_on_programme": 12,
        "transitions": {
            "easy": {
                "full": {
                    "referred": {"engaged": 0.8, "referred": 0.1, "dropout": 0.1},
                    "engaged": {"job": 0.3, "engaged": 0.6, "dropout": 0.1},
                    "job": {"sustained": 0.4, "job": 0.5, "engaged": 0.1},
                },
                "minimal": {
                    "referred": {"engaged": 0.5, "referred": 0.3, "dropout": 0.2},
                    "engaged": {"job": 0.1, "engaged": 0.7, "dropout": 0.2},
                    "job": {"sustained": 0.3, "job": 0.5, "engaged": 0.2},
                },
            },
            "hard": {
                "full": {
                    "referred": {"engaged": 0.6, "referred": 0.2, "dropout": 0.2},
                    "engaged": {"job": 0.1, "engaged": 0.8, "dropout": 0.1},
                    "job": {"sustained": 0.3, "job": 0.5, "engaged": 0.2},
                },
                "minimal": {
                    "referred": {"engaged": 0.3, "referred": 0.4, "dropout": 0.3},
                    "engaged": {"job": 0.03, "engaged": 0.77, "dropout": 0.2},
                    "job": {"sustained": 0.2, "job": 0.5, "engaged": 0.3},
                },
            },
        },
    },
    "contract": {
        "value": 100000,
        "service_fee": {"share_of_value": 0.2, "schedule": "monthly", "lag": 1},
        "primary_outcome": "sustained",
        "payments": [
            {"name": "attach", "kind": "attachment", "state": "engaged", "tariff": 100, "lag": 0},
            {"name": "job_start", "kind": "milestone", "state": "job", "tariff": {"easy": 200, "hard": 400}, "lag": 2, "rejection": 0.1},
            {"name": "in_work", "kind": "sustainment", "states": ["job"], "max_months": 3, "tariff": 50, "lag": 1},
            {"name": "sustained", "kind": "outcome", "state": "sustained", "tariff": {"default": 1000, "hard": 2000}, "lag": 3, "rejection": 0.05},
        ],
    },
    "provider": {
        "name": "charity",
        "opening_cash": 20000,
        "overhead_per_month": 500,
        "cost_per_client_month": {"full": 60, "minimal": 15},
        "capacity": None,
        "credit": {"limit": None, "monthly_interest": 0.0},
    },
}


def override(d: dict, **changes) -> dict:
    """A deep copy of ``d`` with dotted-path changes; integer parts index lists, e.g. ``contract.payments.2.lag``."""
    d = copy.deepcopy(d)
    for path, value in changes.items():
        node = d
        *keys, last = path.split(".")
        for k in keys:
            node = node[int(k)] if isinstance(node, list) else node[k]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return d


def make(**changes) -> dict:
    """A deep copy of BASE with dotted-path overrides, e.g. make(**{"provider.capacity": 5})."""
    return override(BASE, **changes)


def scenario(**changes):
    return scenario_from_dict(make(**changes), "<test>")


@pytest.fixture
def base_dict():
    return make()


# Test files that take longest, longest first (measured with `pytest --durations=0` on a 2-core machine). Each file
# runs on one worker (`--dist loadfile`, so module fixtures are computed once) and a worker takes the next file in
# collection order when it runs out: starting the long files first lets the workers finish together instead of one
# of them running a long file alone at the end. Order only; nothing is skipped.
LONGEST_FIRST = ("test_executors.py", "test_export.py", "test_report.py", "test_invariants.py", "test_doc_snippets.py",
                 "test_cli.py", "test_design.py", "test_output_safety.py", "test_experiment.py", "test_validation.py",
                 "test_web.py", "test_web_browser.py", "test_stress.py", "test_golden.py", "test_hostile_input.py",
                 "test_calibrate.py", "test_batching.py", "test_python_api.py", "test_latent_classes.py",
                 "test_notebook.py", "test_value.py", "test_report_names.py")


def pytest_configure(config):
    # pytest-xdist (3.5 on) hands out the files with the most tests first, which would undo the order below;
    # 3.8 lets that be turned off (older versions keep their own order: slower, never wrong)
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its own order
