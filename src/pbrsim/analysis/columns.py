"""Run tables as numpy columns of codes, grouped by replication: what per-replication figures are summed from.

A table reaches the analysis either as the engine's columns (``engine.records``: integer codes, -1 for a
month that never came) or as the tidy DataFrame made from them (categories, nullable months). ``Table``
reads either the same way — codes into the model's vocabularies, -1 for null — converting a column only
when a figure asks for it. ``Batch`` maps each row to its replication's position, so that every
figure of a whole batch of replications is one ``bincount`` or ``reduceat`` instead of a pass per replication.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..engine.ledger import KINDS
from ..engine.records import Tables

ROW_DTYPE = np.intp


def _vocabularies(model) -> dict[str, tuple[str, ...]]:
    pw, v = model.pathway, model.vocab
    return {"segment": pw.segments, "final_state": pw.states, "payer": v.parties, "payee": v.parties,
            "referred_to": v.parties, "organisation": v.parties, "kind": KINDS, "item": v.items}


class Table:
    """One table's columns as numpy arrays of codes; nulls (no segment, a month that never came) as -1."""

    def __init__(self, model, name: str, data):
        self.name = name
        self.data = data
        self.vocab = _vocabularies(model)
        self.no_segment = len(model.pathway.segments)
        self.is_frame = not isinstance(data, Mapping)
        self._cache: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.data) if self.is_frame else len(self.data["replication"])

    def __contains__(self, col: str) -> bool:
        return col in self.data.columns if self.is_frame else col in self.data

    def __getitem__(self, col: str) -> np.ndarray:
        out = self._cache.get(col)
        if out is None:
            out = self._cache[col] = self._convert(col)
        return out

    def _convert(self, col: str) -> np.ndarray:
        if not self.is_frame:
            a = np.asarray(self.data[col])
            if col == "segment" and self.name != "clients":  # engine code for "no segment" -> -1, as a null in the frame
                a = np.where(a == self.no_segment, -1, a)
            return a
        import pandas as pd

        s = self.data[col]
        cats = self.vocab.get(col)
        if isinstance(s.dtype, pd.CategoricalDtype) and (cats is None or tuple(s.cat.categories) == tuple(cats)):
            return s.cat.codes.to_numpy()
        if cats is not None and not pd.api.types.is_numeric_dtype(s.dtype):  # names: codes in the model's vocabulary
            return pd.Categorical(s.astype(object), categories=list(cats)).codes
        if isinstance(s.dtype, pd.api.extensions.ExtensionDtype):  # nullable months: null -> -1
            return s.to_numpy(dtype=s.dtype.numpy_dtype, na_value=-1)
        return s.to_numpy()

    def code(self, col: str, name: str) -> int:
        """The code of ``name`` in ``col``'s vocabulary (-2, matching nothing, when it is not there)."""
        cats = self.vocab[col]
        return cats.index(name) if name in cats else -2


