"""docs/sources.md: every publication cited in the repository, by key; no citation of a path outside it.

A citation is a key in square brackets, e.g. ``[wpc-2013-wp]``: lower-case words joined by hyphens, one of
them a year or ``nd`` (no date). Each entry of the shipped unit-cost table (``src/pbrsim/value/unit_costs.yaml``)
names its publication by key in its ``source`` field, which counts as a citation too.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "docs" / "sources.md"
UNIT_COSTS = ROOT / "src" / "pbrsim" / "value" / "unit_costs.yaml"
CITATION = re.compile(r"\[([a-z][a-z0-9]*(?:-[a-z0-9]+)+)\]")
ENTRY = re.compile(r"^\| `([a-z0-9-]+)` \| (.+?) \| (.+?) \| (\d{4}|n\.d\.) \| (.+?) \|$", re.M)
CITING = ("scenarios", "docs", "src", "README.md", "benchmarks")
OUTSIDE = ("shared/reference", "../shared", "/work/")  # paths that exist only on the machine the project was built on


def _is_key(word: str) -> bool:
    return any(re.fullmatch(r"(19|20)\d\d|nd", part) for part in word.split("-"))


def _files(*roots: str) -> list[Path]:
    tracked = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    out = []
    for name in tracked:
        path = ROOT / name
        if path.is_file() and (not roots or name.split("/")[0] in roots) and path.suffix not in (".png", ".parquet"):
            out.append(path)
    return out


def _entries() -> dict[str, tuple[str, ...]]:
    return {m.group(1): m.groups()[1:] for m in ENTRY.finditer(SOURCES.read_text(encoding="utf-8"))}


def _unit_cost_sources() -> dict[str, object]:
    """Shipped unit-cost name -> its ``source`` field."""
    return {name: entry.get("source") for name, entry in yaml.safe_load(UNIT_COSTS.read_text(encoding="utf-8")).items()}


def _citations() -> dict[str, set[str]]:
    """Key -> files citing it (docs/sources.md itself does not count)."""
    cited: dict[str, set[str]] = {}
    for key in _unit_cost_sources().values():
        if isinstance(key, str):
            cited.setdefault(key, set()).add(str(UNIT_COSTS.relative_to(ROOT)))
    for path in _files(*CITING):
        if path == SOURCES:
            continue
        for word in CITATION.findall(path.read_text(encoding="utf-8", errors="replace")):
            if _is_key(word):
                cited.setdefault(word, set()).add(str(path.relative_to(ROOT)))
    return cited


def test_every_entry_has_a_title_a_publisher_a_year_and_an_address():
    entries = _entries()
    rows = [line for line in SOURCES.read_text(encoding="utf-8").splitlines() if line.startswith("| `")]
    assert len(entries) == len(rows) > 40, "a table row of docs/sources.md does not have the five columns"
    for key, (title, publisher, year, address) in entries.items():
        assert _is_key(key), f"{key}: a key names a year (or nd)"
        assert title.strip() and publisher.strip(), key
        assert "http" in address, f"{key}: no address"
        parts = key.split("-")
        assert ("nd" in parts) if year == "n.d." else (year in parts), f"{key}: the key does not name the year {year}"


def test_every_cited_key_is_listed():
    entries = _entries()
    unknown = {k: sorted(v) for k, v in _citations().items() if k not in entries}
    assert not unknown, f"cited but not in docs/sources.md: {unknown}"


def test_every_listed_publication_is_cited():
    cited = _citations()
    unused = sorted(k for k in _entries() if k not in cited)
    assert not unused, f"in docs/sources.md but cited nowhere: {unused}"


def test_every_scenario_with_sources_cites_keys():
    """Each shipped scenario, targets, experiment and stress file that names a source cites it by key."""
    cited_in = {f for files in _citations().values() for f in files}
    for path in _files("scenarios"):
        text = path.read_text(encoding="utf-8")
        if re.search(r"https?://", text):
            raise AssertionError(f"{path.relative_to(ROOT)}: cite docs/sources.md keys, not addresses")
        if re.search(r"(?i)\bsources?\b", text):
            assert str(path.relative_to(ROOT)) in cited_in, f"{path.relative_to(ROOT)} mentions sources but cites no key"


def test_every_shipped_unit_cost_names_a_listed_publication_by_key():
    """The unit-cost table cites by key like every other file: its addresses live in docs/sources.md alone."""
    entries = _entries()
    table = _unit_cost_sources()
    assert len(table) >= 7
    for name, key in table.items():
        assert isinstance(key, str) and _is_key(key), f"unit_costs.yaml: {name}: `source` must be a key of docs/sources.md"
        assert key in entries, f"unit_costs.yaml: {name}: source {key!r} is not in docs/sources.md"
    assert not re.search(r"https?://", UNIT_COSTS.read_text(encoding="utf-8")), "unit_costs.yaml: cite keys, not addresses"


def test_no_file_cites_a_path_outside_the_repository():
    me = Path(__file__).resolve()
    bad = []
    for path in _files():
        if path == me:  # this file names the patterns it looks for
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        bad += [f"{path.relative_to(ROOT)}: {p}" for p in OUTSIDE if p in text]
    assert not bad, bad
