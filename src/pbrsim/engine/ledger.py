"""The cash ledger: every movement of money is one row from a payer to a payee, in integer pence.

Rows hold small integer codes into fixed vocabularies (parties, kinds, items, segments) so that a
replication's ledger is a few numpy arrays; the engine posts for a batch of replications at once, and
``LedgerRows.frame`` turns one replication's rows into a tidy table with categories.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LEDGER_COLUMNS = ["month", "payer", "payee", "kind", "item", "segment", "amount"]
KINDS = ("service_fee", "attachment", "milestone", "outcome", "sustainment", "fee_for_service", "delivery", "overhead", "interest",
         "clawback", "investment", "repayment")

# Parties that are not organisations in the model
STAFF_AND_SUPPLIERS = "staff_and_suppliers"
LENDER = "lender"


@dataclass(frozen=True)
class Vocabulary:
    """The fixed names a ledger's codes refer to; identical for every replication of a model."""

    parties: tuple[str, ...]
    items: tuple[str, ...]
    segments: tuple[str, ...]  # code len(segments) stands for "no segment"

    def party(self, name: str) -> int:
        return self.parties.index(name)

    def item(self, name: str) -> int:
        return self.items.index(name)


class Rows:
    """Rows of a table for a batch of replications, appended in chunks: ``add(reps, col=value, ...)`` adds
    one row per batch position in ``reps`` (values: one per row, or one for all). ``arrays`` returns int64
    columns grouped by replication (``rep``: batch position), each replication's rows in the order added."""

    def __init__(self, columns: list[str]):
        self.columns = list(columns)
        self.reps: list[np.ndarray] = []
        self.values: dict[str, list] = {c: [] for c in self.columns}
        self.varying: set[str] = set()  # columns given an array in some chunk

    def add(self, reps: np.ndarray, **values):
        if not len(reps):
            return
        self.reps.append(reps)
        for col in self.columns:
            v = values[col]
            if isinstance(v, np.ndarray):
                self.varying.add(col)
            self.values[col].append(v)

    def __len__(self) -> int:
        return sum(len(r) for r in self.reps)

    def arrays(self) -> dict[str, np.ndarray]:
        if not self.reps:
            return {c: np.zeros(0, dtype=np.int64) for c in ["rep"] + self.columns}
        lengths = np.array([len(r) for r in self.reps])
        reps = np.concatenate(self.reps)
        order = np.argsort(reps.astype(np.uint16) if reps.max(initial=0) < 1 << 16 else reps, kind="stable")
        out = {"rep": reps[order].astype(np.int64)}
        for col in self.columns:
            vals = self.values[col]
            if col in self.varying:
                col_values = np.concatenate([v if isinstance(v, np.ndarray) else np.full(n, v) for v, n in zip(vals, lengths)])
            else:
                col_values = np.repeat(np.array(vals, dtype=np.int64), lengths)
            out[col] = col_values.astype(np.int64, copy=False)[order]
        return out


