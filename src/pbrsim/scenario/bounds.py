"""What a scenario can cost before it runs: its size against the limits, and the most money it can move.

``count_problems`` checks months, lags and counts, and ``memory_problems`` the estimated memory of one
replication, against the size limits in force (``limits.py``). ``money_problems`` bounds every total a
replication can produce (see ``money_bound``) and refuses a scenario whose bound is beyond what integer
pence keep exact. ``run_problems`` checks a number of replications of a valid scenario. Each problem is
(field path, rule), like every other scenario problem. The scenario is read by attribute only: nothing
here imports the schema.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from . import limits as lim

VALUE_POLICIES = ("return_maximising", "graded", "cash_stressed")


def _pounds(pence: float) -> str:
    x = pence / 100
    return f"£{x:,.0f}" if x < 1e12 else f"£{x:.3g}"


# ---------------------------------------------------------------------------------------------
# Size


def expected_clients(sc) -> float:
    """Expected referrals over the contract, in one replication."""
    r = sc.referrals
    if r.monthly is not None:
        return _fsum(r.monthly)
    if r.rate is None:
        return 0.0
    end = sc.months if r.end is None else r.end
    return r.rate * max(0, end - r.start)


def lags(sc) -> list[tuple[str, int]]:
    """Every lag, extra lag and gap of the scenario with its field path."""
    out = []
    c = sc.contract
    for i, rule in enumerate(c.payments):
        out.append((f"contract.payments[{i}].lag", rule.lag))
    if c.service_fee is not None:
        out.append(("contract.service_fee.lag", c.service_fee.lag))
        if c.service_fee.volume_band is not None:
            out.append(("contract.service_fee.volume_band.lag", c.service_fee.volume_band.lag))
    for i, cp in enumerate(c.cohort_payments):
        out.append((f"contract.cohort_payments[{i}].lag", cp.lag))
    for i, o in enumerate(sc.organisations or []):
        if o.terms is not None:
            out.append((f"organisations[{i}].terms.extra_lag", o.terms.extra_lag))
        out.append((f"organisations[{i}].on_failure.gap_months", o.on_failure.gap_months))
    return out


def horizon(sc) -> int:
    """Months a replication records, at most: the contract, the longest lag and a month for year-end and cohort payments."""
    pay = [lag for path, lag in lags(sc) if not path.endswith(("extra_lag", "gap_months"))]
    extra = [lag for path, lag in lags(sc) if path.endswith("extra_lag")]
    return sc.months + max(pay, default=0) + 1 + max(extra, default=0)


@dataclass(frozen=True)
class Size:
    clients: float  # expected per replication
    states: int  # including the engine's own state for clients of a failed provider
    segments: int
    organisations: int
    horizon: int
    value_tables: bool

    def replication_bytes(self) -> float:
        return lim.replication_bytes(self.clients, self.states, self.horizon, self.organisations)

    def run_bytes(self, replications: int) -> float:
        return replications * self.replication_bytes() + lim.model_bytes(self.segments, self.states, self.value_tables)

    def describe(self, replications: int) -> str:
        what = f"{lim.fmt_count(replications)} replication{'s' if replications != 1 else ''} of about " \
               f"{lim.fmt_count(self.clients)} clients, {self.states} states and {self.horizon} months"
        if self.organisations > 1:
            what += f" with {self.organisations} organisations"
        return what

    def dominant_field(self) -> str:
        clients = self.clients * (lim.BYTES_PER_CLIENT + lim.BYTES_PER_CLIENT_STATE * self.states)
        months = self.horizon * self.organisations * (lim.BYTES_PER_ORG_MONTH + lim.BYTES_PER_ORG_MONTH_STATE * self.states)
        return "referrals" if clients >= months else "months"


def size_of(sc) -> Size:
    orgs = sc.organisation_specs
    classes = max([len(s.latent_classes.classes) for s in sc.segments.values() if s.latent_classes is not None] + [1])
    # transition and value tables hold one set of rows per (segment, latent class)
    return Size(clients=expected_clients(sc), states=len(sc.pathway.states) + 1, segments=len(sc.segments) * classes,
                organisations=len(orgs), horizon=horizon(sc),
                value_tables=any(o.policy.name in VALUE_POLICIES for o in orgs))


def count_problems(sc, limits: lim.Limits) -> list[tuple[str, str]]:
    """Months, lags and counts of states, segments, organisations and payment lines against the size limits
    in force (cheap: checked before the cross-field rules, whose cost grows with these counts)."""
    p: list[tuple[str, str]] = []
    hint = limits.flag_hint()
    if sc.months > limits.months:
        p.append(("months", f"{sc.months} months; a contract may last at most {limits.months} months ({hint})"))
    for path, lag in lags(sc):
        if lag > limits.lag:
            p.append((path, f"{lag} months; lags and gaps may be at most {limits.lag} months ({hint})"))
    counts = [("pathway.states", "states", len(sc.pathway.states), limits.states),
              ("segments", "segments", len(sc.segments), limits.segments),
              ("organisations", "organisations", len(sc.organisations or []), limits.organisations),
              ("contract.payments", "payment lines and cohort payments",
               len(sc.contract.payments) + len(sc.contract.cohort_payments), limits.payment_lines)]
    for path, what, n, most in counts:
        if n > most:
            p.append((path, f"{n:,} {what}; at most {most:,} ({hint})"))
    return p


def memory_problems(sc, limits: lim.Limits) -> list[tuple[str, str]]:
    """One replication's estimated memory against the size limit in force."""
    p: list[tuple[str, str]] = []
    hint = limits.flag_hint()
    size = size_of(sc)
    need = size.run_bytes(1)
    if not math.isfinite(need) or (limits.memory is not None and need > limits.memory):
        most = f"at most {lim.fmt_bytes(limits.memory)} ({hint})" if limits.memory is not None else "more than any machine has"
        p.append((size.dominant_field(), f"one replication of about {lim.fmt_count(size.clients)} clients, {size.states} "
                  f"states and {size.horizon} months would need an estimated {lim.fmt_bytes(need)} of memory; {most}"))
    return p


