"""Calibration: the exact reach rate (against closed forms and the engine), the fit, the written file, the CLI."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from pbrsim.library.calibrate import (BLOCK_BEGIN, BLOCK_END, CalibrationError, _bind, _fmt, _Problem, calibrate, check_targets,
                              load_targets, reach_rate, write_calibrated)
from pbrsim.cli.main import main
from pbrsim.scenario.schema import ROW_TOLERANCE, load_raw, load_scenario, scenario_from_dict
from pbrsim.simulate import simulate

from .conftest import BASE, make

FIXTURE = Path(__file__).parent / "fixtures" / "calibrate" / "scenario.yaml"
T = "pathway.transitions"


def write(path: Path, data) -> Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def invoke(*args):
    return CliRunner().invoke(main, ["calibrate", *map(str, args)])


def comments(text: str) -> list[str]:
    return [line[line.index("#"):].strip() for line in text.splitlines() if "#" in line]


# ---------------------------------------------------------------------------------------------
# The reach rate against closed forms


def chain(rows: dict, *, minimal: dict | None = None, max_months=None, exit_applies_to=None, service_states=None):
    """A one-segment scenario whose pathway is waiting -> ready -> done, with `gone` and `out` absorbing."""
    d = make()
    d["segments"] = {"all": {"share": 1.0}}
    d["pathway"] = {
        "states": ["waiting", "ready", "done", "gone", "out"],
        "initial_state": "waiting",
        "absorbing": ["done", "gone", "out"],
        "exit_state": "out",
        "transitions": {"all": {"full": rows, "minimal": minimal or rows}},
    }
    if max_months is not None:
        d["pathway"]["max_months_on_programme"] = max_months
    if exit_applies_to is not None:
        d["pathway"]["exit_applies_to"] = exit_applies_to
    if service_states is not None:
        d["pathway"]["service_states"] = service_states
    d["contract"] = {"payments": []}
    return scenario_from_dict(d, "<chain>")


def two_stage(p: float, q: float, n: int, last_start: int | None = None) -> float:
    """P(waiting -> ready -> done within n transitions): first move at transition k, then done within n - k."""
    last = n - 1 if last_start is None else min(n - 1, last_start)
    return sum(p * (1 - p) ** (k - 1) * (1 - (1 - q) ** (n - k)) for k in range(1, last + 1))


def _at(mapping: dict, path: str):
    """The value at a dotted path of plain keys in a YAML mapping."""
    for k in path.split("."):
        mapping = mapping[k]
    return mapping


@pytest.mark.parametrize("p", [0.05, 0.3, 0.8])
def test_geometric_reach_is_one_minus_survival(p):
    sc = chain({"waiting": {"done": p, "waiting": 1 - p}, "ready": {"ready": 1.0}})
    for n in (1, 2, 5, 17, 40):
        assert reach_rate(sc, "all", ["done"], n) == pytest.approx(1 - (1 - p) ** n, abs=1e-13)
    assert reach_rate(sc, "all", ["waiting"], 5) == 1.0  # the initial state is entered at referral


def test_two_stage_reach_matches_the_convolution_and_states_combine():
    p, q = 0.3, 0.45
    sc = chain({"waiting": {"ready": p, "waiting": 1 - p}, "ready": {"done": q, "ready": 1 - q}})
    for n in (1, 2, 3, 8, 25):
        assert reach_rate(sc, "all", ["done"], n) == pytest.approx(two_stage(p, q, n), abs=1e-13)
        # first entry into either state = entry into ready (done is only reached through ready)
        assert reach_rate(sc, "all", ["ready", "done"], n) == pytest.approx(1 - (1 - p) ** n, abs=1e-13)


def test_forced_exit_stops_the_clock_at_max_months():
    p, M = 0.2, 6
    sc = chain({"waiting": {"done": p, "waiting": 1 - p}, "ready": {"ready": 1.0}}, max_months=M)
    for n in (3, M, M + 1, 30):
        assert reach_rate(sc, "all", ["done"], n) == pytest.approx(1 - (1 - p) ** min(n, M), abs=1e-13)
        # everyone still waiting at transition M is moved out then (a forced exit is an entry into `out`)
        assert reach_rate(sc, "all", ["out"], n) == pytest.approx((1 - p) ** M if n >= M else 0.0, abs=1e-13)


def test_forced_exit_applies_only_to_the_listed_states():
    p, q, M = 0.25, 0.3, 4
    sc = chain({"waiting": {"ready": p, "waiting": 1 - p}, "ready": {"done": q, "ready": 1 - q}},
               max_months=M, exit_applies_to=["waiting"])
    for n in (2, M, M + 3, 20):
        # a move into `ready` is kept at any age; staying in `waiting` from transition M on is a forced exit
        assert reach_rate(sc, "all", ["done"], n) == pytest.approx(two_stage(p, q, n, last_start=M), abs=1e-13)
        assert reach_rate(sc, "all", ["out"], n) == pytest.approx((1 - p) ** M if n >= M else 0.0, abs=1e-13)


def test_an_active_state_outside_service_moves_by_its_minimal_row():
    p, q_full, q_min = 0.4, 0.9, 0.2
    full = {"waiting": {"ready": p, "waiting": 1 - p}, "ready": {"done": q_full, "ready": 1 - q_full}}
    minimal = {"waiting": {"waiting": 1.0}, "ready": {"done": q_min, "ready": 1 - q_min}}
    sc = chain(full, minimal=minimal, service_states=["waiting"])
    for n in (2, 5, 12):
        assert reach_rate(sc, "all", ["done"], n) == pytest.approx(two_stage(p, q_min, n), abs=1e-13)


# ---------------------------------------------------------------------------------------------
# The reach rate against the engine


@pytest.mark.parametrize("pathway", [
    {"service_states": ["referred", "engaged"]},  # `job` is active but not in service: it moves by its minimal row
    {"exit_applies_to": ["referred", "engaged"]},  # clients in `job` stay past the limit; falling back is a forced exit
], ids=["non-service-state", "exit-applies-to"])
def test_reach_rate_agrees_with_monte_carlo_of_the_engine(pathway):
    """Holistic, uncapped, unlimited credit: every client is simulated by the real engine; rates within 4 SE."""
    d = make(**{"months": 20, "referrals": {"monthly": [30000], "distribution": "fixed"}})
    d["pathway"].update(pathway)
    sc = scenario_from_dict(d, "<mc>")
    clients = simulate(sc, seed=11, replications=1).clients
    assert (clients.referral_month == 0).all()
    cells = 0
    for seg in sc.segments:
        c = clients[clients.segment == seg]
        for states in (["job"], ["sustained"], ["exited"], ["dropout"], ["job", "dropout"]):
            first = np.column_stack([c[f"first_{s}"].astype("float64").to_numpy() for s in states])
            first = np.where(np.isnan(first) | (first < 0), np.inf, first)
            for n in (1, 3, 8, 12, 16, 20):
                exact = reach_rate(sc, seg, states, n)
                mc = float((first.min(axis=1) <= n - 1).mean())  # the k-th transition is in month k - 1
                se = math.sqrt(max(exact * (1 - exact), 1e-12) / len(c))
                assert abs(mc - exact) <= 4 * se + 1e-12, (seg, states, n, mc, exact, se)
                cells += 1
    assert cells == 60
    # forced exit is in play: some clients are moved out at the limit
    assert reach_rate(sc, "hard", ["exited"], 12) > 0.05
    if "exit_applies_to" in pathway:  # ... and later, when clients in `job` fall back to `engaged`
        assert reach_rate(sc, "hard", ["exited"], 20) > reach_rate(sc, "hard", ["exited"], 12) + 0.005
    else:
        assert reach_rate(sc, "hard", ["exited"], 20) == pytest.approx(reach_rate(sc, "hard", ["exited"], 12), abs=1e-15)


def test_derivatives_of_the_rates_are_exact():
    sc = load_scenario(FIXTURE)
    tg_raw = {
        "parameters": [
            {"name": "a", "paths": [f"{T}.easy.full.engaged.job"], "balance": "engaged"},
            {"name": "b", "paths": [f"{T}.easy.full.job.sustained", f"{T}.hard.full.job.sustained"], "balance": "job"},
            {"name": "c", "paths": [f"{T}.hard.full.referred.engaged"]},
        ],
        "targets": [{"name": f"{g} {s} {n}", "segment": g, "state": s, "within_months": n, "rate": 0.3, "tolerance": 0.01}
                    for g in ("easy", "hard") for s, n in (("job", 4), ("sustained", 14), ("exited", 13))],
    }
    from pbrsim.library.calibrate import targets_from_dict

    prob = _Problem(_bind(sc, targets_from_dict(tg_raw)))
    x = np.array([0.27, 0.33, 0.55])
    J = prob.jacobian(x)
    h = 1e-6
    for j in range(len(x)):
        e = np.zeros(len(x))
        e[j] = h
        fd = (prob.residuals(x + e) - prob.residuals(x - e)) / (2 * h)
        np.testing.assert_allclose(J[:, j], fd, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Fitting


TRUE = {"easy_find": 0.27, "hard_find": 0.13, "keep": 0.36}


def truth() -> dict:
    d = make()
    tr = d["pathway"]["transitions"]
    tr["easy"]["full"]["engaged"] = {"job": TRUE["easy_find"], "engaged": 0.9 - TRUE["easy_find"], "dropout": 0.1}
    tr["hard"]["full"]["engaged"] = {"job": TRUE["hard_find"], "engaged": 0.9 - TRUE["hard_find"], "dropout": 0.1}
    for g, other in (("easy", 0.1), ("hard", 0.2)):
        tr[g]["full"]["job"] = {"sustained": TRUE["keep"], "job": 1 - TRUE["keep"] - other, "engaged": other}
    return d


def recovery_targets(sc) -> dict:
    return {
        "description": "rates computed from known parameter values",
        "parameters": [
            {"name": "easy_find", "paths": [f"{T}.easy.full.engaged.job"], "balance": "engaged", "bounds": [0.0, 0.6]},
            {"name": "hard_find", "paths": [f"{T}.hard.full.engaged.job"], "balance": "engaged"},
            {"name": "keep", "paths": [f"{T}.easy.full.job.sustained", f"{T}.hard.full.job.sustained"], "balance": "job"},
        ],
        "targets": [
            {"name": f"{g} {s} {n}", "segment": g, "state": s, "within_months": n,
             "rate": reach_rate(sc, g, [s], n), "tolerance": 0.002, "source": "computed"}
            for g in ("easy", "hard") for s, n in (("job", 5), ("sustained", 11))
        ],
    }


def test_calibrate_recovers_known_parameters(tmp_path):
    true_sc = scenario_from_dict(truth(), "<truth>")
    tg = write(tmp_path / "targets.yaml", recovery_targets(true_sc))
    start = make()  # BASE: 0.3, 0.1 and 0.4 / 0.3 instead of the true values
    for path, value in ((f"{T}.easy.full.job", {"sustained": 0.45, "job": 0.45, "engaged": 0.1}),
                        (f"{T}.hard.full.job", {"sustained": 0.45, "job": 0.35, "engaged": 0.2})):
        start["pathway"]["transitions"][path.split(".")[2]]["full"]["job"] = value
    sc_file = write(tmp_path / "start.yaml", start)
    result = calibrate(sc_file, tg)
    for name, value in TRUE.items():
        assert result.values[name] == pytest.approx(value, abs=1e-4), name
    assert result.all_met and result.table.met.all()
    assert list(result.table.columns) == ["target", "segment", "model", "target_rate", "residual", "tolerance", "met"]
    # balances absorbed the change: the rows of the fitted scenario are the true rows
    fitted = result.scenario.pathway.transitions
    for g in ("easy", "hard"):
        for frm in ("engaged", "job"):
            for to, p in truth()["pathway"]["transitions"][g]["full"][frm].items():
                assert getattr(fitted[g], "full")[frm][to] == pytest.approx(p, abs=2e-4)
    # deterministic: the same fit again
    again = calibrate(sc_file, tg)
    assert again.values == result.values and again.updates == result.updates


def test_check_targets_reports_model_minus_target(tmp_path):
    sc = load_scenario(FIXTURE)
    tg = recovery_targets(scenario_from_dict(truth(), "<truth>"))
    table = check_targets(FIXTURE, write(tmp_path / "t.yaml", tg))
    for row, spec in zip(table.itertuples(), tg["targets"]):
        model = reach_rate(sc, spec["segment"], [spec["state"]], spec["within_months"])
        assert row.model == pytest.approx(model, abs=1e-15)
        assert row.residual == pytest.approx(model - spec["rate"], abs=1e-15)
        assert row.met == (abs(model - spec["rate"]) <= spec["tolerance"])


# ---------------------------------------------------------------------------------------------
# Writing


WRITE_TARGETS = {
    "parameters": [
        {"name": "easy_find", "paths": [f"{T}.easy.full.engaged.job"], "balance": "engaged"},       # a flow row
        {"name": "hard_engage", "paths": [f"{T}.hard.full.referred.engaged"], "balance": "referred"},  # a block row
        {"name": "easy_jump", "paths": [f"{T}.easy.full.referred.job"], "balance": "referred"},    # a new entry
    ],
    "targets": [
        {"name": "easy job 2", "segment": "easy", "state": "job", "within_months": 2, "rate": 0.28, "tolerance": 0.002},
        {"name": "easy job 6", "segment": "easy", "state": "job", "within_months": 6, "rate": 0.58, "tolerance": 0.002},
        {"name": "hard engaged 2", "segment": "hard", "state": "engaged", "within_months": 2, "rate": 0.78, "tolerance": 0.002},
    ],
}


def test_written_file_keeps_every_comment_and_loads(tmp_path):
    sc_file = tmp_path / "scenario.yaml"
    original = FIXTURE.read_text()
    sc_file.write_text(original)
    tg = write(tmp_path / "targets.yaml", WRITE_TARGETS)
    r = invoke(sc_file, tg)
    assert r.exit_code == 0, r.output
    out = tmp_path / "scenario.calibrated.yaml"
    text = out.read_text()
    assert sc_file.read_text() == original  # the input is untouched
    for c in comments(original):
        assert c in text, c
    # lines without a fitted value are unchanged, byte for byte, and in order
    changed = {"engaged:  {job: 0.3, engaged: 0.6, dropout: 0.1}      # finding work",
               "referred: {engaged: 0.8, referred: 0.1, dropout: 0.1}",
               "engaged: 0.6               # engagement is slower", "referred: 0.2"}
    assert changed <= {line.strip() for line in original.splitlines()}
    body = text.split(BLOCK_END)[1].splitlines()[2:]
    kept = [line for line in original.splitlines() if line.strip() not in changed]
    assert [line for line in body if line in kept] == kept
    assert len(body) == len(original.splitlines())
    sc = load_scenario(out)
    raw = load_raw(out)
    for g in sc.segments:
        for level in ("full", "minimal"):
            for row in raw["pathway"]["transitions"][g][level].values():
                assert abs(sum(row.values()) - 1) <= ROW_TOLERANCE
                assert all(v >= 0 for v in row.values())
    result = calibrate(sc_file, tg)
    assert all(_at(raw, path) == value for path, value in result.updates.items())
    assert raw["pathway"]["transitions"]["easy"]["full"]["referred"]["job"] == result.values["easy_jump"]
    block = text.split(BLOCK_END)[0]
    assert text.startswith(BLOCK_BEGIN) and "result: all 3 targets met" in block
    for name, value in result.values.items():
        assert re.search(rf"{name}\s+{_fmt(value)}\s", block), name
    assert "targets: targets.yaml" in block
    assert not re.search(r"\d{4}-\d{2}-\d{2}", block)  # no dates: the same fit writes the same file
    # the same fit written again is the same file
    write_calibrated(result, tmp_path / "again.yaml")
    assert (tmp_path / "again.yaml").read_text() == text


def test_rerun_replaces_the_block(tmp_path):
    sc_file = tmp_path / "s.yaml"
    sc_file.write_text(FIXTURE.read_text())
    tg = write(tmp_path / "t.yaml", WRITE_TARGETS)
    assert invoke(sc_file, tg, "--in-place").exit_code == 0
    first = sc_file.read_text()
    moved = copy.deepcopy(WRITE_TARGETS)
    moved["targets"][1]["rate"] = 0.6
    write(tmp_path / "t.yaml", moved)
    r = invoke(sc_file, tg, "--in-place")
    assert r.exit_code == 0, r.output
    second = sc_file.read_text()
    assert second.count(BLOCK_BEGIN) == 1 and second.count(BLOCK_END) == 1
    assert second.split(BLOCK_END)[0] != first.split(BLOCK_END)[0]
    for c in comments(FIXTURE.read_text()):
        assert c in second
    load_scenario(sc_file)
    # calibrating the calibrated file to a new output also carries a single block
    assert invoke(sc_file, tg, "--out", tmp_path / "third.yaml").exit_code == 0
    assert (tmp_path / "third.yaml").read_text().count(BLOCK_BEGIN) == 1


def test_extends_gets_the_fitted_paths_in_its_own_mapping(tmp_path):
    parent = tmp_path / "base.yaml"
    parent.write_text(FIXTURE.read_text())
    child = write(tmp_path / "child.yaml", "# a variant of the base\nextends: base.yaml  # the parent file\nname: child\n")
    tg = write(tmp_path / "t.yaml", WRITE_TARGETS)
    (tmp_path / "elsewhere").mkdir()
    out = tmp_path / "elsewhere" / "child_fit.yaml"
    r = invoke(child, tg, "--out", out)
    assert r.exit_code == 0, r.output
    assert parent.read_text() == FIXTURE.read_text()
    own = yaml.safe_load(out.read_text())
    assert own["extends"] == "../base.yaml" and own["name"] == "child"
    result = calibrate(child, tg)
    assert all(_at(own, path) == value for path, value in result.updates.items())
    text = out.read_text()
    assert "# a variant of the base" in text and "# the parent file" in text
    assert load_scenario(out).model_dump() == result.scenario.model_dump()


# ---------------------------------------------------------------------------------------------
# Targets that cannot be met, balances, bad input


def test_targets_that_cannot_be_met_exit_3_with_the_closest_fit(tmp_path):
    tg = copy.deepcopy(WRITE_TARGETS)
    tg["parameters"] = [{"name": "easy_find", "paths": [f"{T}.easy.full.engaged.job"], "balance": "engaged", "bounds": [0.0, 0.35]}]
    tg["targets"] = [{"name": "easy job 3", "segment": "easy", "state": "job", "within_months": 3, "rate": 0.95, "tolerance": 0.01}]
    tg_file = write(tmp_path / "t.yaml", tg)
    sc_file = tmp_path / "s.yaml"
    sc_file.write_text(FIXTURE.read_text())
    r = invoke(sc_file, tg_file)
    assert r.exit_code == 3, r.output
    assert "targets cannot all be met" in r.output and "closest fit written to" in r.output
    out = tmp_path / "s.calibrated.yaml"
    block = out.read_text().split(BLOCK_END)[0]
    assert "NOT MET" in block and "result: 1 of 1 targets NOT MET" in block
    sc = load_scenario(out)
    assert sc.pathway.transitions["easy"].full["engaged"]["job"] == 0.35  # at its bound: the closest it can get
    # --check on the fit agrees: still not met
    assert invoke(out, tg_file, "--check").exit_code == 1


def test_parameters_sharing_a_balance_never_make_it_negative(tmp_path):
    tg = {
        "parameters": [
            {"name": "to_job", "paths": [f"{T}.easy.full.engaged.job"], "balance": "engaged"},
            {"name": "to_dropout", "paths": [f"{T}.easy.full.engaged.dropout"], "balance": "engaged"},
        ],
        "targets": [
            {"name": "job", "segment": "easy", "state": "job", "within_months": 2, "rate": 0.75, "tolerance": 0.001},
            {"name": "dropout", "segment": "easy", "state": "dropout", "within_months": 2, "rate": 0.6, "tolerance": 0.001},
        ],
    }
    sc_file = tmp_path / "s.yaml"
    sc_file.write_text(FIXTURE.read_text())
    r = invoke(sc_file, write(tmp_path / "t.yaml", tg))
    assert r.exit_code == 3, r.output
    row = load_scenario(tmp_path / "s.calibrated.yaml").pathway.transitions["easy"].full["engaged"]
    assert row["engaged"] >= 0 and abs(sum(row.values()) - 1) <= ROW_TOLERANCE
    assert row["engaged"] < 1e-3  # the fit pushed both as far as the row allows


def test_bounds_that_force_a_negative_balance_are_refused(tmp_path):
    tg = copy.deepcopy(WRITE_TARGETS)
    # engaged -> job and engaged -> engaged hold 0.9 of the row; a lower bound of 0.95 cannot be balanced
    tg["parameters"][0]["bounds"] = [0.95, 1.0]
    sc_file = tmp_path / "s.yaml"
    sc_file.write_text(FIXTURE.read_text())
    r = invoke(sc_file, write(tmp_path / "t.yaml", tg))
    assert r.exit_code == 2, r.output
    assert "parameters[0].bounds" in r.output and "easy_find" in r.output and "negative" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml", "t.yaml"]


BAD = [
    ({"targetz": []}, "targetz: unknown field"),
    ({"targets[0].segment": "medium"}, "targets[0].segment: unknown segment 'medium'"),
    ({"targets[0].state": "employed"}, "targets[0].state: unknown state 'employed'"),
    ({"targets[0].states": ["job"]}, "targets[0]: give exactly one of `state`"),
    ({"targets[0].tolerance": 0}, "targets[0].tolerance: Input should be greater than 0"),
    ({"targets[0].rate": "0.3"}, "targets[0].rate: Input should be a valid number"),
    ({"targets[0].within_months": 0}, "targets[0].within_months: Input should be greater than or equal to 1"),
    ({"targets[1].name": "easy job 2"}, "targets[1].name: name 'easy job 2' is already used by targets[0]"),
    ({"parameters[0].paths[0]": "contract.cap"}, "parameters[0].paths[0]: 'contract.cap' is not a transition probability"),
    ({"parameters[0].paths[0]": f"{T}.easy.full.sustained.job"}, "parameters[0].paths[0]: 'sustained' is absorbing"),
    ({"parameters[0].paths[0]": f"{T}.easy.full.engaged.employed"}, "parameters[0].paths[0]: unknown state 'employed'"),
    ({"parameters[0].paths[0]": f"{T}.easy.most.engaged.job"}, "parameters[0].paths[0]: unknown service level 'most'"),
    ({"parameters[0].paths[0]": f"{T}.medium.full.engaged.job"}, "parameters[0].paths[0]: unknown segment 'medium'"),
    ({"parameters[0].bounds": [0.5, 0.2]}, "parameters[0].bounds: bounds must be [lower, upper]"),
    ({"parameters[0].balance": "job"}, "parameters[0].paths[0]: the balance state 'job'"),
    ({"parameters[0].balance": "nowhere"}, "parameters[0].balance: unknown state 'nowhere'"),
    ({"parameters[0].paths[0]": f"{T}.easy.minimal.engaged.job"}, "parameters[0].paths: 'easy_find' changes no target rate"),
    ({"parameters[1].paths[0]": f"{T}.easy.full.engaged.job"}, "parameters[1].paths[0]: pathway.transitions.easy.full.engaged.job is already fitted"),
]


@pytest.mark.parametrize("change,message", BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_bad_targets_exit_2_naming_file_and_field(tmp_path, change, message):
    tg = copy.deepcopy(WRITE_TARGETS)
    for path, value in change.items():
        m = re.fullmatch(r"(\w+)\[(\d+)\]\.(\w+)(?:\[(\d+)\])?", path)
        if not m:
            tg[path] = value
            continue
        item = tg[m.group(1)][int(m.group(2))]
        if m.group(4) is None:
            item[m.group(3)] = value  # for `states`, `state` stays: both forms given
        else:
            item[m.group(3)][int(m.group(4))] = value
    sc_file = tmp_path / "s.yaml"
    sc_file.write_text(FIXTURE.read_text())
    tg_file = write(tmp_path / "targets.yaml", tg)
    for args in ((), ("--check",)):
        r = invoke(sc_file, tg_file, *args)
        assert r.exit_code == 2, r.output
        assert f"{tg_file}: {message}" in " ".join(r.output.split()), r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml", "targets.yaml"]


def test_unreadable_or_broken_files_exit_2(tmp_path):
    sc_file = tmp_path / "s.yaml"
    sc_file.write_text(FIXTURE.read_text())
    tg_file = write(tmp_path / "t.yaml", WRITE_TARGETS)
    r = invoke(sc_file, tmp_path / "missing.yaml")
    assert r.exit_code == 2 and "missing.yaml: cannot read file" in r.output
    write(tmp_path / "bad.yaml", "targets: [\n")
    r = invoke(sc_file, tmp_path / "bad.yaml")
    assert r.exit_code == 2 and "bad.yaml: not valid YAML" in r.output
    bad_sc = write(tmp_path / "bad_sc.yaml", FIXTURE.read_text().replace("months: 18", "months: 0"))
    r = invoke(bad_sc, tg_file)
    assert r.exit_code == 2 and "bad_sc.yaml: months" in r.output
    assert invoke(sc_file, tg_file, "--out", tmp_path / "x.yaml", "--in-place").exit_code == 2
    assert invoke(sc_file, tg_file, "--check", "--out", tmp_path / "x.yaml").exit_code == 2
    no_params = {k: v for k, v in WRITE_TARGETS.items() if k != "parameters"}
    r = invoke(sc_file, write(tmp_path / "np.yaml", no_params))
    assert r.exit_code == 2 and "parameters: list at least one parameter" in " ".join(r.output.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "bad_sc.yaml", "np.yaml", "s.yaml", "t.yaml"]
    with pytest.raises(CalibrationError):
        load_targets(tmp_path / "bad.yaml")


def test_check_exit_codes_and_writes_nothing(tmp_path):
    sc = load_scenario(FIXTURE)
    tg = copy.deepcopy(WRITE_TARGETS)
    for t in tg["targets"]:
        t["rate"] = reach_rate(sc, t["segment"], [t["state"]], t["within_months"])
    tg["targets"][0]["rate"] += 0.0015  # inside the tolerance of 0.002
    ok = write(tmp_path / "ok.yaml", tg)
    r = invoke(FIXTURE, ok, "--check")
    assert r.exit_code == 0, r.output
    assert "All 3 targets met" in r.output
    tg["targets"][2]["rate"] += 0.01
    r = invoke(FIXTURE, write(tmp_path / "off.yaml", tg), "--check")
    assert r.exit_code == 1, r.output
    assert "1 of 3 targets not met" in r.output and "hard engaged 2" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["off.yaml", "ok.yaml"]
    assert not FIXTURE.with_name("scenario.calibrated.yaml").exists()


def test_fixture_is_the_conftest_base():
    assert load_raw(FIXTURE) == BASE


# ---------------------------------------------------------------------------------------------
# Calibration with behaviour: potential under full service, observed = potential x service given


def behaving(d: dict, temperature: float) -> dict:
    d = copy.deepcopy(d)
    d["provider"]["policy"] = {"name": "graded", "temperature": temperature}
    d["segments"]["easy"]["latent_classes"] = {"classes": [{"name": "slow", "share": 0.5, "progress": 0.5},
                                                           {"name": "fast", "share": 0.5, "progress": 1.1}]}
    return d


def test_joint_calibration_recovers_transition_rates_and_behaviour_from_observed_rates(tmp_path):
    true_sc = write(tmp_path / "truth.yaml", behaving(truth(), 40.0))
    spec = recovery_targets(load_scenario(true_sc))
    spec["behaviour"] = [{"name": "temperature", "field": "provider.policy.temperature", "bounds": [1.0, 400.0]}]
    spec["targets"].append({"name": "hard vs easy sustained", "segment": "hard", "relative_to": "easy", "state": "sustained",
                            "within_months": 11, "rate": 0.5, "tolerance": 0.002})
    observed = check_targets(true_sc, write(tmp_path / "t0.yaml", spec))
    for t, model in zip(spec["targets"], observed.model):
        t["rate"] = float(model)  # what the real programme "observed": rates under the provider's behaviour
    full = check_targets(write(tmp_path / "holistic.yaml", {**behaving(truth(), 40.0), "provider": make()["provider"]}),
                         write(tmp_path / "t1.yaml", {k: v for k, v in spec.items() if k != "behaviour"}))
    assert (full.model.to_numpy() > observed.model.to_numpy() + 0.002)[[0, 1]].all()  # parking lowers the easy rates
    tg = write(tmp_path / "targets.yaml", spec)
    start = write(tmp_path / "start.yaml", behaving(make(), 150.0))
    result = calibrate(start, tg)
    assert result.all_met and result.behavioural
    for name, value in TRUE.items():
        assert result.values[name] == pytest.approx(value, abs=0.01), name
    assert result.values["temperature"] == pytest.approx(40.0, rel=0.15)
    assert result.parameters.identified.all()
    text = write_calibrated(result, tmp_path / "fitted.yaml").read_text()
    assert "observed: potential under full service" in text and "identified by the targets: easy_find" in text
    assert check_targets(tmp_path / "fitted.yaml", tg).met.all()


def test_parameters_the_targets_cannot_separate_are_reported_as_not_identified(tmp_path):
    spec = {"parameters": [{"name": "engage", "paths": [f"{T}.easy.full.referred.engaged"], "balance": "referred"},
                           {"name": "find", "paths": [f"{T}.easy.full.engaged.job"], "balance": "engaged"}],
            "targets": [{"name": "easy sustained", "segment": "easy", "state": "sustained", "within_months": 11,
                         "rate": 0.3, "tolerance": 0.002}]}
    result = calibrate(write(tmp_path / "s.yaml", make()), write(tmp_path / "t.yaml", spec))
    assert result.all_met
    # one rate: engaging pins it down, and then finding work can only do what engaging already does
    assert result.parameters.identified.tolist() == [True, False]
    text = write_calibrated(result, tmp_path / "fitted.yaml").read_text()
    assert "not identified (the targets can be met whatever their values): find" in text
