"""Scenario validation: one deliberately broken file per error message, the CLI's handling of them, and
property tests on randomly built scenarios.

Each file in ``fixtures/broken/`` is ``fixtures/valid_small.yaml`` with exactly one thing wrong, said
in the ``# BROKEN:`` comment at its top. ``EXPECTED`` gives, per file, the exact dotted field path the
problem must be reported at ("" for problems with the file as a whole) and a regular expression that
the rule text must match. Adding a broken file without an entry here (or the reverse) fails
``test_every_fixture_has_an_expectation``.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pbrsim
from pbrsim.cli.main import main
from pbrsim.scenario.schema import DROPPED_STATE, SERVICE_LEVELS, ScenarioError, scenario_from_dict

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
BROKEN = FIXTURES / "broken"
VALID = FIXTURES / "valid_small.yaml"
SHIPPED = sorted((HERE.parent / "scenarios").glob("*.yaml"))

UNKNOWN_FIELD = r"^unknown field"
UNKNOWN_STATE = r"^unknown state"
NOT_NEGATIVE = r"greater than or equal to 0"

# fixture stem -> (exact dotted path, regex the rule must match)
EXPECTED: dict[str, tuple[str, str]] = {
    # --- YAML level: the file as a whole (path "") -----------------------------------------------
    "invalid_yaml_syntax": ("", r"^not valid YAML at line 24, column \d+: .*flow mapping"),
    "duplicate_key": ("", r"^not valid YAML at line 4, column 1: duplicate key 'months' \(first at line 3\)"),
    "duplicate_key_nested": ("", r"^not valid YAML at line 66, column \d+: duplicate key 'opening_cash' \(first at line 65\)"),
    "top_level_list": ("", r"must hold a mapping"),
    "empty_file": ("", r"must hold a mapping"),
    # --- schema: unknown, missing and mistyped fields --------------------------------------------
    "unknown_key_top_level": ("curency", UNKNOWN_FIELD),
    "unknown_key_nested": ("provider.opening_cahs", UNKNOWN_FIELD),
    "unknown_key_in_payment": ("contract.payments[1].tarif", UNKNOWN_FIELD),
    "missing_required_field": ("provider.cost_per_client_month", r"^required field is missing"),
    "months_zero": ("months", r"greater than or equal to 1"),
    "wrong_type_string_for_number": ("provider.opening_cash", r"valid number"),
    "wrong_type_string_probability": ("pathway.transitions.complex.full.referred.engaged", r"valid number"),
    # YAML 1.1 reads `no` as false; pydantic's lax mode then turns it into capacity 0 (nobody served)
    "wrong_type_bool_for_number": ("provider.capacity", r"valid integer"),
    # --- money must not be negative (nor NaN / infinite) ----------------------------------------
    "negative_opening_cash": ("provider.opening_cash", NOT_NEGATIVE),
    "negative_overhead": ("provider.overhead_per_month", NOT_NEGATIVE),
    "negative_cost": ("provider.cost_per_client_month.full", NOT_NEGATIVE),
    "negative_contract_value": ("contract.value", NOT_NEGATIVE),
    "negative_referral_rate": ("referrals.rate", NOT_NEGATIVE),
    "negative_tariff": ("contract.payments[1].tariff", r"must not be negative"),
    # the offending segment's entry, as for an unknown segment in a tariff (tariff_unknown_segment)
    "negative_tariff_per_segment": ("contract.payments[0].tariff.complex", r"must not be negative"),
    "tariff_nan": ("contract.payments[2].tariff", r"finite"),
    "tariff_infinite": ("contract.payments[2].tariff", r"finite"),
    "rejection_above_one": ("contract.payments[2].rejection", r"less than or equal to 1"),
    # --- pathway ---------------------------------------------------------------------------------
    "row_not_summing_to_one": ("pathway.transitions.complex.full.engaged", r"^row must sum to 1 \(it sums to 1\.1\)"),
    "probability_above_one": ("pathway.transitions.easy.full.referred.engaged", r"^probability 1\.2 must be between 0 and 1"),
    "transition_to_unknown_state": ("pathway.transitions.easy.minimal.engaged.disengagd", UNKNOWN_STATE + r" 'disengagd'"),
    "transition_from_unknown_state": ("pathway.transitions.easy.full.job_strat", UNKNOWN_STATE + r" 'job_strat'"),
    "missing_row_non_absorbing": ("pathway.transitions.complex.minimal", r"^no row for non-absorbing state 'job_start'"),
    "absorbing_row_not_self_loop": ("pathway.transitions.easy.full.exited", r"'exited' is absorbing, so its row must be"),
    "exit_state_not_absorbing": ("pathway.exit_state", r"must be listed in pathway\.absorbing"),
    "max_months_without_exit_state": ("pathway.exit_state", r"^required when max_months_on_programme is set"),
    "initial_state_unknown": ("pathway.initial_state", UNKNOWN_STATE + r" 'refered'"),
    "initial_state_absorbing": ("pathway.initial_state", r"must not be absorbing"),
    # --- segments --------------------------------------------------------------------------------
    "segment_shares_not_summing": ("segments", r"^segment shares must sum to 1 \(they sum to 0\.9\)"),
    "transitions_unknown_segment": ("pathway.transitions.complx", r"^unknown segment 'complx'"),
    "tariff_missing_segment": ("contract.payments[0].tariff", r"^no tariff for segments \['complex'\].*default"),
    "tariff_unknown_segment": ("contract.payments[0].tariff.complx", r"^unknown segment 'complx'"),
    # --- referrals -------------------------------------------------------------------------------
    "referrals_rate_and_monthly": ("referrals", r"exactly one of `monthly`.* or `rate`"),
    "referrals_end_after_contract": ("referrals.end", r"after the contract end"),
    "referrals_start_after_contract": ("referrals.start", r"contract"),
    # --- contract --------------------------------------------------------------------------------
    "payment_unknown_state": ("contract.payments[2].state", UNKNOWN_STATE + r" 'sustaned'"),
    "sustainment_unknown_state": ("contract.payments[1].states[0]", UNKNOWN_STATE + r" 'in_job'"),
    "sustainment_without_max_months": ("contract.payments[1].max_months", r"need `max_months`"),
    "duplicate_payment_name": ("contract.payments[1].name", r"'job_start' is used more than once"),
    "primary_outcome_unknown": ("contract.primary_outcome", UNKNOWN_STATE + r" 'sustaned'"),
    "service_fee_share_and_total": ("contract.service_fee", r"exactly one of `share_of_value`, `total` or `amounts`"),
    "share_of_value_without_value": ("contract.value", r"^required when service_fee\.share_of_value is used"),
    # --- one file per further documented rule (docs/scenarios.md, "Summary of the validation rules") ----
    "referrals_monthly_too_long": ("referrals.monthly", r"19 months given but the contract lasts 18"),
    "referrals_monthly_negative": ("referrals.monthly", r"must not be negative"),
    "referrals_end_before_start": ("referrals.end", r"end must not be before start"),
    "referrals_start_with_monthly": ("referrals", r"only apply to `rate`"),
    "referrals_distribution_unknown": ("referrals.distribution", r"'poisson' or 'fixed'"),
    "segments_empty": ("segments", r"at least 1 item"),
    "segment_share_above_one": ("segments.easy.share", r"less than or equal to 1"),
    "states_only_one": ("pathway.states", r"at least 2 items"),
    "states_duplicate": ("pathway.states", r"must be unique"),
    "state_reserved": ("pathway.states", r"reserved"),
    "absorbing_unknown_state": ("pathway.absorbing[3]", r"unknown state 'retired'"),
    "exit_state_unknown": ("pathway.exit_state", r"unknown state 'left'"),
    "service_state_absorbing": ("pathway.service_states[2]", r"absorbing"),
    "service_state_unknown": ("pathway.service_states[1]", r"unknown state 'engagd'"),
    "exit_applies_to_without_max_months": ("pathway.exit_applies_to", r"only applies with max_months_on_programme"),
    "exit_applies_to_absorbing": ("pathway.exit_applies_to[1]", r"absorbing"),
    "transitions_missing_segment": ("pathway.transitions", r"no transitions for segment 'complex'"),
    "transition_probability_negative": ("pathway.transitions.easy.full.referred.disengaged", r"between 0 and 1"),
    "max_months_on_programme_zero": ("pathway.max_months_on_programme", r"greater than or equal to 1"),
    "fee_amounts_too_long": ("contract.service_fee.amounts", r"19 months given but the contract lasts 18"),
    "fee_amounts_negative": ("contract.service_fee.amounts", r"must not be negative"),
    "fee_schedule_month_outside": ("contract.service_fee.schedule[2]", r"month 18 is outside the contract"),
    "fee_schedule_empty": ("contract.service_fee.schedule", r"at least one month"),
    "fee_schedule_unknown": ("contract.service_fee.schedule", r"'monthly', 'quarterly' or 'upfront'"),
    "fee_share_above_one": ("contract.service_fee.share_of_value", r"less than or equal to 1"),
    "volume_band_upfront": ("contract.service_fee.volume_band", r"not `upfront`"),
    "volume_band_expected_zero": ("contract.service_fee.volume_band.expected_per_year", r"must be positive"),
    "volume_band_width_above_one": ("contract.service_fee.volume_band.band", r"less than or equal to 1"),
    "payment_name_reserved": ("contract.payments[0].name", r"'service_fee' is reserved"),
    "payment_state_and_states": ("contract.payments[0].state", r"not both"),
    "payment_without_state": ("contract.payments[2].state", r"need `state`"),
    "milestone_with_max_months": ("contract.payments[0].max_months", r"only applies to sustainment"),
    "sustainment_without_states": ("contract.payments[1].states", r"need `states`"),
    "sustainment_with_state": ("contract.payments[1].state", r"use `states`, not `state`"),
    "payment_kind_unknown": ("contract.payments[2].kind", r"'attachment', 'milestone', 'outcome' or 'sustainment'"),
    "payment_without_tariff": ("contract.payments[2].tariff", r"exactly one of `tariff` or `tariff_by_year`"),
    "tariff_and_tariff_by_year": ("contract.payments[2].tariff", r"exactly one of"),
    "year_basis_without_tariff_by_year": ("contract.payments[2].year_basis", r"only applies with `tariff_by_year`"),
    "tariff_by_year_empty": ("contract.payments[2].tariff_by_year", r"at least 1 item"),
    "deadweight_one": ("contract.payments[2].deadweight", r"less than 1"),
    "lag_negative": ("contract.payments[2].lag", r"greater than or equal to 0"),
    "sustainment_max_months_zero": ("contract.payments[1].max_months", r"greater than or equal to 1"),
    "cohort_name_clash": ("contract.cohort_payments[0].name", r"already the name of a payment line"),
    "cohort_event_state_unknown": ("contract.cohort_payments[0].event_state", r"unknown state 'sustaned'"),
    "cohort_overlap": ("contract.cohort_payments[0].cohorts[1].start", r"must not overlap"),
    "cohort_end_not_after_start": ("contract.cohort_payments[0].cohorts[1].end", r"end must be after start"),
    "cohort_end_after_contract": ("contract.cohort_payments[0].cohorts[1].end", r"after the contract end"),
    "cohort_window_beyond_contract": ("contract.cohort_payments[0].cohorts[1].end", r"window ends after the contract"),
    "cohort_baseline_zero": ("contract.cohort_payments[0].baseline_rate", r"greater than 0"),
    "cohort_without_cohorts": ("contract.cohort_payments[0].cohorts", r"at least 1 item"),
    "provider_and_organisations": ("provider", r"exactly one of `provider`"),
    "provider_name_commissioner": ("provider.name", r"name of another party"),
    "capacity_negative": ("provider.capacity", r"greater than or equal to 0"),
    "credit_interest_negative": ("provider.credit.monthly_interest", r"greater than or equal to 0"),
    "credit_limit_negative": ("provider.credit.limit", r"greater than or equal to 0"),
    "policy_unknown": ("provider.policy", r"holistic"),
    "policy_parameter_of_other_policy": ("provider.policy.needs_first.monthly_discount_rate", r"^unknown field"),
    "cash_stressed_thresholds_reversed": ("provider.policy.cash_stressed", r"comfortable_cash must be at least stressed_cash"),
    "discount_rate_above_one": ("provider.policy.return_maximising.monthly_discount_rate", r"less than or equal to 1"),
    "organisations_two_primes": ("organisations", r"exactly one organisation must have role: prime \(found 2\)"),
    "organisations_duplicate_name": ("organisations[1].name", r"'prime_co' is used more than once"),
    "organisation_name_reserved": ("organisations[1].name", r"'lender' is reserved"),
    "subcontractor_without_terms": ("organisations[1].terms", r"needs `terms`"),
    "prime_with_terms": ("organisations[0].terms", r"the prime has no terms"),
    "pass_through_unknown_kind": ("organisations[1].terms.pass_through", r"unknown payment kind 'bonus'"),
    "pass_through_share_above_one": ("organisations[1].terms.pass_through", r"between 0 and 1"),
    "management_fee_above_one": ("organisations[1].terms.management_fee", r"less than or equal to 1"),
    "on_failure_to_unknown": ("organisations[1].on_failure.to", r"unknown organisation 'other_co'"),
    "on_failure_to_itself": ("organisations[1].on_failure.to", r"the failed organisation itself"),
    "on_failure_drop_with_gap": ("organisations[1].on_failure", r"only apply to action: transfer"),
    "on_failure_restart_absorbing": ("organisations[1].on_failure.restart_state", r"must not be absorbing"),
    "supply_chain_with_provider": ("supply_chain", r"only applies with `organisations`"),
    "allocation_shares_missing": ("supply_chain.allocation.shares", r"required for method fixed_shares"),
    "allocation_shares_not_summing": ("supply_chain.allocation.shares", r"shares must sum to 1"),
    "allocation_unknown_organisation": ("supply_chain.allocation.shares.sub", r"unknown organisation 'sub'"),
    "allocation_by_segment_missing": ("supply_chain.allocation.by_segment", r"required for method by_segment"),
    "allocation_by_segment_missing_segment": ("supply_chain.allocation.by_segment", r"no allocation for segment 'complex'"),
    "allocation_method_unknown": ("supply_chain.allocation.method", r"'fixed_shares', 'by_segment' or 'performance'"),
    "extra_lag_negative": ("organisations[1].terms.extra_lag", r"greater than or equal to 0"),
    "finance_investor_is_commissioner": ("finance.investor", r"name of another party"),
    "finance_unknown_organisation": ("finance.organisation", r"unknown organisation 'other_charity'"),
    "finance_cash_floor_upfront": ("finance.cash_floor", r"only applies with drawdown: as_needed"),
    "finance_return_above_one": ("finance.annual_return", r"less than or equal to 1"),
    "finance_repayment_share_zero": ("finance.repayment_share", r"greater than 0"),
    "finance_without_commitment": ("finance.commitment", r"required field is missing"),
    "reporting_share_above_one": ("reporting.dropped_full_service_share", r"less than or equal to 1"),
    "months_float": ("months", r"valid integer"),
    "name_not_text": ("name", r"valid string"),
}

# Extra problems some single mistakes legitimately cause (checked so nothing unexpected creeps in).
ALSO_EXPECTED: dict[str, set[str]] = {
    "unknown_key_in_payment": {"contract.payments[1].tariff"},  # the misspelt field is then missing
    "transition_from_unknown_state": {"pathway.transitions.easy.full"},  # job_start now has no row
    "transitions_unknown_segment": {"pathway.transitions"},  # 'complex' now has no transitions
    "probability_above_one": {"pathway.transitions.easy.full.referred.disengaged"},  # -0.2 keeps the sum at 1
    "duplicate_payment_name": {"contract.payments[0].name"},
    "segments_empty": {"pathway.transitions.complex", "pathway.transitions.easy"},
    "segment_share_above_one": {"segments.complex.share"},
    "transition_probability_negative": {"pathway.transitions.easy.full.referred.engaged"},
    "tariff_by_year_empty": {"contract.payments[2].tariff"},
    "organisations_duplicate_name": {"organisations[0].name"},
}

YAML_LEVEL = {"invalid_yaml_syntax": "line 24", "duplicate_key": "line 4", "duplicate_key_nested": "line 66"}

CASES = sorted(EXPECTED)


def fixture(stem: str) -> Path:
    return BROKEN / f"{stem}.yaml"


def load_error(path: Path) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        pbrsim.load_scenario(path)
    return info.value


def matching(problems, path: str, pattern: str) -> list[tuple[str, str]]:
    return [(p, rule) for p, rule in problems if p == path and re.search(pattern, rule)]


def show(problems) -> str:
    return "\n".join(f"  {p!r}: {rule}" for p, rule in problems) or "  (none)"


# --------------------------------------------------------------------------------------------------
# The fixture folder itself


def test_valid_base_fixture_validates():
    sc = pbrsim.load_scenario(VALID)
    assert sc.name == "valid_small"


def test_every_fixture_has_an_expectation():
    on_disk = {p.stem for p in BROKEN.glob("*.yaml")}
    assert on_disk == set(EXPECTED), (
        f"without an expectation: {sorted(on_disk - set(EXPECTED))}; "
        f"expected but missing on disk: {sorted(set(EXPECTED) - on_disk)}")
    assert not list(BROKEN.glob("*.yml")), "use the .yaml extension"


@pytest.mark.parametrize("stem", CASES)
def test_fixture_says_what_is_wrong(stem):
    first = fixture(stem).read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# BROKEN: ") and len(first) > len("# BROKEN: ") + 10, first


# --------------------------------------------------------------------------------------------------
# load_scenario: one test per error message


@pytest.mark.parametrize("stem", CASES)
def test_broken_file_reports_path_and_rule(stem):
    path, pattern = EXPECTED[stem]
    exc = load_error(fixture(stem))
    assert matching(exc.problems, path, pattern), (
        f"{stem}: expected a problem at {path!r} matching /{pattern}/; got:\n{show(exc.problems)}")
    allowed = {path} | ALSO_EXPECTED.get(stem, set())
    unexpected = [(p, r) for p, r in exc.problems if p not in allowed]
    assert not unexpected, f"{stem}: one mistake, but also reported:\n{show(unexpected)}"


@pytest.mark.parametrize("stem", CASES)
def test_broken_file_message_names_the_file(stem):
    f = fixture(stem)
    exc = load_error(f)
    message = str(exc)
    assert f.name in message
    assert exc.source == str(f)
    # every problem is one "FILE: path: rule" entry (a rule may run on over several lines)
    assert message.startswith(f"{f}: ")
    assert message.count(f"{f}: ") == len(exc.problems)


def test_missing_file():
    f = BROKEN / "no_such_scenario.yaml"
    assert not f.exists()
    exc = load_error(f)
    assert exc.problems == [("", "cannot read file: No such file or directory")]
    assert str(exc) == f"{f}: cannot read file: No such file or directory"


@pytest.mark.parametrize("stem", sorted(YAML_LEVEL))
def test_yaml_errors_point_at_the_line_in_the_file(stem):
    """YAML errors give the line and column; they must not point at '<unicode string>' (the text
    handed to the parser) instead of the file."""
    exc = load_error(fixture(stem))
    (path, rule), = exc.problems
    assert path == ""
    assert YAML_LEVEL[stem] in rule
    assert "<unicode string>" not in rule, rule


# --------------------------------------------------------------------------------------------------
# The command line


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_reported(stderr: str, file: Path | str, path: str, pattern: str):
    """stderr holds a line 'FILE: path: rule' (or 'FILE: rule' for the file as a whole), whole on one line."""
    prefix = f"{file}: {path}: " if path else f"{file}: "
    lines = [ln.strip() for ln in stderr.splitlines()]
    hits = [ln for ln in lines if ln.startswith(prefix) and re.search(pattern, ln[len(prefix):])]
    assert hits, f"no line starting {prefix!r} and matching /{pattern}/ in stderr:\n{stderr}"


@pytest.mark.parametrize("stem", CASES)
def test_cli_validate_broken_exits_2_naming_file_field_and_rule(stem):
    path, pattern = EXPECTED[stem]
    f = fixture(stem)
    result = invoke("validate", f)
    assert result.exit_code == 2, result.output
    assert_reported(result.stderr, f, path, pattern)
    assert "OK" not in result.stdout


def test_cli_validate_missing_file():
    f = BROKEN / "no_such_scenario.yaml"
    result = invoke("validate", f)
    assert result.exit_code == 2
    assert_reported(result.stderr, f, "", r"^cannot read file")


def test_cli_validate_reports_every_file():
    good, bad = VALID, fixture("row_not_summing_to_one")
    result = invoke("validate", good, bad)
    assert result.exit_code == 2
    assert f"{good}: OK" in result.stdout
    assert_reported(result.stderr, bad, *EXPECTED["row_not_summing_to_one"])
    assert str(good) not in result.stderr


@pytest.mark.parametrize("stem", CASES + ["<missing>"])
def test_cli_run_broken_exits_2_and_writes_nothing(stem, tmp_path):
    f = BROKEN / "no_such_scenario.yaml" if stem == "<missing>" else fixture(stem)
    out = tmp_path / "out"
    result = invoke("run", f, "--out", out, "-n", 2, "--quiet")
    assert result.exit_code == 2, result.output
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [], "no temporary or partial folders either"
    assert f.name in result.stderr
    assert "Nothing was run or written" in result.stderr


def test_cli_run_prints_each_problem_on_one_line(tmp_path):
    """`pbrsim run` must print 'FILE: path: rule' lines like `pbrsim validate`, unwrapped, also when
    stderr is not a terminal (CI logs, pipes), so they can be grepped."""
    f = fixture("transition_to_unknown_state")
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.run([sys.executable, "-m", "pbrsim", "run", str(f), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert not (tmp_path / "out").exists()
    assert_reported(proc.stderr, f, *EXPECTED["transition_to_unknown_state"])


def test_cli_validate_every_shipped_scenario():
    assert SHIPPED, "no scenarios/*.yaml found"
    result = invoke("validate", *SHIPPED)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    for f in SHIPPED:
        assert f"{f}: OK" in result.stdout


# --------------------------------------------------------------------------------------------------
# Property tests: random small valid scenarios validate; breaking one row is reported at that row

NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True).filter(lambda s: s not in (DROPPED_STATE, "default"))


@st.composite
def distribution(draw, support: list[str]) -> dict[str, float]:
    """A probability row over a non-empty subset of ``support``."""
    chosen = draw(st.lists(st.sampled_from(support), min_size=1, max_size=len(support), unique=True))
    weights = draw(st.lists(st.integers(1, 1000), min_size=len(chosen), max_size=len(chosen)))
    total = sum(weights)
    return {s: w / total for s, w in zip(chosen, weights)}


@st.composite
def valid_scenarios(draw) -> dict:
    n_states = draw(st.integers(2, 6))
    states = draw(st.lists(NAMES, min_size=n_states, max_size=n_states, unique=True))
    n_absorbing = draw(st.integers(0, n_states - 1))
    active, absorbing = states[: n_states - n_absorbing], states[n_states - n_absorbing:]
    n_segments = draw(st.integers(1, 4))
    segments = draw(st.lists(NAMES, min_size=n_segments, max_size=n_segments, unique=True))
    weights = draw(st.lists(st.integers(1, 100), min_size=n_segments, max_size=n_segments))
    months = draw(st.integers(1, 60))

    transitions = {}
    for seg in segments:
        transitions[seg] = {}
        for level in SERVICE_LEVELS:
            rows = {s: draw(distribution(states)) for s in active}
            for s in absorbing:
                if draw(st.booleans()):  # absorbing rows may be given as a self-loop or omitted
                    rows[s] = {s: 1.0}
            transitions[seg][level] = rows
    pathway = {"states": states, "initial_state": states[0], "absorbing": absorbing, "transitions": transitions}
    if absorbing and draw(st.booleans()):
        pathway["exit_state"] = draw(st.sampled_from(absorbing))
        pathway["max_months_on_programme"] = draw(st.integers(1, 36))

    if draw(st.booleans()):
        referrals = {"rate": draw(st.floats(0, 50)), "end": draw(st.integers(0, months))}
    else:
        referrals = {"monthly": draw(st.lists(st.floats(0, 50), min_size=1, max_size=months))}

    money = st.floats(0, 5000)

    def tariff():
        kind = draw(st.sampled_from(["scalar", "all", "default"]))
        if kind == "scalar":
            return draw(money)
        t = {seg: draw(money) for seg in segments if kind == "all" or draw(st.booleans())}
        if kind == "default":
            t["default"] = draw(money)
        return t

    payments = [{"name": "outcome", "kind": draw(st.sampled_from(["attachment", "milestone", "outcome"])),
                 "state": draw(st.sampled_from(states)), "tariff": tariff(), "lag": draw(st.integers(0, 6)),
                 "rejection": draw(st.floats(0, 1))}]
    if draw(st.booleans()):
        payments.append({"name": "sustain", "kind": "sustainment",
                         "states": draw(st.lists(st.sampled_from(states), min_size=1, unique=True)),
                         "max_months": draw(st.integers(1, 12)), "tariff": tariff()})
    contract = {"payments": payments}
    fee = draw(st.sampled_from(["none", "share", "total", "amounts"]))
    if fee == "share":
        contract["value"] = draw(money)
        contract["service_fee"] = {"share_of_value": draw(st.floats(0, 1)), "schedule": "quarterly"}
    elif fee == "total":
        contract["service_fee"] = {"total": draw(money), "schedule": [draw(st.integers(0, months - 1))]}
    elif fee == "amounts":
        contract["service_fee"] = {"amounts": draw(st.lists(money, max_size=months))}

    return {
        "name": "random",
        "months": months,
        "referrals": referrals,
        "segments": {seg: {"share": w / sum(weights)} for seg, w in zip(segments, weights)},
        "pathway": pathway,
        "contract": contract,
        "provider": {"opening_cash": draw(money), "cost_per_client_month": {"full": draw(money), "minimal": draw(money)},
                     "capacity": draw(st.none() | st.integers(0, 100))},
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=valid_scenarios())
def test_random_valid_scenarios_validate(data, tmp_path_factory):
    sc = scenario_from_dict(copy.deepcopy(data), "<random>")
    assert sc.segment_names == list(data["segments"])
    # and the same through a YAML file
    f = tmp_path_factory.mktemp("random") / "random.yaml"
    f.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    assert pbrsim.load_scenario(f).pathway.states == data["pathway"]["states"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=valid_scenarios(), pick=st.data())
def test_perturbed_row_is_reported_at_its_path(data, pick):
    data = copy.deepcopy(data)
    transitions = data["pathway"]["transitions"]
    seg = pick.draw(st.sampled_from(sorted(transitions)), label="segment")
    level = pick.draw(st.sampled_from(SERVICE_LEVELS), label="level")
    frm = pick.draw(st.sampled_from(sorted(transitions[seg][level])), label="row")
    row = transitions[seg][level][frm]
    to = pick.draw(st.sampled_from(sorted(row)), label="entry")
    if pick.draw(st.booleans(), label="drop entry"):
        del row[to]  # every entry is positive, so the row now sums to less than 1
    else:
        row[to] += pick.draw(st.floats(1e-6, 0.5) | st.floats(-0.5, -1e-6), label="delta")
    row_path = f"pathway.transitions.{seg}.{level}.{frm}"

    with pytest.raises(ScenarioError) as info:
        scenario_from_dict(data, "<perturbed>")
    problems = info.value.problems
    assert matching(problems, row_path, r"^row must sum to 1"), show(problems)
    # nothing else is blamed: at most the row's own entries (a probability pushed out of [0, 1])
    assert all(p == row_path or p.startswith(row_path + ".") for p, _ in problems), show(problems)
