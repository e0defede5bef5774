"""Stresses: named shocks to a scenario, as field-path overrides — built-in ones and a user's stresses file.

A **stress** is a named set of field-path overrides of the raw scenario (``pbrsim.scenario.overrides``, the same
mechanism as experiment designs). Built-in stresses are functions of the base scenario and of the
organisation under test, so they work for a single provider and for any organisation of a supply chain;
each one's docstring names the real event that motivates it, citing the publications by their keys in
docs/sources.md. Users add their own in a stresses file (``load_stresses_file``) and combine
stresses; ``build_stresses`` applies them all to a base scenario and validates every result.

Running them and reading the organisation's cash is ``pbrsim.stress.run``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..experiments.experiment import field_location
from ..scenario.overrides import PathError, apply_overrides, get_value, parse_path
from ..scenario.schema import ROW_TOLERANCE, ScenarioError, read_yaml, scenario_from_dict

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$"
_NAME = re.compile(NAME_PATTERN)
ORG_PLACEHOLDER = "{organisation}"
RESULTS_KINDS = ("attachment", "milestone", "outcome", "sustainment")

class StressError(ScenarioError):
    """A stresses file (or a --combine) broke a rule; ``problems`` is a list of (field path, rule) pairs."""


# ---------------------------------------------------------------------------------------------
# Where the organisation lives in a raw scenario


def organisation_names(raw: dict) -> list[str]:
    if raw.get("organisations"):
        return [o.get("name") for o in raw["organisations"]]
    return [(raw.get("provider") or {}).get("name", "provider")]


def contract_holder(raw: dict) -> str:
    if raw.get("organisations"):
        return next((o["name"] for o in raw["organisations"] if o.get("role") == "prime"), raw["organisations"][0]["name"])
    return organisation_names(raw)[0]


def org_prefix(raw: dict, org: str) -> str:
    """Field path of the organisation's mapping: ``provider`` or ``organisations[name=<org>]``."""
    if raw.get("organisations"):
        return f"organisations[name={org}]"
    return "provider"


def org_spec(raw: dict, org: str) -> dict:
    return get_value(raw, org_prefix(raw, org))


def is_subcontractor(raw: dict, org: str) -> bool:
    return bool(raw.get("organisations")) and org_spec(raw, org).get("role", "subcontractor") == "subcontractor"


# ---------------------------------------------------------------------------------------------
# Built-in stress dimensions: (raw, org, size) -> Change


@dataclass(frozen=True)
class Change:
    """Overrides a stress makes to one scenario, or why it does not apply / changes nothing."""

    set: dict = field(default_factory=dict)
    remove: tuple[str, ...] = ()
    applicable: bool = True
    note: str | None = None  # "not applicable: ..." or "no change: ..."

    @property
    def empty(self) -> bool:
        return not self.set and not self.remove


def referral_shortfall(raw: dict, org: str, fraction: float) -> Change:
    """Referrals ``fraction`` below forecast: the referral rate (or every month of the list) scaled down.

    Real event: in the Work Programme's first year, referrals of people on health-related benefits
    (ESA/IB) ran at 34% of the original forecast volumes (Inclusion analysis of DWP data [inclusion-2012-referrals]);
    Transforming Rehabilitation CRCs saw paid volumes 16–48% below expectation against the 2% variation
    the Ministry of Justice had modelled [nao-2017-crc]; Restart received 48% of forecast participants
    [nao-2022-restart]. Subcontractors were "not at all" satisfied with referral numbers in
    26 of 45 tier-1 and 35 of 49 tier-2 cases (NCVO 2012 [ncvo-2012-subcontractors]).
    """
    keep = 1.0 - fraction
    r = raw["referrals"]
    if r.get("monthly") is not None:
        return Change({"referrals.monthly": [x * keep for x in r["monthly"]]})
    return Change({"referrals.rate": r["rate"] * keep})


def _segment_order(raw: dict) -> list[str]:
    """Segments from least to most complex: by ``complexity`` (default the listing position), ties by listing."""
    segs = list(raw["segments"])
    rank = {s: (raw["segments"][s].get("complexity") if raw["segments"][s].get("complexity") is not None else i + 1, i)
            for i, s in enumerate(segs)}
    return sorted(segs, key=lambda s: rank[s])


