"""Tidy tables from batches of replications: columns gathered as numpy arrays, turned into DataFrames once
(or into Arrow for the Parquet files, without pandas).

Codes (segments, states, parties, items) become pandas categories; month columns use -1 for
'never' inside the engine and null in the tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from .run import CLAIM_COLUMNS, SETTLEMENT_COLUMNS, Batch, Model, Replication, batch_of
from .ledger import KINDS, LEDGER_COLUMNS
from ..model.pathway import FULL, MINIMAL

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

PAYMENT_KINDS = ("service_fee", "attachment", "milestone", "outcome", "sustainment", "fee_for_service")
COST_KINDS = ("delivery", "overhead", "interest", "clawback")
TABLES = ("clients", "ledger", "monthly", "claims", "settlements", "failures")
# money the tables keep in integer pence: the column's name says so (money a person reads is in pounds)
PENCE_FIELDS = ("amount", "amount_claimed", "amount_rejected", "amount_due", "amount_paid", "amount_capped")


def pence_name(field: str) -> str:
    """The table column of an engine field: ``amount`` -> ``amount_pence``; other fields keep their name."""
    return f"{field}_pence" if field in PENCE_FIELDS else field


def current_names(columns) -> dict[str, str]:
    """Renames that bring a 0.1 table's pence columns to today's names (``{"cash": "cash_pence", ...}``)."""
    old = set(PENCE_FIELDS) | {"cash", "finance_in", "finance_out", "paid_to_subcontractors"}
    return {c: f"{c}_pence" for c in columns if c in old or c.startswith(("income_", "cost_")) and not c.endswith("_pence")}


def stored_names(columns: list[str], present) -> list[str]:
    """The columns to read from a file holding ``present`` to get ``columns`` by today's names: a pence column the
    file stores under its 0.1 name (``cash`` for ``cash_pence``) is read under that name (then ``current_names``)."""
    present = set(present)
    return [c[: -len("_pence")] if c.endswith("_pence") and c not in present and c[: -len("_pence")] in present else c
            for c in columns]


def with_current_names(df):
    """A table read from disk with today's column names (``current_names``)."""
    return df.rename(columns=current_names(df.columns))


