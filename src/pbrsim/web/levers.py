"""The levers a design offers as form controls: field paths of the scenario, with a label, a kind and a value.

Every lever is a field path of ``scenario/overrides.py``; the page sends back ``{path: value}`` and the
server applies them with ``Scenario.vary``, so a lever is validated by the same schema as a file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

POLICIES = ("holistic", "needs_first", "return_maximising")  # chosen by name alone; graded and cash_stressed need settings


@dataclass(frozen=True)
class Lever:
    """One form control: ``kind`` is share (a fraction 0..1), money (pounds), months, count, rate (a
    non-negative number) or policy (a choice); ``value`` None means the field is empty (no limit)."""

    path: str
    label: str
    group: str
    kind: str
    value: float | str | None
    nullable: bool = False
    choices: tuple[str, ...] = ()  # a policy lever's options

    def as_dict(self) -> dict:
        return asdict(self)


def _org_levers(raw: dict, base: str, name: str, group: str) -> list[Lever]:
    out = [Lever(f"{base}.opening_cash", f"{name}: opening cash", group, "money", raw.get("opening_cash", 0.0)),
           Lever(f"{base}.credit.limit", f"{name}: overdraft limit (empty: unlimited)", group, "money",
                 (raw.get("credit") or {}).get("limit", 0.0), nullable=True),
           Lever(f"{base}.capacity", f"{name}: full-service places (empty: unlimited)", group, "count", raw.get("capacity"),
                 nullable=True)]
    spec = raw.get("policy", "holistic")
    policy = spec.get("name") if isinstance(spec, dict) else spec
    if policy != "cash_stressed":  # its thresholds are set in the file; switching to it needs them
        # a graded policy (docs/behaviour.md) is offered as it stands, with its strength as a lever of its own;
        # switching to it from another needs a strength, so it is offered only where the file has one
        choices = POLICIES + (("graded",) if policy == "graded" else ())
        out.append(Lever(f"{base}.policy", f"{name}: allocation policy", group, "policy", policy, choices=choices))
    if policy == "graded" and isinstance(spec, dict):
        if "temperature" in spec:
            out.append(Lever(f"{base}.policy.temperature", f"{name}: graded policy, tolerance of loss-making work (£ a client)",
                             group, "money", spec["temperature"]))
        if "protected_share" in spec:
            out.append(Lever(f"{base}.policy.protected_share", f"{name}: graded policy, share of loss-making clients served",
                             group, "share", spec["protected_share"]))
    terms = raw.get("terms")
    if isinstance(terms, dict):
        for kind, share in (terms.get("pass_through") or {}).items():
            out.append(Lever(f"{base}.terms.pass_through.{kind}", f"{name}: share of {kind.replace('_', ' ')} passed on",
                             group, "share", share))
        out.append(Lever(f"{base}.terms.management_fee", f"{name}: prime's management fee", group, "share",
                         terms.get("management_fee", 0.0)))
        out.append(Lever(f"{base}.terms.extra_lag", f"{name}: months before the prime pays on", group, "months",
                         terms.get("extra_lag", 0)))
        ffs = terms.get("fee_for_service")
        if isinstance(ffs, dict):
            out.append(Lever(f"{base}.terms.fee_for_service.per_client_month", f"{name}: fee per client-month", group,
                             "money", ffs.get("per_client_month", 0.0)))
    return out


def levers_of(raw: dict) -> list[Lever]:
    """The levers of a scenario mapping (``Scenario.to_dict()``), grouped for the page."""
    out: list[Lever] = []
    c = raw.get("contract") or {}
    fee = c.get("service_fee")
    if isinstance(fee, dict) and "share_of_value" in fee:
        out.append(Lever("contract.service_fee.share_of_value", "service-fee share of contract value", "contract", "share",
                         fee["share_of_value"]))
    if isinstance(fee, dict):
        out.append(Lever("contract.service_fee.lag", "service fee: months in arrears", "contract", "months", fee.get("lag", 0)))
    out.append(Lever("contract.cap", "cap on all payments (empty: none)", "contract", "money", c.get("cap"), nullable=True))
    if "per_person_cap" in c:
        out.append(Lever("contract.per_person_cap", "cap per client (empty: none)", "contract", "money", c.get("per_person_cap"),
                         nullable=True))
    segments = list(raw.get("segments") or {})
    for line in c.get("payments") or []:
        name = line.get("name")
        base = f"contract.payments[name={name}]"
        group = f"payment line: {name} ({line.get('kind')})"
        tariff = line.get("tariff")
        if isinstance(tariff, dict):
            for seg in segments:
                if seg in tariff or "default" in tariff:
                    out.append(Lever(f"{base}.tariff.{seg}", f"tariff, {seg}", group, "money", tariff.get(seg, tariff.get("default"))))
        elif tariff is not None:
            out.append(Lever(f"{base}.tariff", "tariff", group, "money", tariff))
        out.append(Lever(f"{base}.lag", "months from the result to payment", group, "months", line.get("lag", 0)))
        out.append(Lever(f"{base}.rejection", "share of claims rejected", group, "share", line.get("rejection", 0.0)))
    ref = raw.get("referrals") or {}
    if "rate" in ref:
        out.append(Lever("referrals.rate", "referrals per month (expected)", "referrals", "rate", ref["rate"]))
    if raw.get("provider") is not None:
        p = raw["provider"]
        out += _org_levers(p, "provider", p.get("name", "provider"), "provider")
    for o in raw.get("organisations") or []:
        out += _org_levers(o, f"organisations[name={o['name']}]", o["name"], f"organisation: {o['name']}")
    return out


def coerce(lever_kinds: dict[str, str], changes: dict) -> dict:
    """The page's values as the schema expects them: numbers from text, empty text as null (no limit).
    Unknown paths and text that is not a number pass through unchanged, so the schema reports them."""
    out = {}
    for path, value in changes.items():
        kind = lever_kinds.get(path)
        if isinstance(value, str) and kind not in (None, "policy"):
            text = value.strip().replace(",", "").lstrip("£")
            if text == "":
                value = None
            else:
                try:
                    value = int(text) if kind in ("months", "count") and text.lstrip("-").isdigit() else float(text)
                except ValueError:
                    pass
        out[path] = value
    return out
