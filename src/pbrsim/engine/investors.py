"""Social investment in the engine: drawdowns, fees, the repayment waterfall, guarantees and top-ups.

State is ``[R, tranches]`` arrays for a batch of replications; each month end moves every tranche's money
for every replication at once (docs/social-investment.md gives the rules, docs/model.md where they sit
in the month). Parties: each tranche's investors, the intermediary (management fee), the guarantor (first
loss, capital protection) and a top-up outcome payer. ``check`` is the per-run invariant of this money.
"""

from __future__ import annotations

import numpy as np

from .ledger import KINDS
from ..model.finance import Financing

K_INVEST, K_REPAY, K_FEE, K_GUARANTEE, K_TOP_UP = (KINDS.index(k) for k in ("investment", "repayment", "fee", "guarantee", "top_up"))


def _floor(x: np.ndarray) -> np.ndarray:
    return np.floor(x).astype(np.int64)


def pro_rata(before: np.ndarray, add: np.ndarray, commitments: np.ndarray) -> np.ndarray:
    """Split ``add[r]`` pence between tranches in proportion to their commitments, so that each tranche's
    total drawn stays its share of all drawn (rounded down, the junior-most tranche taking the pennies):
    ``[R, K]``, summing to ``add``."""
    total = commitments.sum()
    cum = before + add
    share = np.empty((len(add), len(commitments)), dtype=np.int64)
    if total > 0:
        share[:, :-1] = _floor(cum[:, None].astype(np.float64) * (commitments[:-1] / total)[None, :])
    else:
        share[:, :-1] = 0
    share[:, -1] = cum - share[:, :-1].sum(axis=1)
    prev = np.empty_like(share)
    if total > 0:
        prev[:, :-1] = _floor(before[:, None].astype(np.float64) * (commitments[:-1] / total)[None, :])
    else:
        prev[:, :-1] = 0
    prev[:, -1] = before - prev[:, :-1].sum(axis=1)
    return share - prev


def top_up_amounts(paid: np.ndarray, share: float) -> np.ndarray:
    """What the top-up funder pays of each payment (rounded down to the penny)."""
    return _floor(np.asarray(paid, dtype=np.float64) * share)