def batch_columns(model: Model, batch: Batch) -> dict[str, dict[str, np.ndarray]]:
    """Every table's columns for a batch of replications (rows by replication, in the batch's order), as
    plain arrays of codes and integers."""
    pw, H = model.pathway, model.horizon
    R, O = len(batch), len(model.organisations)
    rep_no = batch.replications.astype(np.int32)
    org_party = np.array([model.vocab.party(o.name) for o in model.organisations], dtype=np.int16)
    adm = batch.admitted_mask()
    n_b = batch.admitted
    c = {k: v[adm] for k, v in batch.clients.items()}
    n = int(n_b.sum())
    clients = {
        "replication": np.repeat(rep_no, n_b),
        "client": np.arange(n, dtype=np.int64) - np.repeat(np.cumsum(n_b) - n_b, n_b),
        "segment": c["segment"].astype(np.int16),
        **({"latent_class": c["latent_class"].astype(np.int16)} if "latent_class" in c else {}),
        "referral_month": c["ref_month"].astype(np.int16),
        "referred_to": org_party[c["first_org"]],
        "organisation": org_party[c["org"]],
    }
    for s, name in enumerate(pw.states):
        clients[f"first_{name}"] = c["first_month"][:, s]
    clients["months_full"] = c["months_full"]
    clients["months_minimal"] = c["months_minimal"]
    clients["months_no_service"] = c["months_no_service"]
    clients["final_state"] = c["state"].astype(np.int16)
    clients["end_month"] = c["end_month"]
    sust = [rule.name for rule in model.contract.rules if rule.kind == "sustainment"]
    for j, name in enumerate(sust):
        clients[f"sustainment_payments_{name}"] = c["sustainment_payments"][:, j]

    led = batch.ledger
    ledger = {"replication": rep_no[led["rep"]], **{pence_name(k): led[k] for k in LEDGER_COLUMNS}}

    # money into and out of each organisation by (replication, organisation, kind, month)
    org_of = np.full(len(model.vocab.parties), -1, dtype=np.int64)
    org_of[org_party] = np.arange(O)
    NK = len(KINDS)

    def by_org(party: np.ndarray, sel: np.ndarray, kinds: bool) -> np.ndarray:
        sel = sel & (org_of[party] >= 0)
        key = led["rep"][sel] * O + org_of[party[sel]]
        if kinds:
            key = key * NK + led["kind"][sel]
        size = R * O * (NK if kinds else 1) * H
        out = np.rint(np.bincount(key * H + led["month"][sel], weights=led["amount"][sel], minlength=size)).astype(np.int64)
        return out.reshape(R, O, NK, H) if kinds else out.reshape(R, O, H)

    every = np.ones(len(led["rep"]), dtype=bool)
    into, out_of = by_org(led["payee"], every, True), by_org(led["payer"], every, True)
    monthly = {
        "replication": np.repeat(rep_no, O * H),
        "organisation": np.tile(np.repeat(org_party, H), R),
        "month": np.tile(np.arange(H, dtype=np.int32), R * O),
    }
    for kind in PAYMENT_KINDS:
        monthly[f"income_{kind}_pence"] = into[:, :, KINDS.index(kind)].reshape(-1)
    for kind in COST_KINDS:
        monthly[f"cost_{kind}_pence"] = out_of[:, :, KINDS.index(kind)].reshape(-1)
    monthly["finance_in_pence"] = into[:, :, KINDS.index("investment")].reshape(-1)
    monthly["finance_out_pence"] = out_of[:, :, KINDS.index("repayment")].reshape(-1)
    monthly["paid_to_subcontractors_pence"] = by_org(led["payer"], org_of[led["payee"]] >= 0, False).reshape(-1)
    monthly["cash_pence"] = batch.cash.transpose(0, 2, 1).reshape(-1)
    monthly["referrals"] = batch.referred.transpose(0, 2, 1).reshape(-1)
    for s, name in enumerate(pw.states):
        monthly[f"n_{name}"] = batch.caseload[:, :, :, s].transpose(0, 2, 1).reshape(-1)
    monthly["n_full"] = batch.level_counts[:, :, :, FULL].transpose(0, 2, 1).reshape(-1)
    monthly["n_minimal"] = batch.level_counts[:, :, :, MINIMAL].transpose(0, 2, 1).reshape(-1)

    def rows(cols: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
        out = {"replication": rep_no[cols["rep"]]}
        out.update({pence_name(k): cols[k] for k in names})
        out["organisation"] = org_party[out["organisation"]]
        return out

    claims = rows(batch.claims, CLAIM_COLUMNS)
    settlements = rows(batch.settlements, SETTLEMENT_COLUMNS)
    fails = sorted(batch.failures, key=lambda f: f[0])  # stable: each replication's failures in the order they happened
    failures = {
        "replication": np.array([rep_no[f[0]] for f in fails], dtype=np.int32),
        "organisation": org_party[np.array([f[1] for f in fails], dtype=np.int64)],
        "failure_month": np.array([f[2] for f in fails], dtype=np.int32),
        "clients_affected": np.array([f[3] for f in fails], dtype=np.int64),
        "clients_to": np.array([f[4] for f in fails], dtype=object),
    }
    return {"clients": clients, "ledger": ledger, "monthly": monthly, "claims": claims, "settlements": settlements, "failures": failures}


def replication_columns(model: Model, r: Replication) -> dict[str, dict[str, np.ndarray]]:
    """Every table's columns for one replication's results."""
    return batch_columns(model, batch_of(r, model.vocab))


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

    def arrow(self, table: str) -> pa.Table:
        """The table as Arrow for a Parquet file, straight from the columns (no DataFrame, no pandas)."""
        return arrow_table(self.model, table, self._columns[table])

    def __iter__(self):
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)