class Ledger:
    """The ledgers of a batch of replications: rows plus running balances ``[R, parties]``.

    ``post`` moves money for many replications at once (one row for each replication given, none where
    the amount is 0); ``arrays`` returns the rows grouped by replication (``rep``: batch position), each
    replication's rows in the order they were posted.
    """

    def __init__(self, vocab: Vocabulary, opening: dict[int, int], replications: int = 1):
        self.vocab = vocab
        self.opening = np.zeros(len(vocab.parties), dtype=np.int64)
        for p, amount in opening.items():
            self.opening[p] = amount
        self.balance = np.tile(self.opening, (replications, 1))
        self.no_segment = len(vocab.segments)
        self.reps: list[np.ndarray] = []
        self.amounts: list[np.ndarray] = []
        self.fields: list = []  # per post: month, payer, payee, kind, item, segment (each a value, or one per row)

    def post(self, reps: np.ndarray, month: int, payer: int, payee: int, kind: int, amounts: np.ndarray, item: int,
             segment: int | None = None):
        """Pay ``amounts[i]`` pence from ``payer`` to ``payee`` in batch position ``reps[i]`` (positions distinct)."""
        amounts = np.asarray(amounts, dtype=np.int64)
        if not amounts.all():  # zeros are not recorded; a negative amount is a fault
            keep = amounts != 0
            reps, amounts = reps[keep], amounts[keep]
        if not len(amounts):
            return
        if amounts.min() < 0:
            raise ValueError(f"negative ledger amount {int(amounts.min())} ({KINDS[kind]})")
        self.balance[reps, payer] -= amounts
        self.balance[reps, payee] += amounts
        self.reps.append(reps)
        self.amounts.append(amounts)
        self.fields.append((month, payer, payee, kind, item, self.no_segment if segment is None else segment))

    def post_rows(self, reps: np.ndarray, month: int, payer, payee, kind, amounts: np.ndarray, item, segment):
        """Several rows per replication at once: ``payer``, ``payee``, ``kind``, ``item`` and ``segment`` (None for no
        segment) are each one value or one per row; each replication's rows are kept in the order given."""
        amounts = np.asarray(amounts, dtype=np.int64)
        fields = [month, payer, payee, kind, item, self.no_segment if segment is None else segment]
        keep = amounts != 0
        if not keep.all():
            reps, amounts = reps[keep], amounts[keep]
            fields = [f[keep] if isinstance(f, np.ndarray) else f for f in fields]
        if not len(amounts):
            return
        if amounts.min() < 0:
            raise ValueError(f"negative ledger amount {int(amounts.min())}")
        for col, sign in ((1, -1), (2, 1)):
            party = fields[col]
            if not isinstance(party, np.ndarray):
                self.balance[:, party] += sign * np.rint(np.bincount(reps, weights=amounts, minlength=len(self.balance))).astype(np.int64)
            else:
                np.add.at(self.balance, (reps, party), sign * amounts)
        self.reps.append(reps)
        self.amounts.append(amounts)
        self.fields.append(fields)

    def arrays(self) -> dict[str, np.ndarray]:
        """All rows as int64 columns (``rep``: batch position, then LEDGER_COLUMNS), grouped by replication."""
        if not self.reps:
            return {c: np.zeros(0, dtype=np.int64) for c in ["rep"] + LEDGER_COLUMNS}
        lengths = np.array([len(r) for r in self.reps])
        reps = np.concatenate(self.reps)
        order = np.argsort(reps.astype(np.uint16) if reps.max(initial=0) < 1 << 16 else reps, kind="stable")
        ends = np.cumsum(lengths)
        out = {"rep": reps[order].astype(np.int64)}
        varies = [i for i, f in enumerate(self.fields) if not isinstance(f, tuple)]  # posts with values per row
        for j, col in enumerate(LEDGER_COLUMNS[:-1]):
            per_row = [i for i in varies if isinstance(self.fields[i][j], np.ndarray)]
            values = np.repeat(np.array([0 if isinstance(f[j], np.ndarray) else f[j] for f in self.fields], dtype=np.int64), lengths)
            for i in per_row:
                values[ends[i] - lengths[i]:ends[i]] = self.fields[i][j]
            out[col] = values[order]
        out["amount"] = np.concatenate(self.amounts)[order]
        return out


class LedgerRows:
    """One replication's ledger rows (columns as int64 arrays) and its parties' vocabulary."""

    def __init__(self, vocab: Vocabulary, columns: dict[str, np.ndarray]):
        self.vocab = vocab
        self.columns = columns

    def arrays(self) -> dict[str, np.ndarray]:
        return {col: self.columns[col] for col in LEDGER_COLUMNS}

    def frame(self, replication: int):
        """The rows as a tidy DataFrame with categories (pandas loads here, not with the engine)."""
        import pandas as pd

        a = self.arrays()
        v = self.vocab
        return pd.DataFrame({
            "replication": np.full(len(a["month"]), replication, dtype=np.int32),
            "month": a["month"].astype(np.int32),
            "payer": pd.Categorical.from_codes(a["payer"], categories=list(v.parties)),
            "payee": pd.Categorical.from_codes(a["payee"], categories=list(v.parties)),
            "kind": pd.Categorical.from_codes(a["kind"], categories=list(KINDS)),
            "item": pd.Categorical.from_codes(a["item"], categories=list(v.items)),
            "segment": pd.Categorical.from_codes(np.where(a["segment"] == len(v.segments), -1, a["segment"]), categories=list(v.segments)),
            "amount": a["amount"],
        })


def flows_by_rep(a: dict[str, np.ndarray], party: int, reps: int, horizon: int, kind: int | None = None,
                 incoming: bool = True) -> np.ndarray:
    """Money into (or out of) ``party`` per replication and month, optionally of one kind, from a batch's ledger
    arrays (with ``rep``): int64 ``[reps, horizon]``."""
    sel = (a["payee"] if incoming else a["payer"]) == party
    if kind is not None:
        sel &= a["kind"] == kind
    cell = a["rep"][sel] * horizon + a["month"][sel]
    # float sums of integer pence are exact below 2**53 (£90 trillion)
    return np.rint(np.bincount(cell, weights=a["amount"][sel], minlength=reps * horizon)).astype(np.int64).reshape(reps, horizon)
