"""Unit economics of one organisation: what each client referred brings in and costs, by segment.

A bid that loses money on every client fails whatever the shock; this says so in one line. Every movement
of the organisation's money in a run falls in exactly one part, so the parts add up to its margin
(closing minus opening cash) to the penny:

- ``income``: payments received for service and results (service fee, attachment, milestone, outcome,
  sustainment, fee for service), less clawbacks repaid;
- ``delivery``: the cost of serving clients (full and minimal service);
- ``passed_on``: payments made to subcontractors for their service and results;
- ``overhead``: the fixed monthly overhead;
- ``finance``: everything else, net out (overdraft interest, investors' money in and repayments out, fees).

Income, delivery and payments passed on carry the client's segment when the contract ties them to one
(an outcome payment for a complex client); a block service fee, the overhead and finance carry none and
are shown as "not by segment". Figures per client are pooled over runs (Σ money / Σ clients, the estimator of
every rate in ``analysis.estimators``), in pounds; the clients are those admitted to the organisation's
caseload (for the contract holder, every client of the contract).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..analysis.estimators import ratio_ci
from ..engine.ledger import KINDS

if TYPE_CHECKING:
    import pandas as pd

PARTS = ("income", "delivery", "passed_on", "overhead", "finance")
PAYMENT_KINDS = ("service_fee", "attachment", "milestone", "outcome", "sustainment", "fee_for_service")


def per_replication(batch, model, o: int) -> tuple[np.ndarray, np.ndarray]:
    """Organisation ``o``'s money by (run, segment or "none", part), pence ``[R, G + 1, 5]``, and its clients
    by (run, segment) ``[R, G]``."""
    R, G = len(batch), len(model.pathway.segments)
    party = model.vocab.party(model.organisations[o].name)
    led = batch.ledger
    kind, amount, seg = led["kind"], led["amount"].astype(np.int64), np.minimum(led["segment"], G)
    pay = np.isin(kind, [KINDS.index(k) for k in PAYMENT_KINDS])
    claw = kind == KINDS.index("clawback")
    inc, out = led["payee"] == party, led["payer"] == party
    own = {"delivery": KINDS.index("delivery"), "overhead": KINDS.index("overhead")}
    signed = np.zeros(len(amount), dtype=np.int64)
    part = np.full(len(amount), -1, dtype=np.int64)
    # income: payments in and clawbacks in, less clawbacks out
    sel = inc & (pay | claw)
    part[sel], signed[sel] = 0, amount[sel]
    sel = out & claw
    part[sel], signed[sel] = 0, -amount[sel]
    sel = out & (kind == own["delivery"])
    part[sel], signed[sel] = 1, amount[sel]
    sel = out & pay
    part[sel], signed[sel] = 2, amount[sel]
    sel = out & (kind == own["overhead"])
    part[sel], signed[sel] = 3, amount[sel]
    rest = (inc | out) & (part < 0)
    part[rest] = 4
    signed[rest] = np.where(out[rest], amount[rest], -amount[rest])
    keep = part >= 0
    cell = (led["rep"][keep] * (G + 1) + seg[keep]) * len(PARTS) + part[keep]
    money = np.rint(np.bincount(cell, weights=signed[keep], minlength=R * (G + 1) * len(PARTS))).astype(np.int64)

    adm = batch.admitted_mask()
    rep = np.repeat(np.arange(R), np.diff(batch.offset))[adm]
    c_seg = batch.clients["segment"][adm].astype(np.int64)
    mine = np.ones(len(c_seg), dtype=bool) if o == 0 else batch.clients["first_org"][adm] == o
    clients = np.bincount(rep[mine] * G + c_seg[mine], minlength=R * G).reshape(R, G)
    return money.reshape(R, G + 1, len(PARTS)), clients


def summarise(money: np.ndarray, clients: np.ndarray, segments: tuple[str, ...]) -> dict:
    """Per client referred, pounds: each segment's income, delivery, payments passed on and contribution; what is not
    by segment (block fees, overhead, finance) per client of all segments; the net per client (the margin over clients)."""
    m = money.astype(np.float64) / 100.0
    n_all = clients.sum(axis=1).astype(np.float64)
    rows = []
    for g, name in enumerate(segments):
        n = clients[:, g].astype(np.float64)
        if n.sum() == 0:
            continue
        inc, dlv, pas = m[:, g, 0], m[:, g, 1], m[:, g, 2]
        rows.append({"segment": name, "clients": float(n.mean()),
                     "income_per_client": ratio_ci(inc, n)["mean"], "delivery_per_client": ratio_ci(dlv, n)["mean"],
                     "passed_on_per_client": ratio_ci(pas, n)["mean"],
                     "contribution_per_client": ratio_ci(inc - dlv - pas, n)})
    total = {part: m[:, :, i].sum(axis=1) for i, part in enumerate(PARTS)}
    costs = m[:, :, 1:].sum(axis=(1, 2))  # delivery, passed on, overhead and finance
    some = n_all.sum() > 0

    def per_client(x: np.ndarray) -> float | None:
        return ratio_ci(x, n_all)["mean"] if some else None

    return {
        "segments": rows,
        "not_by_segment": {"income_per_client": per_client(m[:, -1, 0]), "overhead_per_client": per_client(total["overhead"]),
                           "finance_per_client": per_client(total["finance"])},
        "clients": float(n_all.mean()),
        "income_per_client": per_client(total["income"]),
        "cost_per_client": per_client(costs),
        "net_per_client": ratio_ci(total["income"] - costs, n_all) if some else {"mean": None, "lo": None, "hi": None},
    }


def sentence(ue: dict, org: str, currency: str = "GBP", ran_out: float | None = None) -> str | None:
    """One line a board reads: whether a client referred makes or loses money, which segments do, and (given the
    base's share of runs that run out of cash) whether the price or the timing of payments is the problem."""
    from ..model.money import money as fmt

    net = ue["net_per_client"]
    if net["mean"] is None:
        return None
    verdict = "loses" if net["mean"] < 0 else "makes"
    ci = f" (95% CI {fmt(net['lo'], currency)} to {fmt(net['hi'], currency)})" if net.get("lo") is not None else ""
    line = (f"Before any shock {org} {verdict} {fmt(abs(net['mean']), currency)} on each client referred{ci}: "
            f"it is paid {fmt(ue['income_per_client'], currency)} a client and spends {fmt(ue['cost_per_client'], currency)} "
            "on delivery, subcontractors, overhead and finance.")
    if ue["segments"]:
        line += " After delivery, each client adds: " + ", ".join(
            f"{r['segment']} {fmt(r['contribution_per_client']['mean'], currency)}" for r in ue["segments"])
        nb = ue["not_by_segment"]
        if nb["income_per_client"]:
            line += (f"; payments not tied to a segment (block fees, cohort outcomes) add {fmt(nb['income_per_client'], currency)} "
                     f"a client, against overhead of {fmt(nb['overhead_per_client'], currency)}")
        line += "."
    contribution = ue["income_per_client"] - ue["cost_per_client"] + ue["not_by_segment"]["overhead_per_client"] \
        + ue["not_by_segment"]["finance_per_client"]  # income less delivery and payments passed on
    if contribution < 0:
        line += " At these prices every extra client deepens the loss."
    elif net["mean"] < 0:
        line += " Clients cover their own delivery but not the fixed overhead."
    elif ran_out is not None and ran_out >= 0.5:
        line += (f" So {org} runs out of cash although its clients pay their way over the contract: the timing of "
                 "payments, not their price, is what sinks it.")
    return line


def table(ue: dict) -> pd.DataFrame:
    """The unit economics as rows (one per segment, then "not by segment" and "all"), pounds per client referred."""
    import pandas as pd

    rows = [{"segment": r["segment"], "clients": r["clients"], "income_per_client": r["income_per_client"],
             "delivery_per_client": r["delivery_per_client"], "passed_on_per_client": r["passed_on_per_client"],
             "overhead_per_client": None, "finance_per_client": None,
             "net_per_client": r["contribution_per_client"]["mean"]} for r in ue["segments"]]
    nb = ue["not_by_segment"]
    rows.append({"segment": "not by segment", "clients": None, "income_per_client": nb["income_per_client"],
                 "delivery_per_client": None, "passed_on_per_client": None, "overhead_per_client": nb["overhead_per_client"],
                 "finance_per_client": nb["finance_per_client"],
                 "net_per_client": None if nb["income_per_client"] is None else
                 nb["income_per_client"] - nb["overhead_per_client"] - nb["finance_per_client"]})
    rows.append({"segment": "all", "clients": ue["clients"], "income_per_client": ue["income_per_client"],
                 "delivery_per_client": None, "passed_on_per_client": None, "overhead_per_client": None, "finance_per_client": None,
                 "net_per_client": ue["net_per_client"]["mean"]})
    return pd.DataFrame(rows)