def complex_mix(raw: dict, org: str, shift: float) -> Change:
    """Referral mix shifting towards complex clients: ``shift`` of the referral share moves from the least
    to the most complex segment (by ``complexity``, else listing order); shares still sum to 1.

    Real event: in the Work Programme the share of ESA (health-condition) claimants rose from 3% of the
    first cohort to nearly one referral in three by 2013 [workfoundation-2014-esa], and ESA job-outcome rates
    were a fraction of JSA rates [lwi-2018-wp]; specialist subcontractors were sent few referrals while
    primes kept easier clients [tsrc-2013-parking].
    """
    order = _segment_order(raw)
    if len(order) < 2:
        return Change(applicable=False, note="not applicable: the scenario has one segment")
    least, most = order[0], order[-1]
    a, b = raw["segments"][least]["share"], raw["segments"][most]["share"]
    moved = min(shift, a)
    note = None if moved == shift else f"only {moved:.0%} could move: all of {least!r}"
    return Change({f"segments.{least}.share": a - moved, f"segments.{most}.share": b + moved}, note=note)


def primary_outcome(raw: dict) -> str | None:
    c = raw.get("contract", {})
    if c.get("primary_outcome"):
        return c["primary_outcome"]
    return next((p.get("state") for p in c.get("payments", []) if p.get("kind") == "outcome" and p.get("state")), None)


def job_states(raw: dict) -> list[str]:
    """States a recession makes harder to enter: the primary outcome, the states of outcome and sustainment
    payments (being in work), and the state of any milestone payment with a direct transition into one of
    those (a job start). Override with ``recession_states`` in a stresses file."""
    c = raw.get("contract", {})
    core = {primary_outcome(raw)} - {None}
    for p in c.get("payments", []):
        if p.get("kind") == "outcome" and p.get("state"):
            core.add(p["state"])
        if p.get("kind") == "sustainment":
            core.update(p.get("states") or [])
    out = set(core)
    trans = raw["pathway"]["transitions"]
    for p in c.get("payments", []):
        s = p.get("state")
        if p.get("kind") == "milestone" and s and s not in core:
            if any(prob > 0 and to in core
                   for seg in trans.values() for level in seg.values() for to, prob in (level.get(s) or {}).items()):
                out.add(s)
    return [s for s in raw["pathway"]["states"] if s in out]


def recession(raw: dict, org: str, cut: float, states: Iterable[str] | None = None) -> Change:
    """Outcome rates falling (a recession): every transition probability into a job state is multiplied by
    (1 − ``cut``) in every segment and service level, the removed probability staying on the self-loop
    (the client stays where they are that month); rows still sum to 1.

    Real event: in the Work Programme's first 14 months DWP expected 11.9% of referrals to reach a job
    outcome and 3.6% did [pac-2013-wp] — the programme started as the economy stalled; JSA 25+
    outcomes ran at 3.4% against DWP's own 9.2% non-intervention estimate. ESA minimum performance
    levels were revised from 22% to 13% [opendemocracy-2015-wp].
    """
    targets = set(states if states is not None else job_states(raw))
    if not targets:
        return Change(applicable=False, note="not applicable: no job states found (set recession_states)")
    keep = 1.0 - cut
    new: dict[str, Any] = {}
    for seg, levels in raw["pathway"]["transitions"].items():
        for level, rows in levels.items():
            for frm, row in rows.items():
                hit = [to for to in row if to in targets and to != frm and row[to] > 0]
                if not hit:
                    continue
                out = {to: (p * keep if to in hit else p) for to, p in row.items() if to != frm}
                out[frm] = max(0.0, 1.0 - sum(out.values()))  # the removed mass stays on the self-loop
                out = {to: out[to] for to in list(row) + ([frm] if frm not in row else [])}
                assert abs(sum(out.values()) - 1.0) <= ROW_TOLERANCE
                new[f"pathway.transitions.{seg}.{level}.{frm}"] = out
    if not new:
        return Change(note="no change: no transitions into the job states " + ", ".join(sorted(targets)))
    return Change(new)


