"""Tidy tables from replications: columns gathered as numpy arrays, turned into DataFrames once.

Codes (segments, states, parties, items) become pandas categories; month columns use -1 for
'never' inside the engine and null in the tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

import numpy as np
import pandas as pd

from .run import Model, Replication
from .ledger import KINDS, flows
from ..model.pathway import FULL, MINIMAL

PAYMENT_KINDS = ("service_fee", "attachment", "milestone", "outcome", "sustainment", "fee_for_service")
COST_KINDS = ("delivery", "overhead", "interest", "clawback")
TABLES = ("clients", "ledger", "monthly", "claims", "settlements", "failures")


def replication_columns(model: Model, r: Replication) -> dict[str, dict[str, np.ndarray]]:
    """Every table's columns for one replication, as plain arrays of codes and integers."""
    pw, H = model.pathway, model.horizon
    n = len(r.segment)
    rep = np.int32(r.replication)
    org_party = np.array([model.vocab.party(o.name) for o in model.organisations], dtype=np.int16)
    clients = {
        "replication": np.full(n, rep, dtype=np.int32),
        "client": np.arange(n, dtype=np.int64),
        "segment": r.segment.astype(np.int16),
        "referral_month": r.ref_month.astype(np.int16),
        "referred_to": org_party[r.first_org],
        "organisation": org_party[r.org],
    }
    for s, name in enumerate(pw.states):
        clients[f"first_{name}"] = r.first_month[:, s]
    clients["months_full"] = r.months_full
    clients["months_minimal"] = r.months_minimal
    clients["months_no_service"] = r.months_no_service
    clients["final_state"] = r.state.astype(np.int16)
    clients["end_month"] = r.end_month

    led = r.ledger.arrays()
    ledger = {"replication": np.full(len(led["month"]), rep, dtype=np.int32), **led}

    O = len(model.organisations)
    parts = []
    for o in range(O):
        party = int(org_party[o])
        m = {
            "replication": np.full(H, rep, dtype=np.int32),
            "organisation": np.full(H, party, dtype=np.int16),
            "month": np.arange(H, dtype=np.int32),
        }
        for kind in PAYMENT_KINDS:
            m[f"income_{kind}"] = flows(led, party, H, KINDS.index(kind), incoming=True)
        for kind in COST_KINDS:
            m[f"cost_{kind}"] = flows(led, party, H, KINDS.index(kind), incoming=False)
        m["finance_in"] = flows(led, party, H, KINDS.index("investment"), incoming=True)
        m["finance_out"] = flows(led, party, H, KINDS.index("repayment"), incoming=False)
        to_orgs = led["payer"] == party
        to_orgs &= np.isin(led["payee"], org_party)
        paid_down = np.zeros(H, dtype=np.int64)
        np.add.at(paid_down, led["month"][to_orgs], led["amount"][to_orgs])
        m["paid_to_subcontractors"] = paid_down
        m["cash"] = r.cash[:, o]
        m["referrals"] = r.referred[:, o]
        for s, name in enumerate(pw.states):
            m[f"n_{name}"] = r.caseload[:, o, s]
        m["n_full"] = r.level_counts[:, o, FULL]
        m["n_minimal"] = r.level_counts[:, o, MINIMAL]
        parts.append(m)
    monthly = concat_columns(parts)

    def rows(data: list, names: list[str]) -> dict[str, np.ndarray]:
        a = np.array(data, dtype=np.int64).reshape(-1, len(names))
        out = {"replication": np.full(len(a), rep, dtype=np.int32)}
        out.update({c: a[:, i] for i, c in enumerate(names)})
        if "organisation" in out:
            out["organisation"] = org_party[out["organisation"]]
        return out

    claims = rows(r.claims, ["month", "item", "segment", "organisation", "claims", "rejected", "amount_claimed", "amount_rejected"])
    settlements = rows(r.settlements, ["month", "item", "segment", "organisation", "amount_due", "amount_paid", "amount_capped"])
    failures = {
        "replication": np.full(len(r.failures), rep, dtype=np.int32),
        "organisation": org_party[np.array([f[0] for f in r.failures], dtype=np.int64)],
        "failure_month": np.array([f[1] for f in r.failures], dtype=np.int32),
        "clients_affected": np.array([f[2] for f in r.failures], dtype=np.int64),
        "clients_to": np.array([f[3] for f in r.failures], dtype=object),
    }
    return {"clients": clients, "ledger": ledger, "monthly": monthly, "claims": claims, "settlements": settlements, "failures": failures}


