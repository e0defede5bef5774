"""Arrow tables built from column arrays (``pbrsim.engine.arrow``) are exactly what pandas' own conversion gives,
for every kind of column the tables hold, so files written without pandas read back with the same dtypes.

Every table of every shipped scenario is checked the same way in tests/test_golden.py.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pbrsim.engine import arrow

ROOT = Path(__file__).resolve().parents[1]


def pandas_table(df: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(df, preserve_index=False)


def round_trip(table: pa.Table) -> pd.DataFrame:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return pd.read_parquet(io.BytesIO(buf.getvalue()))


RNG = np.random.default_rng(3)
N = 37
NULL = RNG.random(N) < 0.3
CATS_SMALL = tuple(f"c{i}" for i in range(5))
CATS_LARGE = tuple(f"item {i}" for i in range(300))  # past 127 categories pandas stores int16 codes
CODES = RNG.integers(-1, 5, N)
CODES_LARGE = RNG.integers(-1, 300, N)
FLOATS = np.where(NULL, np.nan, RNG.normal(size=N))
TEXT = np.array([None if n else f"transfer to org {i} é" for i, n in enumerate(NULL)], dtype=object)

CASES = {
    "int16": (arrow.plain(np.arange(N, dtype=np.int16)), np.arange(N, dtype=np.int16)),
    "int32": (arrow.plain(np.arange(N, dtype=np.int32) - 5), np.arange(N, dtype=np.int32) - 5),
    "int64": (arrow.plain(RNG.integers(-10**12, 10**12, N)), None),
    "float with NaN": (arrow.plain(FLOATS), FLOATS),
    "float without NaN": (arrow.plain(RNG.normal(size=N)), None),
    "bool": (arrow.plain(RNG.random(N) < 0.5), None),
    "nullable months": (arrow.nullable_int(np.where(NULL, -1, 7).astype(np.int16), NULL),
                        pd.arrays.IntegerArray(np.where(NULL, -1, 7).astype(np.int16), NULL)),
    "categorical with missing": (arrow.categorical(CODES, CATS_SMALL),
                                 pd.Categorical.from_codes(CODES, dtype=pd.CategoricalDtype(list(CATS_SMALL)))),
    "categorical, 300 categories": (arrow.categorical(CODES_LARGE, CATS_LARGE),
                                    pd.Categorical.from_codes(CODES_LARGE, dtype=pd.CategoricalDtype(list(CATS_LARGE)))),
    "strings with None": (arrow.plain(TEXT), TEXT),
    "only None": (arrow.plain(np.array([None] * N, dtype=object)), np.array([None] * N, dtype=object)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_kind_of_column_is_what_pandas_makes_of_it(name):
    column, values = CASES[name]
    if values is None:  # a plain numpy column: the array the Arrow column came from
        values = column.array.to_numpy(zero_copy_only=False)
    df = pd.DataFrame({"x": values, "n": np.arange(N)})
    ours = arrow.table({"x": column, "n": arrow.plain(np.arange(N))})
    assert ours.equals(pandas_table(df), check_metadata=True)
    back = round_trip(ours)
    pd.testing.assert_frame_equal(back, round_trip(pandas_table(df)))
    assert back["x"].dtype == df["x"].dtype


def test_empty_columns_too():
    df = pd.DataFrame({"a": np.zeros(0, dtype=np.int32), "c": pd.Categorical.from_codes([], dtype=pd.CategoricalDtype(["x"])),
                       "s": np.array([], dtype=object)})
    ours = arrow.table({"a": arrow.plain(np.zeros(0, dtype=np.int32)), "c": arrow.categorical(np.zeros(0, dtype=np.int64), ("x",)),
                        "s": arrow.plain(np.array([], dtype=object))})
    assert ours.equals(pandas_table(df), check_metadata=True)


def test_the_values_are_the_arrays_values():
    """Booleans are bit-packed and nulls come from the mask: check values one by one, not only against pandas."""
    flags = RNG.random(N) < 0.5
    assert arrow.plain(flags).array.to_pylist() == flags.tolist()
    months = arrow.nullable_int(np.where(NULL, -1, np.arange(N)).astype(np.int16), NULL).array.to_pylist()
    assert months == [None if n else i for i, n in enumerate(NULL)]
    cats = arrow.categorical(CODES, CATS_SMALL).array.to_pylist()
    assert cats == [None if c < 0 else CATS_SMALL[c] for c in CODES]


def test_a_run_writes_its_tables_without_loading_pandas(tmp_path):
    """`pbrsim run` of a scenario without a value section never imports pandas, and its files read back as
    the run's own tables (categories, nullable months), exactly as files written through pandas do."""
    probe = f"""
import sys
sys.path.insert(0, {str(ROOT / 'src')!r})
from pbrsim.cli.main import main
try:
    main(['run', {str(ROOT / 'scenarios' / 'blended_vcs.yaml')!r}, '-n', '3', '--seed', '5', '--out', {str(tmp_path / 'run')!r}])
except SystemExit as exc:
    assert exc.code in (None, 0), exc.code
print('pandas' in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.strip().splitlines()[-1] == "False"
    from pbrsim import load_scenario, simulate

    res = simulate(load_scenario(ROOT / "scenarios" / "blended_vcs.yaml"), seed=5, replications=3)
    for name, df in res.tables().items():
        back = pd.read_parquet(tmp_path / "run" / f"{name}.parquet")
        pd.testing.assert_frame_equal(back, round_trip(pandas_table(df)))
        if len(df):  # (an empty categorical comes back from Parquet without its categories, as through pandas)
            pd.testing.assert_frame_equal(back, df.reset_index(drop=True))
    assert len(res.clients) and len(res.ledger)