def payment_delay(raw: dict, org: str, months: float) -> Change:
    """Payment delays: every payment lag (each payment line and the service fee) ``months`` longer.

    Real event: Work Programme sustainment claims could be made only after four weeks in work and 15
    working days after the period [hc-2013-wrans-sustainment]; DWP found ~26,000 job outcomes unclaimed in
    the first 2½ years, later paid at a reduced rate [pac-2014-wp] [dwp-2018-wp-stats]; NCVO/Bates Wells found
    providers "seeking loans to cover payment delays" [ncvo-2013-bates-wells]; the NAO (2015) found charities
    "find it harder to sustain themselves financially in the period between intervention and payment"
    [nao-2015-pbr].
    """
    m = int(round(months))
    c = raw.get("contract", {})
    out = {f"contract.payments[{i}].lag": int(p.get("lag", 0)) + m for i, p in enumerate(c.get("payments", []))}
    if c.get("service_fee"):
        out["contract.service_fee.lag"] = int(c["service_fee"].get("lag", 0)) + m
    if not out:
        return Change(applicable=False, note="not applicable: the contract has no payments")
    return Change(out)


def claim_rejection(raw: dict, org: str, extra: float) -> Change:
    """Claim rejection rising: each payment line's rejection probability ``extra`` higher (absolute), at most 1.

    Real event: about 10% of Work Programme job outcomes in the first 2½ years were never claimed or
    validated (DWP estimate [pac-2014-wp]); PbR evidence rules made "payment targets disconnected from end
    outcomes" [ncvo-2013-bates-wells].
    """
    c = raw.get("contract", {})
    out = {f"contract.payments[{i}].rejection": min(1.0, float(p.get("rejection", 0.0)) + extra)
           for i, p in enumerate(c.get("payments", []))}
    if not out:
        return Change(applicable=False, note="not applicable: the contract has no payments")
    return Change(out)


def cost_inflation(raw: dict, org: str, rate: float) -> Change:
    """Cost inflation: the organisation's delivery costs per client-month and its overhead ``rate`` higher.

    Real event: Restart's cost per participant rose from £1,800 to £2,429 (+35%) [nao-2022-restart];
    CPI inflation peaked at 11% in 2022 while PbR prices were fixed at bid. 48% of charity subcontractors
    were subsidising Work Programme delivery from reserves (NCVO 2012 [charitytimes-2012-ncvo]).
    """
    p = org_prefix(raw, org)
    spec = org_spec(raw, org)
    k = 1.0 + rate
    costs = spec.get("cost_per_client_month") or {}
    out = {f"{p}.cost_per_client_month.{lvl}": float(costs[lvl]) * k for lvl in ("full", "minimal") if lvl in costs}
    if spec.get("overhead_per_month"):
        out[f"{p}.overhead_per_month"] = float(spec["overhead_per_month"]) * k
    return Change(out)


def risk_pass_down(raw: dict, org: str, size: float | None = None) -> Change:
    """The prime passing more risk down: the subcontractor's pass-through share of every results payment kind
    (attachment, milestone, outcome, sustainment) goes to 1.0 and its fee for service is removed.

    Real event: 39 of 72 charities in Work Programme supply chains said the prime had not shielded them from
    financial risk at all [ncvo-2012-subcontractors]; subcontractors were paid only after a client completed
    six months in work [yesminister-2012-wp]; 7 in 10 charity subcontractors saw their contracts at risk of
    failure [charitytimes-2012-ncvo]. Transforming Rehabilitation tiers 2–3 carried "an element of PbR risk"
    [jc-2014-tr].
    """
    if not is_subcontractor(raw, org):
        return Change(applicable=False, note="not applicable: the contract holder has no prime to pass risk down")
    p = org_prefix(raw, org)
    terms = org_spec(raw, org).get("terms") or {}
    have = terms.get("pass_through") or {}
    out = {f"{p}.terms.pass_through.{k}": 1.0 for k in RESULTS_KINDS if have.get(k) != 1.0}
    remove = (f"{p}.terms.fee_for_service",) if terms.get("fee_for_service") is not None else ()
    if not out and not remove:
        return Change(note="no change: its terms already pass all results risk down")
    return Change(out, remove)


def loss_of_upfront(raw: dict, org: str, size: float | None = None) -> Change:
    """Loss of the upfront share: the contract's service fee is removed (all payment on results).

    Real event: the Work Programme's attachment fee tapered from £400 to nothing by year four, moving to
    100% outcome funding [alittleecon-2014] [finn-2013-pbr]; fixed fees fell to ~20% of payments from almost
    half under earlier contracts [spb-2019-wp]; CAF (2012) found most PbR payments "entirely end-loaded"
    [caf-2012-funding-good-outcomes].
    """
    if not raw.get("contract", {}).get("service_fee"):
        return Change(note="no change: the contract has no service fee")
    return Change(remove=("contract.service_fee",))


