"""Field-path overrides: keys, list indices, [name=...] selectors, removal, and the errors for bad paths."""

from __future__ import annotations

import copy

import pytest

from pbrsim.scenario.overrides import PathError, apply_overrides, get_value, parse_path
from pbrsim.scenario.schema import ScenarioError, scenario_from_dict
from tests.conftest import make

RAW = {
    "contract": {
        "service_fee": {"share_of_value": 0.2, "lag": 1},
        "payments": [
            {"name": "job_start", "tariff": {"easy": 200, "hard": 400}},
            {"name": "sustained", "tariff": 1000},
        ],
    },
    "provider": {"capacity": None},
}


def test_sets_keys_list_indices_and_named_items_without_touching_the_input():
    before = copy.deepcopy(RAW)
    out = apply_overrides(RAW, {
        "contract.service_fee.share_of_value": 0.5,
        "contract.payments[0].tariff.hard": 450,
        "contract.payments[name=sustained].tariff": {"easy": 900, "hard": 1800},
        "contract.payments[-1].lag": 3,
        "provider.capacity": 25,
    }, "exp.yaml")
    assert out["contract"]["service_fee"] == {"share_of_value": 0.5, "lag": 1}
    assert out["contract"]["payments"][0]["tariff"] == {"easy": 200, "hard": 450}
    assert out["contract"]["payments"][1] == {"name": "sustained", "tariff": {"easy": 900, "hard": 1800}, "lag": 3}
    assert out["provider"]["capacity"] == 25
    assert RAW == before


def test_set_values_are_copies_not_shared_objects():
    tariff = {"easy": 1, "hard": 2}
    out = apply_overrides(RAW, {"contract.payments[0].tariff": tariff}, "exp.yaml")
    tariff["easy"] = 99
    assert out["contract"]["payments"][0]["tariff"]["easy"] == 1


def test_missing_keys_and_mappings_are_added_for_the_schema_to_judge():
    out = apply_overrides({"contract": {"service_fee": None}}, {"contract.service_fee.total": 5000, "contract.cap": 1}, "e")
    assert out == {"contract": {"service_fee": {"total": 5000}, "cap": 1}}


def test_remove_happens_before_set_and_deletes_named_items():
    out = apply_overrides(RAW, {"contract.payments[0].tariff": 10}, "e",
                          remove=["contract.service_fee", "contract.payments[name=job_start]"])
    assert "service_fee" not in out["contract"]
    assert out["contract"]["payments"] == [{"name": "sustained", "tariff": 10}]


def test_selectors_accept_quotes_and_spaces():
    assert get_value(RAW, "contract.payments[ name = 'sustained' ].tariff") == 1000
    assert [str(s) for s in parse_path("a.b[2][name=x].c")] == ["a", "b", "[2]", "[name=x]", "c"]


@pytest.mark.parametrize("path, message", [
    ("contract.payments[name=nope].tariff", "no item of contract.payments has name = 'nope'; names are ['job_start', 'sustained']"),
    ("contract.payments[5].tariff", "contract.payments has 2 items; index 5 is out of range"),
    ("contract.payments.tariff", "contract.payments is a list, not a mapping, so it has no field 'tariff'"),
    ("contract.service_fee[0]", "contract.service_fee is a mapping, not a list, so [0] cannot select an item"),
    ("contract.payments[1].tariff.hard", "contract.payments[1].tariff is a number, not a mapping, so it has no field 'hard'"),
    ("contract..cap", "cannot read field path 'contract..cap'"),
    ("contract.payments[name]", "cannot read selector [name]"),
    ("contract.nothing[0]", "contract.nothing is not set"),
])
def test_bad_paths_name_the_file_the_path_and_why(path, message):
    with pytest.raises(ScenarioError) as info:
        apply_overrides(RAW, {path: 1}, "exp.yaml")
    assert info.value.source == "exp.yaml"
    [(where, rule)] = info.value.problems
    assert where == path
    assert message in rule
    assert str(info.value).startswith(f"exp.yaml: {path}: ")


def test_every_bad_path_is_reported_at_once():
    with pytest.raises(ScenarioError) as info:
        apply_overrides(RAW, {"a.b[0]": 1, "contract.payments[7]": 2}, "e", remove=["contract.cap"])
    assert [p for p, _ in info.value.problems] == ["remove contract.cap", "a.b[0]", "contract.payments[7]"]


def test_ambiguous_name_selector_is_refused():
    raw = {"items": [{"name": "a"}, {"name": "a"}]}
    with pytest.raises(ScenarioError, match="2 items of items have name = 'a'; use an"):
        apply_overrides(raw, {"items[name=a].x": 1}, "e")


def test_parse_path_rejects_empty():
    with pytest.raises(PathError):
        parse_path("  ")


def test_overridden_scenarios_are_validated_like_files():
    raw = make()
    ok = scenario_from_dict(apply_overrides(raw, {"contract.payments[name=sustained].tariff.hard": 2500}, "e"), "e")
    assert ok.contract.payments[3].tariff == {"default": 1000, "hard": 2500}
    with pytest.raises(ScenarioError, match=r"contract.service_fee.share_of_value: Input should be less than or equal to 1"):
        scenario_from_dict(apply_overrides(raw, {"contract.service_fee.share_of_value": 1.2}, "e"), "e")


def test_a_path_changes_only_the_item_it_names_when_the_file_reused_a_block_with_an_alias():
    # supply_chain files write a subcontractor's terms once (&outcome_terms) and alias them for the others
    from pathlib import Path

    from pbrsim.scenario.schema import load_raw

    raw = load_raw(Path(__file__).resolve().parents[1] / "scenarios" / "supply_chain" / "outcome_pass_through.yaml")
    out = apply_overrides(raw, {"organisations[name=east_charity].terms.pass_through.service_fee": 0.5}, "x")
    shares = {o["name"]: o["terms"]["pass_through"]["service_fee"] for o in out["organisations"] if "terms" in o}
    assert shares == {"east_charity": 0.5, "west_charity": 0.0, "complex_needs_specialist": 0.0}