class Investors:
    """The money of investor finance for a batch of ``R`` replications."""

    def __init__(self, fin: Financing, vocab, R: int, months: int, horizon: int):
        self.f = fin
        self.R, self.T, self.H = R, months, horizon
        n = len(fin.investors)
        self.P_INV = np.array([vocab.party(p) for p in fin.investors])
        self.P_FEE = vocab.party(fin.intermediary) if fin.intermediary else None
        self.P_GUAR = vocab.party(fin.guarantor) if fin.guarantor else None
        self.P_TOP = vocab.party(fin.top_up_funder) if fin.top_up_funder else None
        self.I = {k: vocab.item(k) for k in ("investment", "repayment", "coupon", "management_fee", "first_loss",
                                              "capital_protection", "top_up")}
        self.top_kinds = {KINDS.index(k) for k in fin.top_up_kinds}
        self.finite = np.isfinite(fin.monthly_rate)
        z = lambda: np.zeros((R, n), dtype=np.int64)  # noqa: E731
        self.drawn = z()  # put in: to the organisation and to the intermediary
        self.fees = z()  # of which to the intermediary
        self.owed = z()  # capital plus return due (tranches with a finite rate)
        self.capital_out = z()  # capital not yet repaid
        self.received = z()  # repayments: capital and coupons
        self.guaranteed = z()  # from the guarantor at the end
        self.first_loss_paid = np.zeros(R, dtype=np.int64)
        self.income_seen = np.zeros(R, dtype=np.int64)
        self.topped_up = np.zeros(R, dtype=np.int64)

    # -- month end ---------------------------------------------------------------------------------
    def month_end(self, run, t: int):
        """Fees and drawdowns, then repayments down the waterfall; guarantees in the last month of the horizon."""
        f = self.f
        org = f.organisation
        P = run.P_ORG[org]
        ledger = run.ledger
        R = self.R
        allr = np.arange(R)
        if self.finite.any():
            owed = self.owed[:, self.finite]
            self.owed[:, self.finite] = owed + _floor(owed * f.monthly_rate[self.finite])
        live = run.alive(org) & ~run.contract_over
        can = live & (t < self.T)
        room = f.commitment - self.drawn.sum(axis=1)
        if f.monthly_fee:
            fee = np.where(can, np.minimum(f.monthly_fee, room), 0)
            if fee.any():
                parts = self._draw(fee)
                self.fees += parts
                for k in range(len(self.P_INV)):
                    ledger.post(allr, t, self.P_INV[k], self.P_FEE, K_FEE, parts[:, k], self.I["management_fee"])
                room = room - fee
        if f.upfront:
            draw = np.where(can, room, 0) if t == 0 else np.zeros(R, dtype=np.int64)
        else:
            draw = np.where(can, np.clip(f.floor - ledger.balance[:, P], 0, room), 0)
        if draw.any():
            parts = self._draw(draw)
            for k in range(len(self.P_INV)):
                ledger.post(allr, t, self.P_INV[k], P, K_INVEST, parts[:, k], self.I["investment"])
        # repayments out of this month's contract income (or, recycling, out of cash once the contract is over)
        income = run.income_cum[:, org] - self.income_seen
        self.income_seen += income
        floor = 0 if f.upfront else f.floor
        spare = np.maximum(0, ledger.balance[:, P] - floor)
        if f.recycle:
            pool = np.where(live & (t < self.T), 0, spare)
        else:
            pool = np.minimum(_floor(income * f.share), spare)
        pool = np.maximum(pool, 0)
        if pool.any():
            self._waterfall(ledger, allr, t, P, pool)
        if t == self.H - 1 and self.P_GUAR is not None:
            self._guarantees(ledger, allr, t)

    def _draw(self, amount: np.ndarray) -> np.ndarray:
        parts = pro_rata(self.drawn.sum(axis=1), amount, self.f.commitments)
        self.drawn += parts
        self.owed += parts
        self.capital_out += parts
        return parts

    def _waterfall(self, ledger, allr: np.ndarray, t: int, P: int, pool: np.ndarray):
        """Senior tranche first: each is paid what it is owed (capital first, then return), up to the cap."""
        f = self.f
        for k in range(len(self.P_INV)):
            due = self.owed[:, k] if self.finite[k] else pool
            if f.cap_multiple is not None:
                due = np.minimum(due, _floor(self.drawn[:, k] * f.cap_multiple) - self.received[:, k])
            pay = np.maximum(0, np.minimum(pool, due))
            if not pay.any():
                continue
            capital = np.minimum(pay, self.capital_out[:, k])
            ledger.post(allr, t, P, self.P_INV[k], K_REPAY, capital, self.I["repayment"])
            ledger.post(allr, t, P, self.P_INV[k], K_REPAY, pay - capital, self.I["coupon"])
            self.capital_out[:, k] -= capital
            if self.finite[k]:
                self.owed[:, k] -= pay
            self.received[:, k] += pay
            pool = pool - pay

    def _guarantees(self, ledger, allr: np.ndarray, t: int):
        """The guarantor covers the first losses of capital (senior first), then tops each tranche up to its protection."""
        f = self.f
        left = np.full(self.R, f.first_loss, dtype=np.int64)
        for k in range(len(self.P_INV)):
            loss = np.maximum(0, self.drawn[:, k] - self.received[:, k])
            cover = np.minimum(loss, left)
            left -= cover
            ledger.post(allr, t, self.P_GUAR, self.P_INV[k], K_GUARANTEE, cover, self.I["first_loss"])
            need = np.ceil(self.drawn[:, k] * f.protection[k]).astype(np.int64) - self.received[:, k] - cover
            protect = np.maximum(0, need)
            ledger.post(allr, t, self.P_GUAR, self.P_INV[k], K_GUARANTEE, protect, self.I["capital_protection"])
            self.guaranteed[:, k] += cover + protect
            self.first_loss_paid += cover

    # -- top-up outcome payer -----------------------------------------------------------------------
    def top_up(self, ledger, reps: np.ndarray, month: int, kind: int, paid: np.ndarray, commissioner: int):
        """The top-up funder reimburses the commissioner its share of each results payment just made (one per row)."""
        if self.P_TOP is None or kind not in self.top_kinds:
            return
        amount = top_up_amounts(paid, self.f.top_up_share)
        ledger.post_rows(reps, month, self.P_TOP, commissioner, K_TOP_UP, amount, self.I["top_up"], None)
        np.add.at(self.topped_up, reps, amount)

    # -- invariants ---------------------------------------------------------------------------------
    def check(self, run, led: dict, pair: np.ndarray, P_ORG: int, P_COMM: int):
        """Investor money in the ledger agrees with the engine's books and keeps the terms, in every replication
        (``run``'s checks name the replication and show money to the penny)."""
        f = self.f
        check, same, within, money = run._fault, run._same, run._within, run._money
        inv = self.P_INV
        for k, p in enumerate(inv):
            name = f.investors[k]
            same(f"{name}: money put in", "in the ledger", pair[:, p].sum(axis=1), "in the engine", self.drawn[:, k])
            same(f"{name}: repayments", "in the ledger", pair[:, P_ORG, p], "in the engine", self.received[:, k])
            if self.P_GUAR is not None:
                g = pair[:, self.P_GUAR, p]
                same(f"{name}: guarantee payments", "in the ledger", g, "in the engine", self.guaranteed[:, k])
                floor = np.ceil(self.drawn[:, k] * f.protection[k]).astype(np.int64)
                got = self.received[:, k] + g
                check(got < floor, lambda b: f"{name}: received {money(got[b])}, less than its capital protection {money(floor[b])}")
            if f.cap_multiple is not None:
                cap = _floor(self.drawn[:, k] * f.cap_multiple)
                check(self.received[:, k] > cap,
                      lambda b: f"{name}: received {money(self.received[b, k])}, more than {f.cap_multiple} times what it put in ({money(cap[b])})")
            others = np.setdiff1d(np.arange(pair.shape[1]), [P_ORG, p] + ([self.P_GUAR] if self.P_GUAR is not None else []))
            same(f"{name}: money from parties other than the organisation and the guarantor", "received",
                 pair[:, others, p].sum(axis=1), "expected", 0)
        within("investors' commitment", "put in", self.drawn.sum(axis=1), "the commitment", f.commitment)
        if self.P_FEE is not None:
            fees = pair[:, :, self.P_FEE].sum(axis=1)
            same("management fees", "in the ledger", fees, "in the engine", self.fees.sum(axis=1))
            same("management fees", "received by the intermediary", fees, "paid by the investors", pair[:, inv, self.P_FEE].sum(axis=1))
            within("management fees", "paid", fees, "the fee for the contract", f.monthly_fee * self.T)
        if self.P_GUAR is not None:
            within("first-loss guarantee", "paid", self.first_loss_paid, "the guarantee", f.first_loss)
        if self.P_TOP is not None:
            sel = (led["payer"] == P_COMM) & np.isin(led["kind"], list(self.top_kinds))
            due = np.bincount(led["rep"][sel], weights=top_up_amounts(led["amount"][sel], f.top_up_share), minlength=self.R)
            got = pair[:, self.P_TOP, P_COMM]
            same("top-up", "paid by the funder", got, "its share of results payments", np.rint(due).astype(np.int64))
            same("top-up", "in the ledger", got, "in the engine", self.topped_up)