@dataclass(frozen=True)
class Dimension:
    """A stress that comes in sizes; the reverse stress test searches over ``size`` on a grid of ``step``."""

    name: str
    label: str  # "referral shortfall"
    make: Callable[..., Change]
    unit: str  # share | months | factor (shown as a share)
    lo: float
    hi: float
    step: float

    def describe(self, size: float) -> str:
        return DESCRIBE[self.name](size)

    def upper(self, raw: dict) -> float:
        """Largest size searched for this scenario."""
        if self.name == "mix":
            order = _segment_order(raw)
            return float(raw["segments"][order[0]]["share"]) if len(order) > 1 else 0.0
        return self.hi


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%" if abs(100 * x - round(100 * x)) < 1e-9 else f"{100 * x:.1f}%"


DESCRIBE = {
    "shortfall": lambda s: f"referrals {_pct(s)} below forecast",
    "mix": lambda s: f"referral mix {100 * s:.0f} points more complex",
    "recession": lambda s: f"recession: job moves {_pct(s)} less likely",
    "delay": lambda s: f"every payment {int(round(s))} month{'s' if round(s) != 1 else ''} later",
    "rejection": lambda s: f"claim rejection up {100 * s:.0f} points",
    "costs": lambda s: f"costs {_pct(s)} higher",
    "pass_down": lambda s: "prime passes all results risk down",
    "upfront": lambda s: "no upfront service fee",
}

DIMENSIONS = {
    "shortfall": Dimension("shortfall", "referral shortfall", referral_shortfall, "share", 0.0, 0.95, 0.01),
    "mix": Dimension("mix", "shift to complex clients", complex_mix, "share", 0.0, 1.0, 0.01),
    "recession": Dimension("recession", "cut in job transitions (recession)", recession, "share", 0.0, 1.0, 0.01),
    "delay": Dimension("delay", "payment delay", payment_delay, "months", 0.0, 24.0, 1.0),
    "rejection": Dimension("rejection", "rise in claim rejection", claim_rejection, "share", 0.0, 1.0, 0.01),
    "costs": Dimension("costs", "cost inflation", cost_inflation, "share", 0.0, 3.0, 0.02),
}
SWITCHES = {"pass_down": risk_pass_down, "upfront": loss_of_upfront}


# ---------------------------------------------------------------------------------------------
# Stresses


@dataclass(frozen=True)
class Stress:
    """A named shock: a built-in dimension at a size, a user's overrides, or several stresses in turn."""

    name: str
    label: str
    kind: str  # built_in | user | combined
    dimension: str | None = None
    size: float | None = None
    motivation: str = ""
    description: str | None = None
    set: dict = field(default_factory=dict)  # user stresses
    remove: tuple[str, ...] = ()
    parts: tuple["Stress", ...] = ()

    def change(self, raw: dict, org: str, *, recession_states: list[str] | None = None) -> Change:
        """What this stress does to ``raw`` for ``org`` (combined stresses: use ``apply``)."""
        if self.kind == "built_in":
            if self.dimension == "recession":
                return recession(raw, org, self.size, recession_states)
            if self.dimension in SWITCHES:
                return SWITCHES[self.dimension](raw, org)
            return DIMENSIONS[self.dimension].make(raw, org, self.size)
        prefix = org_prefix(raw, org)
        return Change({k.replace(ORG_PLACEHOLDER, prefix): v for k, v in self.set.items()},
                      tuple(r.replace(ORG_PLACEHOLDER, prefix) for r in self.remove))

    def apply(self, raw: dict, org: str, source: str, *, recession_states: list[str] | None = None) -> tuple[dict, Change]:
        """The stressed raw scenario and the change made (for a combination, every part in turn)."""
        if self.kind == "combined":
            out, sets, removes, notes, applicable = raw, {}, [], [], False
            for part in self.parts:
                out, ch = part.apply(out, org, source, recession_states=recession_states)
                sets.update(ch.set)
                removes += list(ch.remove)
                applicable |= ch.applicable
                if ch.note:
                    notes.append(f"{part.name}: {ch.note}")
            return out, Change(sets, tuple(removes), applicable, "; ".join(notes) or None)
        ch = self.change(raw, org, recession_states=recession_states)
        if not ch.applicable or ch.empty:
            return raw, ch
        return apply_overrides(raw, ch.set, source, remove=ch.remove), ch


