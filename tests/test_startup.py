"""Start-up: `import pbrsim`, `pbrsim --version` and `pbrsim validate` load only what they use.

What a command imports is a property of the code, checked here in a fresh interpreter (timings live in
benchmarks/bench_pipeline.py): pandas, pyarrow, scipy, matplotlib and SimPy load with the work that needs them.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
BLENDED = str(ROOT / "scenarios" / "blended_vcs.yaml")
HEAVY = ("pandas", "pyarrow", "scipy", "matplotlib", "simpy", "numpy", "rich.progress", "jinja2")

PROBE = """
import json, sys
sys.path.insert(0, {src!r})
args = {args!r}
code = None
if args is None:
    import pbrsim
else:
    from pbrsim.cli.main import main
    try:
        main(args)
    except SystemExit as exc:
        code = exc.code
print(json.dumps({{"code": code, "modules": sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})}}))
"""


def loaded(args: list[str] | None) -> tuple[object, set[str]]:
    """Exit code and the heavy top-level packages loaded by ``pbrsim ARGS`` (None: ``import pbrsim``)."""
    probe = PROBE.format(src=str(SRC), args=args, heavy=tuple(m.split(".")[0] for m in HEAVY))
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return res["code"], set(res["modules"])


@pytest.mark.parametrize("args", [None, ["--version"], ["validate", BLENDED]], ids=["import", "version", "validate"])
def test_start_up_loads_no_heavy_library(args):
    code, modules = loaded(args)
    assert code in (None, 0)
    assert modules.isdisjoint({"pandas", "pyarrow", "scipy", "matplotlib", "simpy", "numpy", "jinja2"}), modules
    assert "rich.progress" not in modules


def test_a_run_still_loads_what_it_needs(tmp_path):
    """The probe sees real imports: simulating loads SimPy, numpy and pyarrow (the Parquet files are built without
    pandas); the public-value appraisal, built on pandas, loads it."""
    code, modules = loaded(["run", BLENDED, "-n", "1", "--quiet", "--out", str(tmp_path / "run")])
    assert code in (None, 0) and (tmp_path / "run" / "summary.json").exists()
    assert {"simpy", "numpy", "pyarrow"} <= modules and "pandas" not in modules
    code, modules = loaded(["run", str(ROOT / "scenarios" / "early_action" / "homes_for_good.yaml"), "-n", "1", "--quiet",
                            "--out", str(tmp_path / "value")])
    assert code in (None, 0) and (tmp_path / "value" / "summary.json").exists()
    assert {"pandas", "simpy", "numpy"} <= modules


def test_every_command_is_registered_under_its_own_name():
    from pbrsim.cli import main as cli_main

    defined = {}
    for module in set(cli_main.COMMANDS.values()):
        for command in importlib.import_module(f"pbrsim.cli.{module}").COMMANDS:
            defined[command.name] = module
    assert defined == cli_main.COMMANDS
    listed = cli_main.main.list_commands(None)
    assert listed == sorted(defined)
    assert all(cli_main.main.get_command(None, name).name == name for name in listed)


def test_the_public_api_is_reachable_lazily():
    import pbrsim
    import pbrsim.simulate  # importing the submodule must not hide the function of the same name

    assert callable(pbrsim.simulate) and pbrsim.simulate.__module__ == "pbrsim.simulate"
    assert pbrsim.load_scenario(BLENDED).name == "blended_vcs"
    assert pbrsim.Scenario.__name__ == "Scenario" and pbrsim.SimulationResult.__name__ == "SimulationResult"
    assert issubclass(pbrsim.ScenarioError, Exception)
    from pbrsim import simulate

    assert simulate is pbrsim.simulate
    with pytest.raises(AttributeError):
        pbrsim.no_such_name  # noqa: B018
