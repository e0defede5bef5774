"""The cash ledger: every movement of money is one row from a payer to a payee, in integer pence.

Rows hold small integer codes into fixed vocabularies (parties, kinds, items, segments) so that a
replication's ledger is a few numpy arrays; ``frame`` turns them into a tidy table with categories.
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


class Ledger:
    """Append-only rows plus running balances, so the engine can read cash without re-summing."""

    def __init__(self, vocab: Vocabulary, opening: dict[int, int]):
        self.vocab = vocab
        self.rows: list[tuple[int, int, int, int, int, int, int]] = []
        self.opening = np.zeros(len(vocab.parties), dtype=np.int64)
        for p, amount in opening.items():
            self.opening[p] = amount
        self.balance = self.opening.copy()
        self.no_segment = len(vocab.segments)

    def post(self, month: int, payer: int, payee: int, kind: int, amount: int, item: int, segment: int | None = None):
        if amount < 0:
            raise ValueError(f"negative ledger amount {amount} ({KINDS[kind]})")
        if amount == 0:
            return
        self.rows.append((month, payer, payee, kind, item, self.no_segment if segment is None else segment, int(amount)))
        self.balance[payer] -= amount
        self.balance[payee] += amount

    def arrays(self) -> dict[str, np.ndarray]:
        a = np.array(self.rows, dtype=np.int64).reshape(-1, len(LEDGER_COLUMNS))
        return {col: a[:, i] for i, col in enumerate(LEDGER_COLUMNS)}

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


def flows(a: dict[str, np.ndarray], party: int, horizon: int, kind: int | None = None, incoming: bool = True) -> np.ndarray:
    """Money into (or out of) ``party`` per month, optionally of one kind, from ledger arrays."""
    sel = (a["payee"] if incoming else a["payer"]) == party
    if kind is not None:
        sel &= a["kind"] == kind
    out = np.zeros(horizon, dtype=np.int64)
    np.add.at(out, a["month"][sel], a["amount"][sel])
    return out


def cash_curve(a: dict[str, np.ndarray], party: int, opening: int, horizon: int) -> np.ndarray:
    """End-of-month cash of ``party`` for months 0..horizon-1, derived from ledger rows alone."""
    net = flows(a, party, horizon, incoming=True) - flows(a, party, horizon, incoming=False)
    return opening + np.cumsum(net)