class Batch:
    """The run tables of a batch of replications (any subset, any order), read as ``Table``s.

    ``labels`` are the replications present in the monthly table, sorted: one row of figures each.
    """

    def __init__(self, model, tables: Mapping):
        self.model = model
        self._tables = tables
        self._read: dict[str, Table] = {}
        self._rows: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        self.labels = np.unique(self.table("monthly")["replication"])  # sorted, in the table's dtype
        self.n = len(self.labels)

    def table(self, name: str) -> Table:
        t = self._read.get(name)
        if t is None:
            if isinstance(self._tables, Tables):  # the engine's columns: no DataFrame needed
                data = self._tables.columns(name)
            else:
                data = self._tables[name]
            t = self._read[name] = data if isinstance(data, Table) else Table(self.model, name, data)
        return t

    def rows(self, name: str) -> tuple[np.ndarray, np.ndarray | None]:
        """Position of each row's replication, and a mask of rows whose replication is in the batch (None: all)."""
        if name not in self._rows:
            self._rows[name] = self._positions(self.table(name))
        return self._rows[name]

    def _positions(self, table: Table) -> tuple[np.ndarray, np.ndarray | None]:
        rep = table["replication"]
        if self.n == 1:
            pos = np.zeros(len(rep), dtype=ROW_DTYPE)
            keep = rep == self.labels[0]
        else:
            pos = np.searchsorted(self.labels, rep).astype(ROW_DTYPE, copy=False)
            np.minimum(pos, self.n - 1, out=pos)
            keep = self.labels[pos] == rep
        if keep.all():
            return pos, None
        return np.where(keep, pos, 0), keep

    def count(self, pos: np.ndarray, keep: np.ndarray | None, where: np.ndarray | None = None) -> np.ndarray:
        """Rows per replication (where ``where``), int64."""
        sel = and_(keep, where)
        p = pos if sel is None else pos[sel]
        return np.bincount(p, minlength=self.n).astype(np.int64, copy=False)

    def total(self, pos: np.ndarray, keep: np.ndarray | None, values: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
        """Integer sum of ``values`` per replication (where ``where``), exact in int64."""
        sel = and_(keep, where)
        if sel is not None:
            pos, values = pos[sel], values[sel]
        out = np.zeros(self.n, dtype=np.int64)
        np.add.at(out, pos, values.astype(np.int64, copy=False))
        return out


def and_(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    """``a & b`` where None means all rows."""
    if a is None:
        return b
    if b is None:
        return a
    return a & b


class Groups:
    """Rows of one table grouped by (replication, key) in the table's own row order within a group."""

    def __init__(self, batch: Batch, name: str, key: str, key_code: int):
        table = batch.table(name)
        pos, keep = batch.rows(name)
        sel = table[key] == key_code
        if keep is not None:
            sel &= keep
        self.index = np.flatnonzero(sel)
        pos = pos[self.index]
        if len(pos) > 1 and np.any(pos[1:] < pos[:-1]):  # not in replication order: a stable sort keeps row order within groups
            order = np.argsort(pos, kind="stable")
            self.index, pos = self.index[order], pos[order]
        self.present = np.zeros(batch.n, dtype=bool)
        self.present[pos] = True
        self.starts = np.flatnonzero(np.r_[True, pos[1:] != pos[:-1]]) if len(pos) else np.zeros(0, dtype=np.intp)
        self.sizes = np.diff(np.r_[self.starts, len(pos)])
        self.n = batch.n
        self.table = table

    def values(self, col: str) -> np.ndarray:
        return self.table[col][self.index]

    def _spread(self, per_group: np.ndarray, fill) -> np.ndarray:
        """Per-group values to one value per replication (``fill`` where the group is absent)."""
        if self.present.all():
            return per_group
        out = np.full(self.n, fill, dtype=np.result_type(per_group, type(fill)))
        out[self.present] = per_group
        return out

    def total(self, col: str | np.ndarray, fill=0) -> np.ndarray:
        v = self.values(col) if isinstance(col, str) else col
        if len(v) == 0:
            return np.full(self.n, fill)
        return self._spread(np.add.reduceat(v.astype(np.int64, copy=False), self.starts), fill)

    def minimum(self, col: str, fill) -> np.ndarray:
        v = self.values(col)
        return self._spread(np.minimum.reduceat(v, self.starts), fill) if len(v) else np.full(self.n, fill)

    def first_argmin(self, col: str) -> np.ndarray:
        """Row (into the table) of each group's first smallest value (every replication must have the group)."""
        v = self.values(col)
        mins = np.minimum.reduceat(v, self.starts)
        at = np.arange(len(v))
        hit = np.where(v == np.repeat(mins, self.sizes), at, len(v))
        return self.index[np.minimum.reduceat(hit, self.starts)]

    def last(self, col: str, fill) -> np.ndarray:
        v = self.values(col)
        return self._spread(v[self.starts + self.sizes - 1], fill) if len(v) else np.full(self.n, fill)