def concat_columns(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _layout(model: Model, table: str, cols: dict[str, np.ndarray]) -> dict[str, tuple]:
    """Each column of a table as the tables show it, in order: ``("plain", array)``, ``("months", array)`` (-1 is
    'never', a null) or ``("cat", codes, categories)`` (codes -1 are missing). One layout for the DataFrames
    (``to_frame``) and the Parquet files (``arrow_table``)."""
    pw, v = model.pathway, model.vocab
    no_seg = len(pw.segments)
    d = {k: ("plain", a) for k, a in cols.items()}

    def cat(codes, categories, none_code=None):
        codes = np.asarray(codes, dtype=np.int64)
        if none_code is not None:
            codes = np.where(codes == none_code, -1, codes)
        return ("cat", codes, tuple(categories))

    if table == "clients":
        d["segment"] = cat(cols["segment"], pw.segments)
        for name in pw.states:
            d[f"first_{name}"] = ("months", cols[f"first_{name}"])
        d["final_state"] = cat(cols["final_state"], pw.states)
        d["referred_to"] = cat(cols["referred_to"], v.parties)
        d["organisation"] = cat(cols["organisation"], v.parties)
        d["end_month"] = ("months", cols["end_month"])
    elif table == "ledger":
        d["month"] = ("plain", cols["month"].astype(np.int32))
        d["payer"] = cat(cols["payer"], v.parties)
        d["payee"] = cat(cols["payee"], v.parties)
        d["kind"] = cat(cols["kind"], KINDS)
        d["item"] = cat(cols["item"], v.items)
        d["segment"] = cat(cols["segment"], pw.segments, no_seg)
    elif table in ("monthly", "failures"):
        d["organisation"] = cat(cols["organisation"], v.parties)
    elif table in ("claims", "settlements"):
        d["month"] = ("plain", cols["month"].astype(np.int32))
        d["item"] = cat(cols["item"], v.items)
        kind = cat(_item_kinds(model)[cols["item"]], KINDS)
        d = {**{k: d[k] for k in ("replication", "month", "item")}, "kind": kind,
             **{k: val for k, val in d.items() if k not in ("replication", "month", "item")}}
        d["segment"] = cat(cols["segment"], pw.segments, no_seg)
        d["organisation"] = cat(cols["organisation"], v.parties)
    return d


@lru_cache(maxsize=256)
def _dtype(categories: tuple[str, ...]):
    """One dtype per vocabulary, checked once (not at every table of every replication)."""
    import pandas as pd

    return pd.CategoricalDtype(list(categories))


def to_frame(model: Model, table: str, cols: dict[str, np.ndarray]) -> pd.DataFrame:
    """The table as a DataFrame: names for codes (categories) and nulls for 'never' months."""
    import pandas as pd

    d = {}
    for name, (kind, values, *rest) in _layout(model, table, cols).items():
        if kind == "cat":
            d[name] = pd.Categorical.from_codes(values, dtype=_dtype(rest[0]))
        elif kind == "months":
            d[name] = pd.arrays.IntegerArray(values.astype(np.int16), values < 0)
        else:
            d[name] = values
    return pd.DataFrame(d)


def arrow_table(model: Model, table: str, cols: dict[str, np.ndarray]) -> pa.Table:
    """The table as Arrow, equal to ``pa.Table.from_pandas(to_frame(...), preserve_index=False)`` but built
    without pandas (what ``pbrsim run`` writes)."""
    from . import arrow

    out = {}
    for name, (kind, values, *rest) in _layout(model, table, cols).items():
        if kind == "cat":
            out[name] = arrow.categorical(values, rest[0])
        elif kind == "months":
            out[name] = arrow.nullable_int(values.astype(np.int16), values < 0)
        else:
            out[name] = arrow.plain(values)
    return arrow.table(out)


# finance items whose kind is not their own name
ITEM_KINDS = {"coupon": "repayment", "management_fee": "fee", "first_loss": "guarantee", "capital_protection": "guarantee"}


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
        elif item in ITEM_KINDS:
            kinds.append(KINDS.index(ITEM_KINDS[item]))
        else:
            kinds.append(KINDS.index(item))
    return np.array(kinds, dtype=np.int64)