class Tables(Mapping):
    """The tables of a run, by name: the engine's columns, each made into a DataFrame (``to_frame``) when first read.

    Figures are computed from the columns directly (``columns``), so a table nobody reads is never built.
    """

    def __init__(self, model: Model, columns: dict[str, dict[str, np.ndarray]]):
        self.model = model
        self._columns = columns
        self._frames: dict[str, pd.DataFrame] = {}

    def columns(self, table: str) -> dict[str, np.ndarray]:
        return self._columns[table]

    def __getitem__(self, table: str) -> pd.DataFrame:
        frame = self._frames.get(table)
        if frame is None:
            frame = self._frames[table] = to_frame(self.model, table, self._columns[table])
        return frame

    def __iter__(self):
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)


def concat_columns(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


@lru_cache(maxsize=256)
def _dtype(categories: tuple[str, ...]) -> pd.CategoricalDtype:
    """One dtype per vocabulary, checked once (not at every table of every replication)."""
    return pd.CategoricalDtype(list(categories))


def _cat(codes: np.ndarray, categories, none_code: int | None = None) -> pd.Categorical:
    codes = np.asarray(codes, dtype=np.int64)
    if none_code is not None:
        codes = np.where(codes == none_code, -1, codes)
    return pd.Categorical.from_codes(codes, dtype=_dtype(tuple(categories)))


def _months(col: np.ndarray) -> pd.arrays.IntegerArray:
    return pd.arrays.IntegerArray(col.astype(np.int16), col < 0)


def to_frame(model: Model, table: str, cols: dict[str, np.ndarray]) -> pd.DataFrame:
    """Apply names to codes and nulls to 'never' months."""
    pw, v = model.pathway, model.vocab
    no_seg = len(pw.segments)
    d = dict(cols)
    item_kind = _item_kinds(model)
    if table == "clients":
        d["segment"] = _cat(d["segment"], pw.segments)
        for name in pw.states:
            d[f"first_{name}"] = _months(d[f"first_{name}"])
        d["final_state"] = _cat(d["final_state"], pw.states)
        d["referred_to"] = _cat(d["referred_to"], v.parties)
        d["organisation"] = _cat(d["organisation"], v.parties)
        d["end_month"] = _months(d["end_month"])
    elif table == "ledger":
        d["month"] = d["month"].astype(np.int32)
        d["payer"] = _cat(d["payer"], v.parties)
        d["payee"] = _cat(d["payee"], v.parties)
        d["kind"] = _cat(d["kind"], KINDS)
        d["item"] = _cat(d["item"], v.items)
        d["segment"] = _cat(d["segment"], pw.segments, no_seg)
    elif table in ("monthly", "failures"):
        d["organisation"] = _cat(d["organisation"], v.parties)
    elif table in ("claims", "settlements"):
        d["month"] = d["month"].astype(np.int32)
        kinds = item_kind[d["item"]]
        d["item"] = _cat(d["item"], v.items)
        d = {**{k: d[k] for k in ("replication", "month", "item")}, "kind": _cat(kinds, KINDS),
             **{k: val for k, val in d.items() if k not in ("replication", "month", "item")}}
        d["segment"] = _cat(d["segment"], pw.segments, no_seg)
        d["organisation"] = _cat(d["organisation"], v.parties)
    return pd.DataFrame(d)


def _item_kinds(model: Model) -> np.ndarray:
    """Kind code of each ledger item (service fee, each payment rule, costs)."""
    kinds = []
    rules = {r.name: r.kind for r in model.contract.rules}
    cohort_names = {c.name for c in model.contract.cohorts}
    for item in model.vocab.items:
        if item in rules:
            kinds.append(KINDS.index(rules[item]))
        elif item == "service_fee":
            kinds.append(KINDS.index("service_fee"))
        elif item.startswith("delivery"):
            kinds.append(KINDS.index("delivery"))
        elif item.startswith("ffs_"):
            kinds.append(KINDS.index("fee_for_service"))
        elif item == "volume_reconciliation":  # top-ups are fee; clawbacks carry their own kind in the ledger
            kinds.append(KINDS.index("service_fee"))
        elif item in cohort_names:
            kinds.append(KINDS.index("outcome"))
        else:
            kinds.append(KINDS.index(item))
    return np.array(kinds, dtype=np.int64)