def _doc(fn) -> str:
    """The 'Real event' paragraph of a built-in's docstring, unwrapped."""
    text = " ".join((fn.__doc__ or "").split())
    return text[text.find("Real event:"):] if "Real event:" in text else text


def built_in_stresses() -> list[Stress]:
    """The default set of twelve stresses, in table order."""
    b = []
    for pct in (10, 25, 50):
        b.append(Stress(f"shortfall_{pct}", DESCRIBE["shortfall"](pct / 100).capitalize(), "built_in", "shortfall", pct / 100,
                        _doc(referral_shortfall)))
    b.append(Stress("complex_mix", DESCRIBE["mix"](0.10).capitalize(), "built_in", "mix", 0.10, _doc(complex_mix)))
    b.append(Stress("recession", DESCRIBE["recession"](0.30).capitalize(), "built_in", "recession", 0.30, _doc(recession)))
    for m in (1, 3, 6):
        b.append(Stress(f"delay_{m}", DESCRIBE["delay"](m).capitalize(), "built_in", "delay", float(m), _doc(payment_delay)))
    b.append(Stress("rejection_up", DESCRIBE["rejection"](0.10).capitalize(), "built_in", "rejection", 0.10, _doc(claim_rejection)))
    b.append(Stress("cost_inflation", DESCRIBE["costs"](0.10).capitalize(), "built_in", "costs", 0.10, _doc(cost_inflation)))
    b.append(Stress("risk_pass_down", DESCRIBE["pass_down"](0).capitalize(), "built_in", "pass_down", None, _doc(risk_pass_down)))
    b.append(Stress("upfront_loss", DESCRIBE["upfront"](0).capitalize(), "built_in", "upfront", None, _doc(loss_of_upfront)))
    return b


BUILT_IN_NAMES = tuple(s.name for s in built_in_stresses())


def combine(name: str | None, parts: list[Stress], description: str | None = None) -> Stress:
    name = name or "+".join(p.name for p in parts)
    return Stress(name, " and ".join(p.label[0].lower() + p.label[1:] if i else p.label for i, p in enumerate(parts)),
                  "combined", description=description, parts=tuple(parts),
                  motivation=" ".join(dict.fromkeys(p.motivation for p in parts if p.motivation)))


# ---------------------------------------------------------------------------------------------
# Stresses files


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UserStressSpec(_Spec):
    description: str | None = Field(None, description="What the stress is and why (shown in the table and report).")
    set: dict[str, Any] = Field(default_factory=dict, description="Overrides `field.path: value` of the base scenario.")
    remove: list[str] = Field(default_factory=list, description="Field paths deleted from the base scenario (before `set`).")


class StressesFileSpec(_Spec):
    built_in: bool | list[str] = Field(True, description="Run the built-in stresses: true (all), false, or a list of their names.")
    recession_states: list[str] | None = Field(None, description="States whose entry the `recession` stress makes less likely.")
    stresses: dict[str, Any] = Field(default_factory=dict, description="Named stresses: `{field.path: value}` or `{description, set, remove}`.")
    combine: list[Any] | dict[str, list[str]] = Field(default_factory=list, description="Combinations: lists of stress names, or `name: [stresses]`.")


def _user_stress(name: str, value: Any, where: str) -> tuple[Stress | None, list[tuple[str, str]]]:
    if not isinstance(value, dict) or not value:
        return None, [(where, "a stress is a mapping of `field.path: value` overrides (or `description`, `set`, `remove`)")]
    long_form = "set" in value or "remove" in value
    if long_form:
        try:
            spec = UserStressSpec.model_validate(value)
        except ValidationError as exc:
            return None, [(where + ("." + field_location(e["loc"]) if e["loc"] else ""),
                           "unknown field: a long-form stress has only description, set and remove" if e["type"] == "extra_forbidden"
                           else e["msg"]) for e in exc.errors()]
        sets, remove, desc = dict(spec.set), tuple(spec.remove), spec.description
    else:
        sets, remove, desc = dict(value), (), None
    problems = []
    for path in list(sets) + list(remove):
        try:
            parse_path(str(path).replace(ORG_PLACEHOLDER, "organisation"))
        except PathError as exc:
            problems.append((f"{where}[{path!r}]", str(exc)))
    if not sets and not remove:
        problems.append((where, "the stress changes nothing: give `set` or `remove`"))
    label = desc or ", ".join(f"{str(k).replace(ORG_PLACEHOLDER + '.', '')} = {v}" for k, v in sets.items()) + (f"; remove {', '.join(remove)}" if remove else "")
    return Stress(name, label, "user", description=desc, set=sets, remove=remove), problems