# ---------------------------------------------------------------------------------------------
# Money


def organisations(sc) -> list[tuple[str, object]]:
    """(field path, organisation) for the provider or each organisation of a supply chain."""
    if sc.organisations is None:
        return [("provider", sc.provider)] if sc.provider is not None else []
    return [(f"organisations[{i}]", o) for i, o in enumerate(sc.organisations)]


def _fsum(xs) -> float:
    try:
        return math.fsum(xs)
    except OverflowError:
        return math.inf


def max_clients(sc) -> float:
    """Clients one replication can have: Poisson counts above twice the mean plus 50 have probability below 1e-20."""
    return 2 * expected_clients(sc) + 50 + len(sc.segments)


def _max_tariff(t) -> float:
    if t is None:
        return 0.0
    if isinstance(t, dict):
        return max((abs(v) for v in t.values()), default=0.0)
    return abs(t)


@dataclass(frozen=True)
class MoneyBound:
    """The most money one replication can move in all (pence), and the part that contributes most."""

    total: float
    field: str
    part: float
    explanation: str


def money_bound(sc) -> MoneyBound:
    """An upper bound on every total one replication can produce, in pence.

    Every amount the ledger moves is bounded: commissioner payments by the fee plus each line's highest
    tariff × the clients (× max_months for sustainment; at most the cap if there is one), cohort payments
    by price × clients per cohort, costs by the dearest client-month × clients × months plus overheads
    and fees for service over the horizon, pass-through by what the prime receives, investor repayments
    by the commitment compounded at the annual return, plus opening cash; interest on an overdraft
    grows all of it by at most (1 + monthly interest)^horizon.
    """
    N = max_clients(sc)
    T = sc.months
    H = horizon(sc)
    c = sc.contract
    parts: list[tuple[str, float, str]] = []
    fee_total = 0.0
    fee = c.service_fee
    if fee is not None:
        if fee.amounts is not None:
            fee_total = _fsum(fee.amounts)
        elif fee.total is not None:
            fee_total = fee.total
        elif fee.share_of_value is not None and c.value is not None:
            fee_total = fee.share_of_value * c.value
        fee_total *= 100
        parts.append(("contract.service_fee", fee_total, "the service fee"))
        if fee.volume_band is not None:
            vb = fee.volume_band
            given = vb.expected_per_year if isinstance(vb.expected_per_year, list) else [vb.expected_per_year]
            years = (T + 11) // 12
            recon = _fsum(fee_total / given[min(y, len(given) - 1)] * N for y in range(years))
            parts.append(("contract.service_fee.volume_band.expected_per_year", 2 * recon,
                          f"year-end volume reconciliations for up to {lim.fmt_count(N)} clients"))
    rules = 0.0
    for i, rule in enumerate(c.payments):
        top = max([_max_tariff(rule.tariff)] + [_max_tariff(t) for t in rule.tariff_by_year or []]
                  + [_max_tariff(t) for t in (rule.tariff_by_class or {}).values()]) * 100
        times = rule.max_months if rule.kind == "sustainment" and rule.max_months else 1
        amount = top * N * times
        rules += amount
        field = f"contract.payments[{i}].tariff" + ("_by_year" if rule.tariff_by_year is not None else "")
        parts.append((field, amount, f"{_pounds(top)} × up to {lim.fmt_count(N)} clients" + (f" × {times} months" if times > 1 else "")))
    if c.per_person_cap is not None:
        rules = min(rules, c.per_person_cap * 100 * N)
    for i, cp in enumerate(c.cohort_payments):
        amount = abs(cp.price_per_event_avoided) * 100 * N * (len(cp.cohorts) + 1)
        rules += amount
        parts.append((f"contract.cohort_payments[{i}].price_per_event_avoided", amount,
                       f"{_pounds(cp.price_per_event_avoided * 100)} × up to {lim.fmt_count(N)} clients"))
    commissioner = fee_total + rules + sum(a for f, a, _ in parts if f.endswith("expected_per_year"))
    if c.cap is not None:
        commissioner = min(commissioner, c.cap * 100) + sum(a for f, a, _ in parts if f.endswith("expected_per_year"))
    flows = commissioner
    orgs = organisations(sc)
    if len(orgs) > 1:
        flows += commissioner  # passed on by the prime
    rate, rate_at = 0.0, ""
    for where, o in orgs:
        cost = max(abs(o.cost_per_client_month.full), abs(o.cost_per_client_month.minimal)) * 100 * N * T
        parts.append((f"{where}.cost_per_client_month", cost, f"{_pounds(cost / max(N * T, 1))} × up to "
                      f"{lim.fmt_count(N)} clients × {T} months"))
        parts.append((f"{where}.overhead_per_month", abs(o.overhead_per_month) * 100 * H, f"overheads over {H} months"))
        parts.append((f"{where}.opening_cash", abs(o.opening_cash) * 100, "opening cash"))
        flows += cost + abs(o.overhead_per_month) * 100 * H + abs(o.opening_cash) * 100
        terms = getattr(o, "terms", None)
        if terms is not None and terms.fee_for_service is not None:
            ffs = terms.fee_for_service
            amount = (abs(ffs.per_start) * N + abs(ffs.per_client_month) * N * T) * 100
            parts.append((f"{where}.terms.fee_for_service", amount, f"fees for service for up to {lim.fmt_count(N)} clients"))
            flows += amount
        if o.credit.monthly_interest > rate:
            rate, rate_at = o.credit.monthly_interest, f"{where}.credit.monthly_interest"
    f = sc.finance
    if f is not None:
        # investors are repaid out of the organisation's income (bounded above) with at most their rate of return;
        # guarantees make good at most the capital; a top-up funder pays at most what the commissioner pays
        cap = f.return_cap.annual if f.return_cap is not None else None
        rates = [r for r in ([t.annual_return if t.annual_return is not None else f.annual_return for t in f.tranche_list]
                             + [cap]) if r is not None]
        growth = _power(1 + max(rates, default=0.0), H / 12)
        commitment = sum(abs(t.commitment) for t in f.tranche_list)
        amount = commitment * 100 * (2 + growth) + (commissioner if f.top_up is not None else 0.0)
        parts.append(("finance.commitment", amount, f"the commitment, its return over {H} months and any guarantee or top-up"))
        flows += amount
    interest = _power(1 + rate, H)
    total = flows * interest if flows else 0.0
    field, part, why = max(parts, key=lambda x: x[1]) if parts else ("", 0.0, "")
    if flows <= lim.MAX_PENCE < total and interest >= 2 and rate_at:  # compounding interest takes it beyond the limit
        field, part, why = (rate_at, total, f"overdraft interest of {100 * rate:g}% a month compounded over {H} months "
                            f"multiplies every debt by up to {lim.fmt_count(interest)}")
    return MoneyBound(total=total, field=field, part=part, explanation=why)


