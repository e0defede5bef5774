"""The scenario schema's validators kept beside the bytecode (``pbrsim.scenario.compiled``): a process that
restores them validates exactly as one that builds them, and the file is written, trusted and replaced only
by the rules bytecode follows.

Each case runs fresh interpreters on a copy of the package in the test's own folder, so the cache they share
is the copy's, never the source tree's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BROKEN = sorted((ROOT / "tests" / "fixtures" / "broken").glob("*.yaml"))
SHIPPED = sorted(p for p in (ROOT / "scenarios").rglob("*.yaml")
                 if not {"experiments", "stress", "portfolios", "design"} & set(p.relative_to(ROOT / "scenarios").parts[:-1])
                 and not p.name.endswith(".targets.yaml"))

PROBE = """
import json, sys
sys.path.insert(0, {src!r})
from pbrsim.scenario import compiled
from pbrsim.scenario.errors import ScenarioError
from pbrsim.scenario.schema import Scenario, load_scenario
out = {{"valid": {{}}, "refused": {{}}}}
for path in {shipped!r}:
    sc = load_scenario(path)
    out["valid"][path] = [sc.to_dict(), sc.model_dump_json(), repr(sc.organisation_specs), [o.model_dump() for o in sc.organisation_specs]]
for path in {broken!r}:
    try:
        load_scenario(path)
        out["refused"][path] = None
    except ScenarioError as exc:
        out["refused"][path] = [list(p) for p in exc.problems]
    except Exception as exc:  # a file the loader refuses before the schema (size, YAML) is still one answer
        out["refused"][path] = repr(exc)
import inspect
out["signature"] = str(inspect.signature(Scenario))
out["source"] = compiled.state["source"]
out["file"] = str(compiled.cache_file())
print(json.dumps(out))
"""


def probe(root: Path, *, write: bool = True, plugins_off: bool = True, shipped=None, broken=None, prefix=None) -> dict:
    """Validate files in a fresh interpreter running the copy of pbrsim under ``root`` (made on first use)."""
    src = root / "src"
    if not src.exists():
        shutil.copytree(ROOT / "src" / "pbrsim", src / "pbrsim", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONDONTWRITEBYTECODE", "PYDANTIC_DISABLE_PLUGINS", "PYTHONPYCACHEPREFIX")}
    if prefix is not None:
        env["PYTHONPYCACHEPREFIX"] = str(prefix)
    if not write:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    if plugins_off:
        env["PYDANTIC_DISABLE_PLUGINS"] = "__all__"
    code = PROBE.format(src=str(src), shipped=[str(p) for p in (SHIPPED if shipped is None else shipped)],
                        broken=[str(p) for p in (BROKEN if broken is None else broken)])
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root, timeout=300)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_restored_validators_accept_and_refuse_exactly_as_built_ones(tmp_path):
    built = probe(tmp_path)
    cache = Path(built["file"])
    assert built["source"] == "built" and cache.is_file()
    assert cache.parent == tmp_path / "src" / "pbrsim" / "scenario" / "__pycache__"  # beside the module's bytecode
    restored = probe(tmp_path)
    assert restored["source"] == "cache"
    assert restored == {**built, "source": "cache"}
    assert len(built["valid"]) >= 19 and len(built["refused"]) >= 100
    assert sum(v is not None for v in built["refused"].values()) >= 100  # the corpus really is refused
    # pydantic's plugin lookup on (the Python API's default) gives the same answers from the cache too
    assert probe(tmp_path, plugins_off=False, broken=BROKEN[:20]) == {**built, "source": "cache",
                                                                      "refused": {str(p): built["refused"][str(p)] for p in BROKEN[:20]}}


def test_nothing_is_written_when_python_writes_no_bytecode(tmp_path):
    out = probe(tmp_path, write=False, shipped=SHIPPED[:1], broken=[])
    assert out["source"] == "built" and not Path(out["file"]).exists()
    assert not list(tmp_path.rglob("scenario-schema.*"))


def test_a_bytecode_prefix_holds_the_file_too(tmp_path):
    prefix = tmp_path / "prefix"
    first = probe(tmp_path, prefix=prefix, shipped=SHIPPED[:1], broken=[])
    assert first["source"] == "built" and Path(first["file"]).is_file() and Path(first["file"]).is_relative_to(prefix)
    assert not (tmp_path / "src" / "pbrsim" / "scenario" / "__pycache__").exists()
    assert probe(tmp_path, prefix=prefix, shipped=SHIPPED[:1], broken=[])["source"] == "cache"


def test_a_damaged_or_untrusted_file_is_not_used_and_is_replaced(tmp_path):
    first = probe(tmp_path, shipped=SHIPPED[:2], broken=BROKEN[:5])
    cache = Path(first["file"])
    good = cache.read_bytes()
    cache.write_bytes(good[: len(good) // 2])  # truncated, as by a full disk
    again = probe(tmp_path, shipped=SHIPPED[:2], broken=BROKEN[:5])
    assert again == first  # built again (same answers), and a whole file written in its place
    assert len(cache.read_bytes()) > len(good) // 2
    assert probe(tmp_path, shipped=SHIPPED[:2], broken=BROKEN[:5]) == {**first, "source": "cache"}
    os.chmod(cache, 0o666)  # anyone may write it: not loaded (a pickle runs code, as bytecode does)
    again = probe(tmp_path, shipped=SHIPPED[:2], broken=BROKEN[:5])
    assert again == first  # built again, and the file replaced by one only its owner may write
    assert not cache.stat().st_mode & 0o022
    assert probe(tmp_path, shipped=SHIPPED[:2], broken=BROKEN[:5])["source"] == "cache"


def test_only_files_of_its_own_name_are_replaced(tmp_path):
    first = probe(tmp_path, shipped=SHIPPED[:1], broken=[])
    folder = Path(first["file"]).parent
    stale = folder / "scenario-schema.0123456789abcdef01234567.pickle"  # an earlier source's file
    stale.write_bytes(b"old")
    mine = folder / "notes.pickle"
    mine.write_bytes(b"a user's file")
    Path(first["file"]).unlink()
    again = probe(tmp_path, shipped=SHIPPED[:1], broken=[])
    assert again["source"] == "built" and Path(again["file"]).exists()
    assert not stale.exists() and mine.read_bytes() == b"a user's file"
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="needs root to make a file another user owns")
def test_a_file_another_user_owns_is_not_used(tmp_path):
    first = probe(tmp_path, shipped=SHIPPED[:1], broken=[])
    os.chown(first["file"], 12345, 12345)
    out = probe(tmp_path, shipped=SHIPPED[:1], broken=[])
    assert out["source"] == "built"