@dataclass
class StressesFile:
    path: Path | None
    built_in: list[str]
    recession_states: list[str] | None
    user: list[Stress]
    combos: list[tuple[str | None, list[str], str]]  # (name, parts, where in the file)


def load_stresses_file(path: str | Path) -> StressesFile:
    """Read and check the shape of a stresses file; checks against a scenario happen in ``build_stresses``."""
    path = Path(path)
    src = str(path)
    data = read_yaml(path)
    try:
        spec = StressesFileSpec.model_validate(data)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            msg = e["msg"]
            loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and (p in ("bool", "str", "int", "float") or "[" in p)))
            if e["type"] == "extra_forbidden":
                msg = "unknown field: a stresses file has built_in, recession_states, stresses and combine (see docs/stress-testing.md)"
            elif loc[:1] == ("built_in",):
                msg = "must be true, false or a list of built-in stress names"
            elif loc[:1] == ("combine",):
                msg = "must be a list of lists of stress names, or a mapping of names to such lists"
            problems.append((field_location(loc), msg))
        raise StressError(src, list(dict.fromkeys(problems))) from None
    problems: list[tuple[str, str]] = []
    built = BUILT_IN_NAMES if spec.built_in is True else [] if spec.built_in is False else list(spec.built_in)
    for i, n in enumerate(built):
        if n not in BUILT_IN_NAMES:
            problems.append((f"built_in[{i}]", f"unknown built-in stress {n!r}; built-in stresses are {list(BUILT_IN_NAMES)}"))
    user = []
    for name, value in spec.stresses.items():
        where = f"stresses.{name}"
        if not _NAME.match(str(name)):
            problems.append((where, "names may use letters, digits and _ . + - (they label table rows and files), starting with a letter or digit"))
            continue
        if name in BUILT_IN_NAMES:
            problems.append((where, f"{name!r} is the name of a built-in stress; choose another name"))
            continue
        s, p = _user_stress(str(name), value, where)
        problems += p
        if s is not None and not p:
            user.append(s)
    combos: list[tuple[str | None, list[str], str]] = []
    items = spec.combine.items() if isinstance(spec.combine, dict) else ((None, v) for v in spec.combine)
    for i, (cname, parts) in enumerate(items):
        where = f"combine.{cname}" if cname is not None else f"combine[{i}]"
        if isinstance(parts, str):
            parts = [p.strip() for p in re.split(r"[,+]", parts) if p.strip()]
        if not isinstance(parts, list) or not all(isinstance(p, str) for p in parts):
            problems.append((where, "a combination is a list of stress names, e.g. [shortfall_25, delay_3]"))
            continue
        if cname is not None and (not _NAME.match(str(cname)) or cname in BUILT_IN_NAMES or cname in spec.stresses):
            problems.append((where, "a combination's name must be a new name of letters, digits and _ . + -"))
            continue
        combos.append((cname, parts, where))
    if problems:
        raise StressError(src, problems)
    return StressesFile(path, list(built), spec.recession_states, user, combos)


def parse_combine_option(values: Iterable[str]) -> list[list[str]]:
    """``--combine shortfall_25,delay_3`` (repeatable) into lists of names."""
    return [[p.strip() for p in re.split(r"[,+]", v) if p.strip()] for v in values]


@dataclass(frozen=True)
class Variant:
    """A stress applied to the base scenario: the raw scenario to run and the figures the analysis needs."""

    stress: Stress | None  # None = the unstressed base
    raw: dict  # validated; the organisation's credit limit still as in the stressed scenario
    change: Change
    terms: "OrgTerms"

    @property
    def name(self) -> str:
        return self.stress.name if self.stress else "base"


