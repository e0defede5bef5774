"""One flag vocabulary: every click command is walked, and each option of the shared vocabulary has the same
spelling, short form and help wherever it appears (docs/cli.md); old spellings still work, hidden."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from pbrsim.cli import common
from pbrsim.cli.main import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]
CLI_DOC = (ROOT / "docs" / "cli.md").read_text()

# option name -> (its spellings, help it must have: exact text, or None where each command says what it is for)
VOCABULARY = {
    "seed": (["--seed"], None),
    "replications": (["--replications", "-n"], None),
    "workers": (["--workers", "-j"], None),
    "executor": (["--executor"], common.EXECUTOR_HELP),
    "scheduler": (["--scheduler"], common.SCHEDULER_HELP),
    "out": (["--out", "-o"], None),
    "with_report": (["--report"], None),
    "fmt": (["--format"], common.FORMAT_HELP),
    "as_json": (["--json"], None),
    "quiet": (["--quiet", "-q"], None),
    "overwrite": (["--overwrite"], None),
    "allow_large": (["--allow-large"], None),
}


def commands() -> dict[str, click.Command]:
    ctx = click.Context(main)
    return {name: main.get_command(ctx, name) for name in sorted(COMMANDS)}


def visible_options(cmd: click.Command) -> list[click.Option]:
    return [p for p in cmd.params if isinstance(p, click.Option) and not p.hidden]


def test_every_registered_command_loads_and_has_help():
    for name, cmd in commands().items():
        assert cmd is not None, name
        assert cmd.help and len(cmd.help.split()) >= 5, f"{name} has no real help text"
        for opt in visible_options(cmd):
            assert opt.help or opt.is_flag and opt.name == "help", f"{name} {opt.opts} has no help"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_shared_options_have_one_spelling_and_one_help(name):
    cmd = commands()[name]
    for opt in visible_options(cmd):
        if opt.name in VOCABULARY:
            spellings, help_text = VOCABULARY[opt.name]
            assert sorted(opt.opts + opt.secondary_opts) == sorted(spellings), f"{name}: {opt.opts}"
            if help_text is not None:
                assert opt.help == help_text, f"{name} {opt.opts[0]}"
        # a short form means one thing everywhere
        for short in ("-o", "-n", "-j", "-q"):
            if short in opt.opts:
                assert opt.name == {"-o": "out", "-n": "replications", "-j": "workers", "-q": "quiet"}[short], f"{name}: {short}"


def test_commands_that_run_replications_take_the_whole_run_vocabulary():
    cmds = commands()
    for name in ("run", "compare", "batch", "stress"):
        names = {o.name for o in visible_options(cmds[name])}
        assert {"seed", "replications", "workers", "executor", "out", "quiet"} <= names, name
    for name in ("run", "compare", "stress"):
        assert "with_report" in {o.name for o in visible_options(cmds[name])}, name


def test_every_command_and_shared_option_is_documented():
    for name in COMMANDS:
        assert re.search(rf"`pbrsim {re.escape(name)}\b", CLI_DOC), f"docs/cli.md does not describe pbrsim {name}"
    for spellings, _ in VOCABULARY.values():
        assert f"`{spellings[0]}" in CLI_DOC, spellings[0]


def test_old_spellings_work_hidden_with_a_note(tmp_path):
    batch = commands()["batch"]
    force = next(p for p in batch.params if "--force" in p.opts)
    assert force.hidden and force.name == "accept_changes"
    # --force still accepts a changed experiment, and says what it is called now
    exp = tmp_path / "e.yaml"
    exp.write_text(f"base: {ROOT / 'tests' / 'fixtures' / 'valid_small.yaml'}\nreplications: 2\ndesigns: [{{name: a}}]\n")
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["batch", str(exp), "-o", str(out), "--executor", "serial", "-q"])
    assert r.exit_code == 0, r.output
    exp.write_text(exp.read_text().replace("replications: 2", "replications: 3"))
    r = CliRunner().invoke(main, ["batch", str(exp), "-o", str(out), "--executor", "serial", "-q", "--force"])
    assert r.exit_code == 0, r.output
    assert "--force is now --accept-changes" in r.output


def test_stress_o_names_an_output_folder_and_the_old_meaning_is_caught(tmp_path):
    small = str(ROOT / "tests" / "fixtures" / "valid_small.yaml")
    r = CliRunner().invoke(main, ["stress", small, "-o", "small_charity", "-n", "2"])
    assert r.exit_code == 2
    assert "--organisation small_charity" in r.output and not (Path.cwd() / "small_charity").exists()


def test_completion_prints_a_script_for_each_shell():
    for shell in ("bash", "zsh", "fish"):
        r = CliRunner().invoke(main, ["completion", shell])
        assert r.exit_code == 0 and "_PBRSIM_COMPLETE" in r.output, shell