def _power(base: float, exponent: float) -> float:
    try:
        return math.exp(exponent * math.log(base)) if base > 0 else 0.0
    except OverflowError:
        return math.inf


def money_problems(sc) -> list[tuple[str, str]]:
    """Refuse a scenario whose money could overflow integer pence (a hard limit: --allow-large does not lift it)."""
    b = money_bound(sc)
    if math.isfinite(b.total) and b.total <= lim.MAX_PENCE:
        return []
    total = "an unbounded amount" if not math.isfinite(b.total) else f"about {_pounds(b.total)}"
    return [(b.field or "contract", f"money in one replication could add up to {total} ({b.explanation}); pbrsim keeps "
             f"money exact to the penny only up to {_pounds(lim.MAX_PENCE)} (2^53 pence): lower the amounts or the referrals")]


# ---------------------------------------------------------------------------------------------
# Runs


def run_problems(sc, replications: int, limits: lim.Limits, what: str = "--replications") -> list[tuple[str, str]]:
    """A run of ``replications`` of a valid scenario against the memory limit and int64 totals."""
    p: list[tuple[str, str]] = []
    size = size_of(sc)
    need = size.run_bytes(replications)
    if limits.memory is not None and need > limits.memory:
        p.append((size.dominant_field(), f"{size.describe(replications)} would need an estimated {lim.fmt_bytes(need)} of "
                  f"memory; at most {lim.fmt_bytes(limits.memory)}: use fewer replications ({what}) or a smaller "
                  f"scenario ({limits.flag_hint()})"))
    b = money_bound(sc)
    if b.total * replications > lim.MAX_INT64:
        p.append((b.field or "contract", f"{lim.fmt_count(replications)} replications of up to {_pounds(b.total)} each could "
                  f"add up to more than 64-bit integer pence can hold: use fewer replications ({what})"))
    return p