@dataclass(frozen=True)
class OrgTerms:
    """The organisation's finances in a variant (pence, as the engine)."""

    opening: int
    limit: int | None  # None = unlimited
    rate: float
    cash_dependent: bool  # its allocation policy reads its cash


def org_terms(raw: dict, org: str) -> OrgTerms:
    sc = scenario_from_dict(raw, "<stress>")
    spec = next(o for o in sc.organisation_specs if o.name == org)
    return OrgTerms(opening=int(round(spec.opening_cash * 100)),
                    limit=None if spec.credit.limit is None else int(round(spec.credit.limit * 100)),
                    rate=float(spec.credit.monthly_interest), cash_dependent=spec.policy.name == "cash_stressed")


def unlimited(raw: dict, org: str, extra_reserve: float = 0.0) -> dict:
    """``raw`` with the organisation's credit limit removed (it cannot fail) and ``extra_reserve`` pounds of opening cash added."""
    p = org_prefix(raw, org)
    sets = {f"{p}.credit.limit": None}
    if extra_reserve:
        sets[f"{p}.opening_cash"] = float(org_spec(raw, org).get("opening_cash", 0.0)) + extra_reserve
    return apply_overrides(raw, sets, "<stress>")


def build_stresses(base: dict, org: str, source: str, stresses_file: StressesFile | None = None,
                   combine_option: list[list[str]] = (), only: Iterable[str] | None = None) -> list[Variant]:
    """Every stress applied to ``base`` for ``org``, validated; raises StressError with all problems found."""
    problems: list[tuple[str, str]] = []
    fsrc = str(stresses_file.path) if stresses_file and stresses_file.path else source
    builtins = {s.name: s for s in built_in_stresses()}
    wanted = list(stresses_file.built_in) if stresses_file else list(BUILT_IN_NAMES)
    stresses = [builtins[n] for n in wanted]
    user = list(stresses_file.user) if stresses_file else []
    stresses += user
    known = {s.name: s for s in list(builtins.values()) + user}
    combos = list(stresses_file.combos) if stresses_file else []
    combos += [(None, parts, f"--combine {','.join(parts)}") for parts in combine_option]
    asked = set()  # combinations given with --combine run even when --only leaves their parts out
    for cname, parts, where in combos:
        bad = [p for p in parts if p not in known]
        if bad:
            problems.append((where, f"unknown stress {', '.join(map(repr, bad))}; stresses are {list(known)}"))
        elif len(parts) < 2:
            problems.append((where, "a combination needs at least two stresses"))
        else:
            stresses.append(combine(cname, [known[p] for p in parts]))
            if where.startswith("--combine"):
                asked.add(stresses[-1].name)
    names = [s.name for s in stresses]
    for n in set(names):
        if names.count(n) > 1:
            problems.append(("", f"stress {n!r} is listed more than once"))
    if only is not None:
        only = list(only)
        missing = [n for n in only if n not in names]
        if missing:
            problems.append(("--only", f"unknown stress {', '.join(map(repr, missing))}; stresses are {names}"))
        stresses = [s for s in stresses if s.name in only or s.name in asked]
    rstates = stresses_file.recession_states if stresses_file else None
    if rstates:
        states = base["pathway"]["states"]
        for i, s in enumerate(rstates):
            if s not in states:
                problems.append((f"recession_states[{i}]", f"unknown state {s!r}; states are {states}"))
    if problems:
        raise StressError(fsrc, problems)
    variants = [Variant(None, base, Change(), org_terms(base, org))]
    for s in stresses:
        where = f"stresses.{s.name}" if s.kind == "user" else f"stress {s.name}"
        try:
            raw, ch = s.apply(base, org, fsrc, recession_states=rstates)
        except ScenarioError as exc:
            problems += [(f"{where}: {p}" if p else where, rule) for p, rule in exc.problems]
            continue
        try:
            terms = org_terms(raw, org)
        except ScenarioError as exc:
            problems += [(f"{where}: in the scenario it makes, {p}" if p else where, rule) for p, rule in exc.problems]
            continue
        except StopIteration:
            problems.append((where, f"the stressed scenario has no organisation {org!r}"))
            continue
        variants.append(Variant(s, raw, ch, terms))
    if problems:
        raise StressError(fsrc, problems)
    return variants
