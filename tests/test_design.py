"""pbrsim design: problem files and their errors, figures that mean what the summary means, exact mode against
Monte Carlo, goal seek against a fine grid, and the search end to end (same seed => same design, resume,
infeasible problems, out-of-sample check). Scenarios are tiny and replication counts small; the full-size
acceptance runs are in benchmarks/bench_design.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from pbrsim.cli.main import main
from pbrsim.design.evaluate import Cache, Evaluator, exact_quantities, replication_figures
from pbrsim.design.figures import TargetError, parse_figure, parse_target
from pbrsim.design.goalseek import goal_seek
from pbrsim.design.problem import DesignError, goal_seek_problem, load_problem
from pbrsim.scenario.schema import load_scenario, scenario_from_dict
from pbrsim.simulate import simulate
from tests.conftest import make

# 6 months, ~30 clients, thin reserves: the charity fails in most runs without a service fee, in none with 4%
SMALL = {"months": 6, "referrals.end": 4, "referrals.rate": 8, "provider.credit.limit": 1000, "provider.opening_cash": 2000}


def write(tmp_path: Path, name: str, data) -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


@pytest.fixture
def small_scenario(tmp_path) -> Path:
    return write(tmp_path, "small.yaml", make(**SMALL))


def problem_dict(**changes) -> dict:
    d = {
        "name": "small_problem",
        "base": "small.yaml",
        "levers": [{"path": "contract.service_fee.share_of_value", "range": [0.0, 0.08], "step": 0.04},
                   {"path": "contract.payments[name=sustained].tariff.hard", "range": [1000, 3000], "step": 1000, "label": "hard price"}],
        "objective": {"minimise": "spend"},
        "constraints": ["failure(charity) <= 0.25", "outcome_rate >= 0.05"],
        "search": {"seed": 3, "first_replications": 10, "max_replications": 10, "final_replications": 20, "chunk": 10},
        "verify": {"replications": 20},
    }
    d.update(changes)
    return d


# ---------------------------------------------------------------------------------------------
# Targets and figures


def test_targets_read_percentages_money_and_both_directions():
    t = parse_target("failure(hope_trust) <= 5%")
    assert (t.figure.key, t.op, t.bound) == ("failure(hope_trust)", "<=", 0.05)
    assert parse_target("spend <= £250,000").bound == 250000
    assert parse_target("complex_outcome_rate>=0.06").op == ">="
    assert parse_target("failure(any) <= 0.1").figure.key == "failure"
    for bad, words in [("failure(x) < 0.05", "use <= or >="), ("speed <= 3", "unknown figure"), ("margin <= 3", "needs an organisation"),
                       ("spend(x) <= 3", "takes no argument"), ("spend <= lots", "cannot read 'lots'")]:
        with pytest.raises(TargetError, match=words):
            parse_target(bad)


def test_each_figure_is_the_summary_figure_of_the_same_name():
    res = simulate(scenario_from_dict(make(**SMALL, **{"contract.service_fee.share_of_value": 0.025}), "x"), seed=2, replications=12)
    s, per_rep = res.summary, res.per_replication
    org = s["organisations"][0]
    assert parse_figure("spend", None).estimate(per_rep).mean == pytest.approx(s["commissioner"]["paid_total"]["mean"])
    cpo = parse_figure("spend_per_outcome", None).estimate(per_rep)
    assert (cpo.mean, cpo.lo, cpo.hi) == pytest.approx(tuple(s["commissioner"]["cost_per_outcome"][k] for k in ("mean", "lo", "hi")))
    fail = parse_figure("failure", "charity").estimate(per_rep)
    assert (fail.mean, fail.lo, fail.hi) == pytest.approx(tuple(org["ran_out_of_cash"][k] for k in ("mean", "lo", "hi")))
    assert 0 < fail.mean < 1  # the thin reserves make this a real test of the share estimator
    rate = parse_figure("complex_outcome_rate", None).estimate(per_rep)
    assert rate.mean == pytest.approx(s["parking"]["outcome_rate_most_complex"]["mean"])
    park = next(r for r in s["parking"]["segments"] if r["segment"] == "hard")["parking_rate"]
    assert parse_figure("parking", "hard").estimate(per_rep).mean == pytest.approx(park["mean"])
    assert parse_figure("equity_ratio", None).estimate(per_rep).mean == pytest.approx(s["parking"]["equity_ratio"]["mean"])


def test_projected_intervals_are_what_more_replications_would_give_at_the_same_estimate():
    from pbrsim.analysis.metrics import wilson
    from pbrsim.design.figures import Estimate

    share = Estimate(0.02, 0.001, 0.2, 50).projected(200, "share")
    assert (share.lo, share.hi) == pytest.approx((wilson(4, 200)["lo"], wilson(4, 200)["hi"]))
    mean = Estimate(10.0, 8.0, 12.0, 50).projected(200, "mean")
    assert (mean.lo, mean.hi, mean.replications) == pytest.approx((9.0, 11.0, 200))
    assert Estimate(10.0, 8.0, 12.0, 50).projected(20, "mean").hi == 12.0  # never narrower from fewer


def test_exact_mode_values_agree_with_monte_carlo():
    raw = make(**{"months": 8, "referrals.end": 5, "referrals.rate": 10})  # holistic, unlimited credit: exact applies
    q = exact_quantities(raw)
    df = replication_figures(raw, 5, range(40))
    for name in ("spend", "outcome_rate", "spend_per_outcome", "complex_outcome_rate", "outcomes"):
        f = parse_figure(name, None)
        mc, exact = f.estimate(df), f.exact(q).mean
        se = (mc.hi - mc.lo) / (2 * 1.96)
        assert abs(mc.mean - exact) < 4 * se, (name, mc, exact)
    assert parse_figure("failure", None).exact(q).mean == 0.0


def test_where_exact_mode_applies_the_search_uses_it_and_monte_carlo_confirms_the_answer(tmp_path):
    write(tmp_path, "holistic.yaml", make(**{"months": 8, "referrals.end": 5, "referrals.rate": 10}))
    path = write(tmp_path, "problem.yaml", {
        "base": "holistic.yaml",
        "levers": [{"path": "referrals.rate", "range": [6, 14], "step": 4},
                   {"path": "contract.payments[name=sustained].tariff.hard", "range": [1000, 3000], "step": 1000}],
        "objective": {"maximise": "outcomes"}, "constraints": ["spend <= 50000"], "verify": {"replications": 20}})
    code, text = run_design([path, "--out", tmp_path / "out", "--executor", "serial", "--quiet"])
    assert code == 0, text
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert s["method"] == "exact" and s["effort"]["replications_run"] == 20  # only the out-of-sample check
    # the chosen design is the exact optimum of the whole grid
    best = None
    for rate in (6, 10, 14):
        for price in (1000, 2000, 3000):
            raw = make(**{"months": 8, "referrals.end": 5, "referrals.rate": rate})
            raw["contract"]["payments"][3]["tariff"]["hard"] = price
            q = exact_quantities(raw)
            if q["paid_total"] <= 50000 and (best is None or q["outcomes"] > best[0]):
                best = (q["outcomes"], rate, price)
    assert list(s["chosen"]["levers"].values()) == [best[1], best[2]]
    assert s["chosen"]["estimates"]["outcomes"]["mean"] == pytest.approx(best[0])
    check = s["verification"][-1]["checks"][0]
    assert check["exact_within_interval"] and s["verification"][-1]["passed"]


def test_net_public_value_for_the_budget_is_the_exact_optimum_where_exact_mode_applies(tmp_path):
    from tests.test_value import _value

    write(tmp_path, "valued.yaml", make(**{"months": 8, "referrals.end": 5, "referrals.rate": 10}, value=_value()))
    path = write(tmp_path, "problem.yaml", {  # the commissioner's question: the most public value for the budget
        "base": "valued.yaml",
        "levers": [{"path": "referrals.rate", "range": [4, 16], "step": 4},
                   {"path": "contract.payments[name=sustained].tariff.hard", "range": [0, 2000], "step": 2000}],
        "objective": {"maximise": "net_public_value"}, "constraints": ["spend <= 50000"], "verify": {"replications": 20}})
    code, text = run_design([path, "--out", tmp_path / "out", "--executor", "serial", "--quiet"])
    assert code == 0, text
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert s["method"] == "exact"
    feasible = {}
    for rate in (4, 8, 12, 16):
        for price in (0, 2000):
            raw = make(**{"months": 8, "referrals.end": 5, "referrals.rate": rate}, value=_value())
            raw["contract"]["payments"][3]["tariff"]["hard"] = price
            q = exact_quantities(raw)
            if q["paid_total"] <= 50000:
                feasible[(rate, price)] = q["net_public_value"]
    best = max(feasible, key=feasible.get)
    assert best[0] not in (4, 16)  # the budget binds inside the range: the answer is not an end of the grid
    assert tuple(s["chosen"]["levers"].values()) == best
    assert s["chosen"]["estimates"]["net_public_value"]["mean"] == pytest.approx(feasible[best])


# ---------------------------------------------------------------------------------------------
# Problem files: every problem at once, as FILE: field.path: rule


@pytest.mark.parametrize("change, where, words", [
    ({"colour": "red"}, "colour", "unknown field"),
    ({"levers": [{"path": "contract.payments[name=nope].tariff", "range": [0, 1]}]}, "levers[0].path", "no item of contract.payments"),
    ({"levers": [{"path": "contract.service_fee.share_of_value", "range": [0.5, 0.1]}]}, "levers[0].range", "lowest value must be below"),
    ({"levers": [{"path": "contract.service_fee.share_of_value", "range": [0, 2]}]}, "levers[0]", "less than or equal to 1"),
    ({"levers": [{"path": "contract.service_fee.share_of_value", "range": [0, 1], "choices": [0.1]}]}, "levers[0]", "exactly one of"),
    ({"constraints": ["failure(nobody) <= 0.05"]}, "constraints[0]", "unknown organisation 'nobody'"),
    ({"constraints": ["net_public_value >= 0"]}, "constraints[0]", "needs a value section"),
    ({"objective": {"minimise": "spend", "maximise": "outcomes"}}, "objective", "exactly one of"),
    ({"objective": None}, "objective", "unless the problem is a goal seek"),
    ({"search": {"first_replications": 40, "max_replications": 20}}, "search", "at least first_replications"),
])
def test_problem_file_errors_name_the_field_and_the_rule(tmp_path, small_scenario, change, where, words):
    path = write(tmp_path, "problem.yaml", problem_dict(**change))
    with pytest.raises(DesignError) as exc:
        load_problem(path)
    assert any(p == where and words in rule for p, rule in exc.value.problems), exc.value.problems


def test_a_bad_problem_exits_2_and_writes_nothing(tmp_path, small_scenario):
    path = write(tmp_path, "problem.yaml", problem_dict(constraints=["failure(nobody) <= 0.05", "speed <= 1"]))
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["design", str(path), "--out", str(out)])
    assert r.exit_code == 2
    assert f"{path}: constraints[0]: unknown organisation 'nobody'" in r.output
    assert f"{path}: constraints[1]: unknown figure 'speed'" in r.output
    assert not out.exists()


def test_a_per_segment_lever_splits_a_flat_tariff(tmp_path, small_scenario):
    path = write(tmp_path, "problem.yaml", problem_dict(levers=[
        {"path": "contract.payments[name=attach].tariff.hard", "range": [100, 300], "step": 100}]))
    p = load_problem(path)
    attach = next(x for x in p.base["contract"]["payments"] if x["name"] == "attach")
    assert attach["tariff"] == {"easy": 100, "hard": 100}  # the same contract, written per segment


# ---------------------------------------------------------------------------------------------
# Goal seek


def test_goal_seek_finds_the_fine_grid_answer_within_one_step(tmp_path, small_scenario):
    problem = goal_seek_problem(small_scenario, "contract.service_fee.share_of_value", "failure(charity) <= 0.25",
                                range_=(0.0, 0.06), step=0.01, seed=4, replications=12, verify_replications=20)
    ev = Evaluator(4, cache=Cache(tmp_path / "cache"), executor="serial")
    res = goal_seek(problem, ev)
    assert res.status == "found" and res.monotone
    lever = problem.levers[0]
    walked = len(res.curve)
    # the fine grid: every value on the same replications
    from pbrsim.design.assess import Assessment, make_design

    met = []
    for i in range(lever.size):
        d = make_design(problem, (i,))
        df = ev.evaluate({i: (d.raw, range(12))})[i]
        met.append(Assessment(d, {f.key: f.estimate(df) for f in problem.figures}, 12, problem).feasible())
    first = met.index(True)
    assert not met[0] and all(met[first:])  # one crossing, so the grid's answer is well defined
    assert abs(lever.values[res.bracket[1]] - lever.values[first]) <= res.precision + 1e-12
    assert res.precision == pytest.approx(0.01)
    assert walked < lever.size  # bisection ran fewer values than the grid
    assert res.verification[0].seed != 4 and res.verification[0].replications == 20
    # the page's headline quotes the answer and the target figure's estimate there
    from pbrsim.design.summary import fmt_estimate, goal_seek_summary
    from pbrsim.report.headlines import design_headlines

    summary = goal_seek_summary(res)
    lines = design_headlines(summary)
    assert lines[0].startswith(f"failure(charity) <= 0.25 starts to hold at {summary['lever']['label']} = {summary['answer']['value']}")
    assert fmt_estimate(summary["answer"]["estimate"], summary["figures"]["failure(charity)"]["unit"], "GBP") in lines[0]
    assert lines[-1].startswith("Checked on 20 fresh runs") and lines[-1].endswith("it holds." if summary["verification"][-1]["passed"]
                                                                                  else "with caution.")


# ---------------------------------------------------------------------------------------------
# The search end to end, through the command line


def run_design(args) -> tuple[int, str]:
    r = CliRunner().invoke(main, ["design", *map(str, args)])
    return r.exit_code, " ".join(r.output.split())


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """One search of the small problem on a process pool of two workers: (problem file, output folder, summary)."""
    tmp = tmp_path_factory.mktemp("search")
    write(tmp, "small.yaml", make(**SMALL))
    path = write(tmp, "problem.yaml", problem_dict())
    out = tmp / "a"
    code, text = run_design([path, "--out", out, "--workers", 2, "--quiet"])
    assert code == 0, text
    return path, out, json.loads((out / "summary.json").read_text())


def test_the_search_chooses_a_design_meeting_every_constraint_at_its_confidence_bound(searched):
    path, out, s = searched
    chosen = s["chosen"]
    assert chosen["feasible"] and all(c["met"] for c in chosen["constraints"])
    assert chosen["estimates"]["failure(charity)"]["hi"] <= 0.25  # the bound, not the estimate
    assert chosen["estimates"]["outcome_rate"]["lo"] >= 0.05
    # nothing evaluated at the final replications that met every constraint was cheaper
    for d in s["finalists"]:
        if d["feasible"]:
            assert d["estimates"]["spend"]["mean"] >= chosen["estimates"]["spend"]["mean"]
    v = s["verification"][-1]  # rerun on fresh replications of an independent seed
    assert v["passed"] and v["seed"] == 3 + 1_000_003 and v["replications"] == 20
    assert all(c["met"] for c in v["checks"])
    for d in s["pareto"]:  # every scenario file written is valid and holds the design's lever values
        sc = load_scenario(out / d["file"])
        assert sc.contract.service_fee.share_of_value == d["levers"]["contract.service_fee.share_of_value"]
    assert (out / "design_pareto.png").read_bytes()[:4] == b"\x89PNG"
    r = CliRunner().invoke(main, ["report", str(out), "--quiet"])  # the report of a design folder, beside its results
    assert r.exit_code == 0, r.output
    page = (out / "report" / "design.html").read_text()
    assert "Pareto front" in page and "Out-of-sample check" in page and s["chosen"]["id"] in page
    assert json.loads((out / "report" / "manifest.json").read_text())["kind"] == "pbrsim-report"


def test_same_seed_same_design_on_any_executor_and_a_rerun_reuses_every_evaluation(searched, tmp_path):
    path, out, s = searched
    code, text = run_design([path, "--out", tmp_path / "b", "--executor", "serial", "--quiet"])
    assert code == 0, text
    again = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert again["effort"]["replications_run"] > 0
    for key in ("chosen", "pareto", "finalists", "verification"):
        assert again[key] == s[key], key
    code, text = run_design([path, "--out", out])
    assert code == 0, text
    resumed = json.loads((out / "summary.json").read_text())
    assert resumed["effort"]["replications_run"] == 0 and resumed["chosen"] == s["chosen"]
    assert "Out-of-sample check: 20 fresh replications, seed 1000006 — holds" in text


def test_an_infeasible_problem_exits_3_naming_the_binding_constraint_and_the_closest_design(searched, tmp_path):
    path, first, _ = searched
    out = tmp_path / "copy"
    shutil.copytree(first, out)  # a design folder holding another problem's results and evaluations
    (out / "notes.txt").write_text("mine")  # and a file of the user's
    before = json.loads((out / "manifest.json").read_text())["files"]
    bad = write(path.parent, "impossible.yaml", problem_dict(  # every design of the grid, on the first search's replications
        constraints=["failure(charity) <= 0.25", "outcome_rate >= 0.9"],
        search={"seed": 3, "method": "grid", "grid_replications": 10, "first_replications": 10, "max_replications": 10,
                "final_replications": 20}))
    code, text = run_design([bad, "--out", out, "--executor", "serial"])  # its own kind of folder: no --overwrite needed
    assert code == 3, text
    assert "No design meets every constraint" in text and "Binding constraint: outcome_rate >= 0.9" in text
    assert "no design evaluated met outcome_rate >= 0.9" in text
    s = json.loads((out / "summary.json").read_text())
    assert s["chosen"] is None and s["binding"]["constraint"] == "outcome_rate >= 0.9"
    load_scenario(out / s["closest"]["file"])
    assert s["effort"]["replications_reused"] > 0  # the designs the first search ran were not run again
    assert s["method"] == "grid" and s["effort"]["designs"] == 9
    # the earlier results not written again are gone, its evaluations kept and listed, the user's file untouched
    files = json.loads((out / "manifest.json").read_text())["files"]
    assert (out / "notes.txt").read_text() == "mine" and "notes.txt" not in files
    assert {f for f in before if f.startswith("evaluations/")} <= set(files)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != "notes.txt") == sorted(files)
    assert not (out / "designs" / "chosen.yaml").exists() and "designs/chosen.yaml" in before


def test_a_folder_of_other_files_is_refused_before_any_work_unless_overwrite(tmp_path, small_scenario):
    args = [small_scenario, "--lever", "contract.service_fee.share_of_value", "--target", "failure(charity) <= 0.5",
            "--range", 0, 0.04, "--step", 0.02, "-n", 10, "--verify-replications", 10, "--executor", "serial", "--quiet"]
    mine = tmp_path / "mine"
    (mine / "evaluations").mkdir(parents=True)
    (mine / "notes.txt").write_text("keep me")
    code, text = run_design([*args, "--out", mine])
    assert code == 2 and "not written by pbrsim" in text and "--overwrite" in text
    code, text = run_design([*args, "--out", mine, "--overwrite"])  # its evaluations/ would mix with the user's
    assert code == 2 and "'evaluations' was not written by pbrsim" in text
    assert sorted(p.name for p in mine.iterdir()) == ["evaluations", "notes.txt"] and not any((mine / "evaluations").iterdir())
    (mine / "evaluations").rmdir()
    code, text = run_design([*args, "--out", mine, "--overwrite"])
    assert code == 0, text
    assert (mine / "notes.txt").read_text() == "keep me" and (mine / "curve.csv").exists()
    assert "notes.txt" not in json.loads((mine / "manifest.json").read_text())["files"]


def test_the_shipped_design_problems_read_without_problems():
    root = Path(__file__).resolve().parents[1] / "scenarios" / "design"
    commissioner = load_problem(root / "parking_commissioner.yaml")
    assert [lv.size for lv in commissioner.levers] == [26, 36, 33] and len(commissioner.compare) == 5
    assert commissioner.objective.text == "minimise spend"
    finance = load_problem(root / "east_charity_terms.yaml")
    assert finance.objective.text == "maximise margin(prime_plc)"
    assert [c.text for c in finance.constraints] == ["failure(east_charity) <= 0.05"]


def test_the_design_page_renders_in_headless_chromium_with_readable_charts(searched, tmp_path):
    """The design report loads in a real browser with its charts and no console error; no chart has repeated tick
    labels or overlapping text (the check every report type passes)."""
    import shutil
    import subprocess

    from pbrsim.report.design import design_charts

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium is not installed (Debian package `chromium`; .ci/run installs it)")
    _, out, s = searched
    charts = design_charts(s)
    assert charts and all(c.problems == () for c in charts), [(c.name, c.problems) for c in charts]
    r = CliRunner().invoke(main, ["report", str(out), "--out", str(tmp_path / "page"), "--quiet"])
    assert r.exit_code == 0, r.output
    page = tmp_path / "page" / "design.html"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
             "--v=0", "--virtual-time-budget=5000", "--dump-dom"]
    dom = subprocess.run([chromium, *flags, page.resolve().as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<h1>" in dom.stdout and s["chosen"]["id"] in dom.stdout
    # headline findings first, quoting the chosen design's objective with its interval
    from pbrsim.design.summary import fmt_estimate

    assert dom.stdout.index("Headline findings") < dom.stdout.index("<table")
    spend = fmt_estimate(s["chosen"]["estimates"]["spend"], s["figures"]["spend"]["unit"], s["currency"])
    assert spend.split(" ")[0] in dom.stdout and "It meets every constraint" in dom.stdout
    assert dom.stdout.count("<img ") == len(charts)
    problems = [line for line in dom.stderr.splitlines()
                if "CONSOLE" in line or "net::ERR" in line or "Failed to load" in line or "Not allowed to load" in line]
    assert not problems, problems
