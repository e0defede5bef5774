"""Writing results: Parquet tables, summary.json and manifest.json, all-or-nothing.

Files go to a temporary sibling folder that replaces the target only once everything is written,
so an error or an interruption never leaves a half-written result folder behind.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import __version__


def jsonable(obj):
    """Plain JSON types: numpy numbers to Python, NaN to null."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return None if math.isnan(f) else f
    return obj


def write_parquet(df: pd.DataFrame, path: Path, metadata: dict[str, str]):
    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta.update({f"pbrsim.{k}".encode(): str(v).encode() for k, v in metadata.items()})
    pq.write_table(table.replace_schema_metadata(meta), path)


def manifest(scenario_hash: str | None, seed: int | None, extra: dict | None = None) -> dict:
    return {
        "package": "pbrsim",
        "version": __version__,
        "scenario_sha256": scenario_hash,
        "seed": seed,
        "command_line": " ".join(["pbrsim"] + sys.argv[1:]) if sys.argv else None,
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **(extra or {}),
    }


def write_folder(out: str | Path, tables: dict[str, pd.DataFrame], summary: dict, manifest_data: dict) -> Path:
    """Write tables and JSON files into ``out`` atomically (replacing an earlier run there)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        meta = {"scenario_sha256": manifest_data.get("scenario_sha256"), "seed": manifest_data.get("seed"), "version": __version__}
        for name, df in tables.items():
            write_parquet(df, tmp / f"{name}.parquet", meta)
        (tmp / "summary.json").write_text(json.dumps(jsonable(summary), indent=2) + "\n")
        (tmp / "manifest.json").write_text(json.dumps(jsonable(manifest_data), indent=2) + "\n")
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
