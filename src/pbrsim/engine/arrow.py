"""Arrow tables straight from the engine's column arrays, with the pandas metadata ``pd.read_parquet`` uses.

A run's Parquet files are written from these without loading pandas (about a third of a second of start-up),
yet read back with the dtypes the in-memory DataFrames have: categories, nullable month columns, strings.
Each table equals ``pa.Table.from_pandas(frame, preserve_index=False)`` of the same frame, metadata included
(tests/test_arrow_tables.py checks every table of every shipped scenario).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa


@dataclass(frozen=True)
class Column:
    """One column: its Arrow array and what pandas' metadata says of it."""

    array: pa.Array
    pandas_type: str
    numpy_type: str
    metadata: dict | None = None


def plain(values: np.ndarray) -> Column:
    """A numpy column of numbers or booleans, kept as it is (NaN stored as null, as pandas does)."""
    values = np.asarray(values)
    if values.dtype == object:
        return strings(values)
    name = values.dtype.name
    null = np.isnan(values) if values.dtype.kind == "f" else None
    return Column(_array(values, null), "bool" if name == "bool" else name, name)


def nullable_int(values: np.ndarray, null: np.ndarray) -> Column:
    """A nullable integer column (pandas ``Int16`` and the like): ``values`` where ``null`` is False."""
    return Column(_array(values, null), values.dtype.name, values.dtype.name.capitalize())


def categorical(codes: np.ndarray, categories: tuple[str, ...]) -> Column:
    """A pandas categorical (codes -1 are missing): a dictionary array with pandas' narrowest code type."""
    n = len(categories)
    index_type = np.int8 if n < 2 ** 7 else np.int16 if n < 2 ** 15 else np.int32
    codes = np.asarray(codes).astype(index_type)
    array = pa.DictionaryArray.from_arrays(_array(codes, codes < 0), _dictionary(tuple(categories)))
    return Column(array, "categorical", np.dtype(index_type).name, {"num_categories": n, "ordered": False})


def strings(values: np.ndarray) -> Column:
    """An object column of strings and None, as pandas 3 holds it (``str``; ``empty`` when it has no string)."""
    if all(v is None for v in values):
        return Column(pa.nulls(len(values)), "empty", "object")
    return Column(_strings(list(values)), "object", "str")


# Arrays are assembled from their buffers: ``pa.array`` on numpy data or a list loads pandas to check whether it
# was given a pandas object, which would cost ``pbrsim run`` a third of a second.

def _validity(null: np.ndarray | None) -> tuple[pa.Buffer | None, int]:
    if null is None or not null.any():
        return None, 0
    return pa.py_buffer(np.packbits(~null, bitorder="little")), int(null.sum())


def _array(values: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    """A primitive Arrow array over a numpy column (booleans bit-packed, as Arrow holds them)."""
    validity, nulls = _validity(null)
    if values.dtype == np.bool_:
        data = pa.py_buffer(np.packbits(values, bitorder="little"))
    else:
        data = pa.py_buffer(np.ascontiguousarray(values))
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [validity, data], null_count=nulls)


def _strings(values: list[str | None]) -> pa.Array:
    encoded = [b"" if v is None else v.encode("utf8") for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    validity, nulls = _validity(np.array([v is None for v in values], dtype=bool))
    return pa.Array.from_buffers(pa.large_string(), len(encoded), [validity, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))],
                                 null_count=nulls)


@lru_cache(maxsize=256)
def _dictionary(categories: tuple[str, ...]) -> pa.Array:
    return _strings(list(categories))


def table(columns: dict[str, Column]) -> pa.Table:
    """The Arrow table of ``columns`` (in order) with the schema metadata pandas reads back."""
    meta = {
        "index_columns": [],
        "column_indexes": [],
        "columns": [{"name": name, "field_name": name, "pandas_type": c.pandas_type, "numpy_type": c.numpy_type,
                     "metadata": c.metadata} for name, c in columns.items()],
        "attributes": {},
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": _pandas_version(),
    }
    arrays = [c.array for c in columns.values()]
    schema = pa.schema([pa.field(name, a.type) for name, a in zip(columns, arrays)],
                       metadata={b"pandas": json.dumps(meta).encode("utf8")})
    return pa.Table.from_arrays(arrays, schema=schema)


@lru_cache(maxsize=1)
def _pandas_version() -> str:
    """The installed pandas' version, as pandas writes it in the metadata, found without importing pandas (or
    ``importlib.metadata``, which alone costs a run 20 ms): the name of the ``pandas-VERSION.dist-info`` folder
    beside the package, else what ``importlib.metadata`` says."""
    from importlib.util import find_spec
    from pathlib import Path

    spec = find_spec("pandas")
    if spec is not None and spec.origin:
        found = sorted(Path(spec.origin).parent.parent.glob("pandas-*.dist-info"))
        if len(found) == 1:
            return found[0].name[len("pandas-"):-len(".dist-info")]
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pandas")
    except PackageNotFoundError:  # pandas is a dependency; a broken install still writes readable files
        return ""
