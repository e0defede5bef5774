"""Scenario files: the pydantic schema, the cross-field rules and ``extends`` chains.

A scenario is data: referrals, segments, the outcome pathway, the contract and the
provider's finances. Nothing here imports the engine. Files are read by ``loading.py``; what a
scenario may cost (size limits, the money bound) is checked by ``bounds.py``. Every error names the
file, the dotted field path and the rule broken (see ``ScenarioError``).
"""

# annotations are evaluated as the classes are made (no `from __future__ import annotations`): pydantic
# would otherwise compile every annotation string again, at every start-up
import hashlib
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import bounds
from . import limits as lim
from .errors import ScenarioError
from .loading import read_bytes, read_yaml

from .value_schema import Value, check_value

ROW_TOLERANCE = 1e-9
SHARE_TOLERANCE = 1e-6
PAYMENT_KINDS = ("attachment", "milestone", "outcome", "sustainment")
SERVICE_LEVELS = ("full", "minimal")
DROPPED_STATE = "dropped_provider_failure"


EXTRA_ITEMS = ("volume_reconciliation", "investment", "repayment", "coupon", "management_fee", "first_loss",
               "capital_protection", "top_up")  # ledger items the engine adds


class _Model(BaseModel):
    # strict: YAML's `yes`/`no` and quoted numbers are not numbers; no NaN or infinite money
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False, defer_build=True)


MAX_POUNDS = lim.MAX_PENCE / 100
MONTHS = lim.MAX_MONTHS_EVER  # hard ceiling of every month count and lag (16-bit month columns)


def _amount(x: float) -> float:
    if abs(x) > MAX_POUNDS:
        raise ValueError(f"amounts may be at most {MAX_POUNDS:,.2f} (2^53 pence, the most pbrsim keeps exact to the penny)")
    return x


Money = Annotated[float, AfterValidator(_amount)]  # pounds in files; the engine converts to integer pence


class ReferralProfile(_Model):
    """Expected referrals per month: a list of monthly totals, or a constant rate between two months."""

    monthly: list[float] | None = Field(None, description="Expected referrals in each month, from month 0.")
    rate: float | None = Field(None, ge=0, description="Constant expected referrals per month.")
    start: int = Field(0, ge=0, le=MONTHS, description="First month with referrals (with `rate`).")
    end: int | None = Field(None, ge=0, le=MONTHS, description="Month after the last month with referrals (with `rate`); default the contract end.")
    distribution: Literal["poisson", "fixed"] = Field(
        "poisson", description="`poisson`: each month's count is Poisson with the expected value; `fixed`: counts are the expected values rounded cumulatively."
    )

    @field_validator("monthly")
    @classmethod
    def _non_negative(cls, v):
        if v is not None and any(x < 0 for x in v):
            raise ValueError("monthly referrals must not be negative")
        return v


MAX_CLASSES = 8
MAX_PROGRESS = 20.0


class LatentClass(_Model):
    """A kind of client inside a segment: its share of the segment and how fast it progresses."""

    name: str = Field(..., min_length=1, max_length=64, description="Label of the class, unique within the segment.")
    share: float = Field(..., gt=0, le=1, description="Share of the segment's clients in this class; shares sum to 1.")
    progress: float = Field(1.0, ge=0, le=MAX_PROGRESS, description=(
        "Multiplier on the segment's forward moves (1 = the rates as written); the difference is taken from, or "
        "given to, staying put. Rows with no chance of staying put are not changed."))


class LatentClasses(_Model):
    """Differences within a segment that its payment group does not see (docs/behaviour.md §6)."""

    observed: bool = Field(True, description=(
        "Whether the provider knows each client's class when it decides whom to serve (a blind provider values a "
        "client at the class shares)."))
    classes: list[LatentClass] = Field(..., min_length=1, max_length=MAX_CLASSES, description="The classes, shares summing to 1.")


class Segment(_Model):
    share: float = Field(..., ge=0, le=1, description="Share of referrals in this segment; shares sum to 1.")
    complexity: int | None = Field(None, ge=-10**9, le=10**9, description="Rank of need (higher = more complex); default the listing order.")
    source: str | None = Field(None, description="Where the share comes from.")
    latent_classes: LatentClasses | None = Field(None, description="Latent classes of clients within the segment.")


TransitionRows = dict[str, dict[str, float]]


class SegmentTransitions(_Model):
    full: TransitionRows = Field(..., description="Rows `from: {to: probability}` under full service.")
    minimal: TransitionRows = Field(..., description="Rows under minimal service.")


class Pathway(_Model):
    states: list[str] = Field(..., min_length=2, description="Named pathway states.")
    initial_state: str = Field(..., description="State a client is in when referred.")
    absorbing: list[str] = Field(default_factory=list, description="States a client never leaves; their rows may be omitted.")
    exit_state: str | None = Field(None, description="Absorbing state for forced exit after `max_months_on_programme`.")
    max_months_on_programme: int | None = Field(None, ge=1, le=MONTHS, description="Transitions allowed before forced exit.")
    service_states: list[str] | None = Field(
        None, description="States in which the provider delivers service (default: every non-absorbing state)."
    )
    exit_applies_to: list[str] | None = Field(
        None, description="States from which forced exit applies at `max_months_on_programme` (default: every non-absorbing state)."
    )
    transitions: dict[str, SegmentTransitions] = Field(..., description="Per segment, the monthly transition rows.")


Tariff = Union[Money, dict[str, Money]]


class PaymentRule(_Model):
    name: str = Field(..., description="Label of this payment line, unique within the contract.")
    kind: Literal["attachment", "milestone", "outcome", "sustainment"]
    state: str | None = Field(None, description="State whose first entry triggers the payment (not sustainment).")
    states: list[str] | None = Field(None, description="Sustainment: states in which each month is paid; other kinds: first entry into any of them.")
    max_months: int | None = Field(None, ge=1, le=MONTHS, description="Sustainment: most monthly payments per client.")
    tariff: Tariff | None = Field(None, description="Amount per trigger, one number or per segment (with optional `default`).")
    tariff_by_year: list[Tariff] | None = Field(
        None, min_length=1, description="Instead of `tariff`: one tariff per year (the last repeats), each a number or per segment."
    )
    tariff_by_class: dict[str, dict[str, Money]] | None = Field(
        None, description=("Prices for latent classes the commissioner can predict at referral: per segment, per class; "
                           "replaces the segment's `tariff` for the classes named."))
    year_basis: Literal["contract", "entry"] = Field(
        "contract", description="`tariff_by_year`: the contract year of the trigger month, or the year the client was referred in."
    )
    deadweight: float = Field(0.0, ge=0, lt=1, description="Share deducted from every payment on this line (outcomes that would have happened anyway).")
    lag: int = Field(0, ge=0, le=MONTHS, description="Months between the triggering event and the money arriving.")
    rejection: float = Field(0.0, ge=0, le=1, description="Probability that a claim is rejected and never paid.")
    requires: str | None = Field(
        None, description="Name of another line, paid once per client, whose claim for the same client must have been "
        "accepted before this line pays (Work Programme: sustainment only after an accepted job outcome)."
    )
    source: str | None = None

    @field_validator("tariff")
    @classmethod
    def _tariff_non_negative(cls, v):
        if v is not None and not isinstance(v, dict) and v < 0:
            raise ValueError("tariff must not be negative")
        return v  # per-segment entries are checked in check_rules, which can name the segment


class VolumeBand(_Model):
    """Fee-for-service volume band: referrals outside expected ± band are topped up or clawed back at year end."""

    expected_per_year: float | list[float] = Field(..., description="Expected referrals per contract year (a list: per year, the last repeats).")
    band: float = Field(..., ge=0, le=1, description="Relative width of the no-adjustment band around the expected volume.")
    lag: int = Field(0, ge=0, le=MONTHS, description="Months after the year end that the reconciliation is paid.")
    segments: list[str] | None = Field(
        None, description="Segments whose referrals are the paid volume the band is measured against (default: all). "
        "Referrals of other segments are served and cost money but are not paid for by the fee."
    )
    source: str | None = None

    @field_validator("expected_per_year")
    @classmethod
    def _positive(cls, v):
        values = v if isinstance(v, list) else [v]
        if not values or any(x <= 0 for x in values):
            raise ValueError("expected volumes must be positive")
        return v


class ServiceFee(_Model):
    """Upfront / service share: fixed amounts by month, or a share of contract value on a schedule."""

    share_of_value: float | None = Field(None, ge=0, le=1, description="Share of `contract.value` paid as service fee.")
    total: Money | None = Field(None, ge=0, description="Total service fee (instead of a share).")
    amounts: list[Money] | None = Field(None, description="Explicit amount due in each month, from month 0.")
    schedule: Literal["monthly", "quarterly", "upfront"] | list[int] = Field(
        "monthly", description="When a total or share is paid: equal monthly or quarterly instalments over the contract, all at month 0, or equal parts in the listed months."
    )
    lag: int = Field(0, ge=0, le=MONTHS, description="Months between an instalment falling due and being paid (arrears).")
    volume_band: VolumeBand | None = Field(None, description="Year-end reconciliation of the fee against referral volumes.")

    @field_validator("amounts")
    @classmethod
    def _amounts_non_negative(cls, v):
        if v is not None and any(x < 0 for x in v):
            raise ValueError("amounts must not be negative")
        return v


class Cohort(_Model):
    start: int = Field(..., ge=0, le=MONTHS, description="First referral month of the cohort.")
    end: int = Field(..., ge=1, le=MONTHS, description="Month after the cohort's last referral month.")


class CohortPayment(_Model):
    """A cohort-level outcome: paid when the cohort's event rate falls enough below a comparison rate."""

    name: str
    event_state: str = Field(..., description="A client has the event if it first enters this state within `window_months` of referral.")
    window_months: int = Field(..., ge=1, le=MONTHS, description="Months after referral in which the event is counted.")
    baseline_rate: float = Field(..., gt=0, le=1, description="The comparison group's event rate.")
    cohorts: list[Cohort] = Field(..., min_length=1)
    threshold: float = Field(..., ge=0, le=1, description="Relative reduction 1 - rate/baseline at which a single cohort is paid.")
    threshold_all: float | None = Field(None, ge=0, le=1, description="Relative reduction for all cohorts combined, measured with the last cohort.")
    price_per_event_avoided: Money = Field(..., ge=0, description="Paid per avoided event: price × (baseline − rate) × cohort size.")
    lag: int = Field(0, ge=0, le=MONTHS, description="Months between measurement and payment.")
    source: str | None = None


class Contract(_Model):
    value: Money | None = Field(None, ge=0, description="Contract value; base for `service_fee.share_of_value`.")
    cap: Money | None = Field(None, ge=0, description="Most the commissioner pays in all; payments beyond it are capped.")
    per_person_cap: Money | None = Field(None, ge=0, description="Most paid for any one client over all payment lines (not fees or cohort payments).")
    cohort_payments: list[CohortPayment] = Field(default_factory=list, description="Cohort-level threshold outcome payments.")
    service_fee: ServiceFee | None = None
    payments: list[PaymentRule] = Field(default_factory=list)
    primary_outcome: str | None = Field(None, description="State counted as 'the outcome' in rates and cost per outcome; default the first outcome payment's state.")
    commissioner: str = Field("commissioner", description="Name of the paying party.")


class Credit(_Model):
    limit: Money | None = Field(0.0, ge=0, description="Overdraft limit; null means unlimited.")
    monthly_interest: float = Field(0.0, ge=0, description="Interest per month on the overdrawn balance.")


class ServiceCosts(_Model):
    full: Money = Field(..., ge=0)
    minimal: Money = Field(..., ge=0)


class HolisticPolicy(_Model):
    """Full service for every client in a service state while capacity lasts, first come first served."""

    name: Literal["holistic"] = "holistic"


class NeedsFirstPolicy(_Model):
    """When capacity is short, the most complex segments get full service first."""

    name: Literal["needs_first"]


class ReturnMaximisingPolicy(_Model):
    """Serve clients in order of the expected net value of full over minimal service; park negative ones."""

    name: Literal["return_maximising"]
    monthly_discount_rate: float = Field(0.0, ge=0, le=1, description="Discount per month applied to future payments and costs.")


class GradedPolicy(_Model):
    """Return-maximising, softened: clients it would park are still served with a chance that falls with how much
    they cost it (``temperature``), or a share of them is served, the best-valued first (``protected_share``)."""

    name: Literal["graded"]
    temperature: Money | None = Field(None, ge=0, description=(
        "Pounds: a client with net value -x is served with chance exp(-x / temperature); 0 = return_maximising, "
        "larger = closer to holistic (docs/behaviour.md §2)."))
    protected_share: float | None = Field(None, ge=0, le=1, description=(
        "Share of the clients with negative net value that still get full service each month, those closest to "
        "paying their way first: 0 = return_maximising, 1 = holistic (docs/behaviour.md §2)."))
    monthly_discount_rate: float = Field(0.0, ge=0, le=1, description="Discount per month applied to future payments and costs.")

    @model_validator(mode="after")
    def _one_strength(self):
        if (self.temperature is None) == (self.protected_share is None):
            raise ValueError("give exactly one of `temperature` (pounds) or `protected_share` (0 to 1)")
        return self


class CashStressedPolicy(_Model):
    """Holistic while cash is above `comfortable_cash`, return-maximising at or below `stressed_cash`, a blend between."""

    name: Literal["cash_stressed"]
    comfortable_cash: Money = Field(..., description="Cash at or above which the provider behaves holistically.")
    stressed_cash: Money = Field(..., description="Cash at or below which it behaves as return-maximising.")
    monthly_discount_rate: float = Field(0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self):
        if self.comfortable_cash < self.stressed_cash:
            raise ValueError("comfortable_cash must be at least stressed_cash")
        return self


PolicySpec = Annotated[
    Union[HolisticPolicy, NeedsFirstPolicy, ReturnMaximisingPolicy, GradedPolicy, CashStressedPolicy], Field(discriminator="name")
]


class Provider(_Model):
    name: str = "provider"
    opening_cash: Money = Field(0.0, ge=0)
    overhead_per_month: Money = Field(0.0, ge=0)
    cost_per_client_month: ServiceCosts
    capacity: int | None = Field(None, ge=0, le=lim.MAX_PENCE, description="Full-service places per month; null means unlimited.")
    credit: Credit = Field(default_factory=Credit)
    policy: PolicySpec = Field(default_factory=HolisticPolicy, description="Allocation policy: a name or a mapping with `name` and its parameters.")

    @field_validator("policy", mode="before")
    @classmethod
    def _policy_by_name(cls, v):
        return {"name": v} if isinstance(v, str) else v


PASS_THROUGH_KINDS = ("service_fee", "attachment", "milestone", "outcome", "sustainment")


class FeeForService(_Model):
    per_start: Money = Field(0.0, ge=0, description="Paid by the prime for each client referred to the subcontractor.")
    per_client_month: Money = Field(0.0, ge=0, description="Paid by the prime for each month a client of the subcontractor is in service.")


class Terms(_Model):
    """What a subcontractor gets from the prime; the parts combine."""

    pass_through: dict[str, float] = Field(
        default_factory=dict,
        description="Share of each commissioner payment kind the prime passes on for the subcontractor's clients (service_fee: share of each instalment). Kinds not listed: 0.",
    )
    management_fee: float = Field(0.0, ge=0, le=1, description="Share of passed-through money the prime keeps.")
    fee_for_service: FeeForService | None = None
    extra_lag: int = Field(0, ge=0, le=MONTHS, description="Months between the prime receiving money (or the service month) and paying the subcontractor.")
    guaranteed_referrals: int | None = Field(None, ge=0, le=lim.MAX_PENCE, description="Minimum referrals per month the prime sends (when it has them).")

    @field_validator("pass_through")
    @classmethod
    def _shares(cls, v):
        for kind, share in v.items():
            if kind not in PASS_THROUGH_KINDS:
                raise ValueError(f"unknown payment kind {kind!r}; kinds are {list(PASS_THROUGH_KINDS)}")
            if not 0 <= share <= 1:
                raise ValueError(f"pass-through share for {kind} must be a fraction between 0 and 1 (0.4 for 40%)")
        return v


class OnFailure(_Model):
    action: Literal["drop", "transfer"] = Field("drop", description="What happens to the clients of an organisation that becomes insolvent.")
    to: str | None = Field(None, description="Organisation receiving transferred clients (default: the prime).")
    gap_months: int = Field(0, ge=0, le=MONTHS, description="Months transferred clients go without service.")
    restart_state: str | None = Field(None, description="State transferred clients restart in (progress lost); default: they keep their state.")


class OrganisationSpec(Provider):
    name: str
    role: Literal["prime", "subcontractor"] = "subcontractor"
    terms: Terms | None = Field(None, description="Subcontractors only: terms with the prime.")
    on_failure: OnFailure = Field(default_factory=OnFailure)


class Allocation(_Model):
    method: Literal["fixed_shares", "by_segment", "performance"] = "fixed_shares"
    shares: dict[str, float] | None = Field(None, description="Share of referrals per organisation (fixed_shares; starting shares for performance).")
    by_segment: dict[str, dict[str, float]] | None = Field(None, description="Per segment, share of its referrals per organisation.")
    review_every: int = Field(3, ge=1, le=MONTHS, description="performance: months between share reviews.")
    step: float = Field(0.25, ge=0, le=1, description="performance: weight moved towards outcome-rate shares at each review.")


class SupplyChain(_Model):
    allocation: Allocation = Field(default_factory=Allocation)


class Tranche(_Model):
    """One class of investors: a ledger party, its commitment and its terms. Tranches are listed senior first."""

    investor: str = Field(..., description="Name of this tranche's investors (a party in the ledger).")
    commitment: Money = Field(..., ge=0, description="Most this tranche puts in; drawdowns are shared in proportion to commitments.")
    annual_return: float | None = Field(None, ge=0, le=1, description="Return due on its outstanding capital, compounded monthly (default: the finance's `annual_return`).")
    protection: float = Field(0.0, ge=0, le=1, description="Capital protection: share of the capital drawn that the guarantor makes good at the end.")


class ReturnCap(_Model):
    """The most investors may earn: an annual rate on capital outstanding and/or a multiple of capital drawn."""

    annual: float | None = Field(None, ge=0, le=10, description="Highest return a year (compounded monthly on capital outstanding).")
    multiple: float | None = Field(None, ge=1, le=100, description="Most each tranche receives, as a multiple of what it put in.")


class Intermediary(_Model):
    """The intermediary or special-purpose vehicle that arranges and manages the investment."""

    name: str = Field(..., description="Party in the ledger.")
    management_fee: Money = Field(0.0, ge=0, description="Fee a year, paid monthly during the contract out of the investors' commitment (counts as drawn).")


class Guarantee(_Model):
    """A guarantor who makes good investors' losses at the end: first loss, then each tranche's capital protection."""

    guarantor: str = Field(..., description="Party in the ledger.")
    first_loss: Money = Field(0.0, ge=0, description="The first losses of investors' capital covered, senior tranche first.")


class TopUp(_Model):
    """A second outcome payer who pays a share of each results payment (e.g. the Life Chances Fund)."""

    funder: str = Field(..., description="Party in the ledger; it reimburses the commissioner its share of each payment.")
    share: float = Field(..., gt=0, le=1, description="Share of each payment of the kinds below that the funder pays.")
    kinds: list[Literal["attachment", "milestone", "outcome", "sustainment"]] = Field(
        ["attachment", "milestone", "outcome", "sustainment"], min_length=1, description="Payment kinds topped up.")


class Finance(_Model):
    """Social investment financing an organisation's working capital, repaid only out of commissioner income."""

    investor: str | None = Field(None, description="Name of the investing party in the ledger (one tranche; or give `tranches`).")
    organisation: str | None = Field(None, description="Organisation financed (default: the contract holder).")
    commitment: Money | None = Field(None, ge=0, description="Most the investor puts in (one tranche; with `tranches`, their sum).")
    tranches: list[Tranche] | None = Field(None, min_length=1, max_length=8, description="Investor tranches, senior first; repaid in that order (the waterfall).")
    drawdown: Literal["upfront", "as_needed"] = Field("as_needed", description="All at month 0, or at month ends when cash is below `cash_floor`.")
    cash_floor: Money = Field(0.0, description="as_needed: cash the organisation is topped up to at each month end.")
    annual_return: float | None = Field(0.0, ge=0, le=1, description="Return due on outstanding capital, compounded monthly; null: no return limit but `return_cap`.")
    repayment_share: float = Field(1.0, gt=0, le=1, description="Share of each month's commissioner income paid to the investors until all owed is repaid.")
    protection: float = Field(0.0, ge=0, le=1, description="One tranche: its capital protection share (needs `guarantee`).")
    return_cap: ReturnCap | None = Field(None, description="The most investors may earn.")
    intermediary: Intermediary | None = Field(None, description="Intermediary / SPV and its management fee.")
    guarantee: Guarantee | None = Field(None, description="Guarantor of first loss and capital protection.")
    top_up: TopUp | None = Field(None, description="A top-up outcome payer (Life Chances Fund).")
    recycle: bool = Field(False, description="Contract income stays in delivery until the contract ends (or the holder fails); investors are then repaid out of cash.")
    hurdle_rate: float = Field(0.0, ge=-1, le=10, description="Annual IRR the summary compares each run with (probability of falling below it).")
    source: str | None = None

    @property
    def tranche_list(self) -> list[Tranche]:
        """The tranches, senior first (one tranche named ``investor`` when ``tranches`` is not given)."""
        if self.tranches is not None:
            return list(self.tranches)
        return [Tranche(investor=self.investor or "investor", commitment=self.commitment or 0.0, protection=self.protection)]

    @property
    def parties(self) -> list[str]:
        """Ledger parties finance adds: tranches' investors, then intermediary, guarantor and top-up funder."""
        out = [t.investor for t in self.tranche_list]
        out += [x.name for x in (self.intermediary,) if x] + [x.guarantor for x in (self.guarantee,) if x]
        return out + [x.funder for x in (self.top_up,) if x]


class Reporting(_Model):
    dropped_full_service_share: float = Field(
        0.25, ge=0, le=1,
        description="A client who leaves without an outcome is 'dropped' if they had full service in less than this share of their months in service.",
    )


class Scenario(_Model):
    name: str
    description: str | None = None
    months: int = Field(..., ge=1, le=MONTHS, description="Contract length T in months.")
    currency: str = "GBP"
    referrals: ReferralProfile
    segments: dict[str, Segment] = Field(..., min_length=1)
    pathway: Pathway
    contract: Contract
    provider: Provider | None = Field(None, description="A single delivery organisation (use `organisations` for a supply chain).")
    organisations: list[OrganisationSpec] | None = Field(None, description="A prime and its subcontractors.")
    supply_chain: SupplyChain | None = None
    finance: Finance | None = Field(None, description="Investor finance of an organisation's working capital.")
    reporting: Reporting = Field(default_factory=Reporting)
    value: Value | None = Field(None, description="Public value: what outcomes are worth to whom, against a counterfactual (docs/value.md).")

    @property
    def organisation_specs(self) -> list[OrganisationSpec]:
        """Organisations with the prime first; a single provider is a prime with no subcontractors."""
        if self.organisations is None:
            return [OrganisationSpec(**self.provider.model_dump(), role="prime")]
        return sorted(self.organisations, key=lambda o: o.role != "prime")

    # --- derived views used by the engine -------------------------------------------------
    @property
    def segment_names(self) -> list[str]:
        return list(self.segments)

    @property
    def all_states(self) -> list[str]:
        """Pathway states plus the engine's own terminal state for provider failure."""
        return list(self.pathway.states) + [DROPPED_STATE]

    @property
    def primary_outcome_state(self) -> str | None:
        if self.contract.primary_outcome:
            return self.contract.primary_outcome
        for rule in self.contract.payments:
            if rule.kind == "outcome" and rule.state:
                return rule.state
        return None

    @property
    def milestone_state(self) -> str | None:
        for rule in self.contract.payments:
            if rule.kind == "milestone" and rule.state:
                return rule.state
        return None

    # --- variants ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The scenario as the mapping a file would hold (fields left at their defaults are left out)."""
        return self.model_dump(mode="python", exclude_unset=True, by_alias=True)

    def get(self, path: str):
        """The value at a field path such as ``contract.payments[name=job].tariff`` (docs/python.md)."""
        from .overrides import PathError, get_value

        try:
            return get_value(self.to_dict(), path)
        except PathError as exc:
            raise KeyError(f"{path}: {exc}") from None

    def vary(self, changes: dict | None = None, *, remove=(), name: str | None = None) -> "Scenario":
        """A new, validated scenario: field paths in ``remove`` deleted, then each ``path: value`` of ``changes``
        set, as a design in an experiment file does (``list[+]`` appends an item); ``name`` renames it.
        Raises ScenarioError naming every path or rule the variant breaks; this scenario is unchanged."""
        from .overrides import apply_overrides

        source = f"variant of {self.name}"
        raw = apply_overrides(self.to_dict(), dict(changes or {}), source, remove=list(remove))
        if name is not None:
            raw["name"] = name
        return scenario_from_dict(raw, source)


# ---------------------------------------------------------------------------------------------
# Loading


def _loc_to_path(loc: tuple) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            # pydantic adds union member tags like 'float' / 'dict[str,float]'; keep real field names
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def _is_type_tag(part) -> bool:
    """pydantic puts union member names ('float', 'dict[str,float]', 'literal[...]') in error locations."""
    return isinstance(part, str) and (part in ("float", "int", "str", "bool") or "[" in part or "(" in part)


def _models_in(annotation) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through lists, mappings, unions and Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def known_fields(root: type[BaseModel], loc: tuple) -> list[str]:
    """The field names allowed at ``loc[:-1]`` below ``root`` (list indices and mapping keys are passed through)."""
    models = [root]
    for part in loc[:-1]:
        nxt = []
        for m in models:
            field = m.model_fields.get(part) if isinstance(part, str) else None
            nxt += _models_in(field.annotation) if field is not None else [m]
        models = list(dict.fromkeys(nxt))
    return sorted({name for m in models for name in m.model_fields})


def unknown_field_rule(root: type[BaseModel], loc: tuple, doc: str) -> str:
    """'unknown field' with the closest allowed name, if one is close: did you mean ...?"""
    import difflib

    allowed = known_fields(root, loc)
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6) if loc else []
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown field ({hint}check the spelling; see {doc} for the fields allowed here)"


def fraction_hint(err: dict) -> str:
    """For a share or rate written as a percentage (``40`` for ``0.4``): the fraction to write instead."""
    value, ctx = err.get("input"), err.get("ctx") or {}
    if (err["type"] in ("less_than_equal", "less_than") and ctx.get(err["type"].replace("less_than_equal", "le").replace("less_than", "lt")) == 1
            and isinstance(value, (int, float)) and 1 < value <= 100):
        return f"; shares and rates are fractions between 0 and 1: write {value / 100:g} for {value:g}%"
    return ""


def pydantic_problems(exc: ValidationError, doc: str = "docs/scenarios.md", root: type[BaseModel] | None = None) -> list[tuple[str, str]]:
    """(field path, rule) for each schema error; ``doc`` is where the fields of this kind of file are listed,
    ``root`` the model validated (default Scenario), used to suggest the field meant by an unknown one."""
    problems = []
    for err in exc.errors():
        loc = tuple(part for part in err["loc"] if not _is_type_tag(part))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = unknown_field_rule(root or Scenario, loc, doc)
        elif err["type"] == "missing":
            msg = "required field is missing"
        else:
            msg += fraction_hint(err)
        problems.append((_loc_to_path(loc), msg))
    # de-duplicate union noise while keeping order
    seen, unique = set(), []
    for p in problems:
        if p not in seen:
            seen.add(p)
            unique.append(p)
    return unique


COMPLETED = [Scenario, OrganisationSpec, Provider, OnFailure, Reporting]  # the models validating a scenario builds


def scenario_from_dict(data: dict, source: str = "<scenario>", limits: lim.Limits | None = None) -> Scenario:
    """Validate a mapping into a Scenario: the schema, the cross-field rules, the size limits in force
    (``limits``, default ``limits.active()``) and the money bound (always)."""
    from . import compiled

    compiled.ensure(COMPLETED)  # the validators, from the cache next to the bytecode when it has them
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(source, pydantic_problems(exc)) from None
    limits = limits or lim.active()
    for check in (lambda: bounds.count_problems(scenario, limits), lambda: check_rules(scenario),
                  lambda: bounds.memory_problems(scenario, limits) + bounds.money_problems(scenario)):
        problems = check()
        if problems:
            raise ScenarioError(source, problems)
    return scenario


def _deep_merge(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``: mappings merge key by key, anything else (lists included) replaces."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_chain(path: str | Path, limits: lim.Limits | None = None, data: dict | None = None) -> list[tuple[str, dict]]:
    """The files of an ``extends`` chain, the named file first, each as (name, its own fields without ``extends``).

    A parent is named relative to the file that extends it; it must be a regular file, the chain must not
    come back to itself and has at most ``limits.MAX_EXTENDS`` files. A problem with the ``extends`` field
    is reported under the file that has it; a parent that cannot be read is reported under its own name.
    """
    path = Path(path)
    data = read_yaml(path, limits) if data is None else data  # (``data``: the named file, already read)
    files: list[tuple[str, dict]] = []
    seen = [path.resolve()]
    while True:
        files.append((str(path), {k: v for k, v in data.items() if k != "extends"}))
        if "extends" not in data:
            return files
        ref = data["extends"]

        def fail(rule: str):
            raise ScenarioError(str(path), [("extends", rule)])

        if not isinstance(ref, str) or not ref.strip():
            fail("must be the name of a scenario file (text), relative to this file")
        parent = path.parent / ref
        key = parent.resolve()
        if key in seen:
            fail(f"circular: {key} extends itself through {len(seen)} file(s)")
        if len(files) >= lim.MAX_EXTENDS:
            fail(f"a chain of `extends` may have at most {lim.MAX_EXTENDS} files")
        if not parent.exists():
            fail(f"file {ref!r} not found (relative to {path.parent})")
        if not parent.is_file():
            fail(f"{ref!r} is not a regular file (a folder, device or pipe cannot be a parent scenario)")
        data = read_yaml(parent, limits)
        seen.append(key)
        path = parent


def merge_chain(files: list[tuple[str, dict]]) -> dict:
    """The scenario mapping a chain describes: the last parent first, each file laid on top."""
    out: dict = {}
    for _, data in reversed(files):
        out = _deep_merge(out, data)
    return out


_STEP = re.compile(r"\[(\d+)\]|[^.\[\]]+")


def _defines(data: Any, path: str) -> bool:
    """Whether ``data`` sets the value at ``path`` (or a list or value containing it)."""
    node = data
    for m in _STEP.finditer(path):
        if not isinstance(node, dict):
            return True  # a list or value given here replaces the parent's whole
        key = m.group(0)
        if key not in node:
            return False
        node = node[key]
    return True


def problem_sources(files: list[tuple[str, dict]], problems: list[tuple[str, str]]) -> list[str]:
    """For each problem, the file of the chain that set the field it is at (the named file if none did)."""
    out = []
    for path, _ in problems:
        src = files[0][0]
        if path and path != "extends":
            src = next((name for name, data in files if _defines(data, path)), src)
        out.append(src)
    return out


def validate_file(path: str | Path, limits: lim.Limits | None = None, data: dict | None = None) -> tuple[dict, Scenario]:
    """Read, resolve and validate a scenario file: (its mapping, the Scenario). Problems are reported under
    the file of the ``extends`` chain that set the field concerned."""
    files = read_chain(path, limits, data)
    raw = merge_chain(files)
    try:
        return raw, scenario_from_dict(raw, str(path), limits)
    except ScenarioError as exc:
        raise ScenarioError(exc.source, exc.problems, problem_sources(files, exc.problems)) from None


def load_raw(path: str | Path, limits: lim.Limits | None = None) -> dict:
    """The scenario mapping of a file, with any ``extends`` chain resolved (not yet validated)."""
    return merge_chain(read_chain(path, limits))


def load_scenario(path: str | Path, limits: lim.Limits | None = None) -> Scenario:
    """Load and validate a scenario file."""
    return validate_file(path, limits)[1]


def file_hash(path: str | Path) -> str:
    """SHA-256 of an input file (read with the same guards as when it was loaded)."""
    return hashlib.sha256(read_bytes(path)).hexdigest()


# ---------------------------------------------------------------------------------------------
# Cross-field rules


def _check_rows(prefix: str, rows: TransitionRows, states: list[str], absorbing: set[str]) -> list[tuple[str, str]]:
    problems = []
    known = set(states)
    for frm, row in rows.items():
        path = f"{prefix}.{frm}"
        if frm not in known:
            problems.append((path, f"unknown state {frm!r}; states are {states}"))
            continue
        for to, p in row.items():
            if to not in known:
                problems.append((f"{path}.{to}", f"unknown state {to!r}; states are {states}"))
            if not (0 <= p <= 1):
                problems.append((f"{path}.{to}", f"probability {p} must be a fraction between 0 and 1 (0.4 for 40%)"))
        total = sum(row.values())
        if abs(total - 1) > ROW_TOLERANCE:
            problems.append((path, f"row must sum to 1 (it sums to {total:.10g})"))
        if frm in absorbing and abs(row.get(frm, 0) - 1) > ROW_TOLERANCE:
            problems.append((path, f"{frm!r} is absorbing, so its row must be {{{frm}: 1}} or omitted"))
    for s in states:
        if s not in absorbing and s not in rows:
            problems.append((prefix, f"no row for non-absorbing state {s!r}"))
    return problems


def forward_states(sc: Scenario) -> dict[str, set[str]]:
    """For each state, the states a move into counts as progress: those listed after it in ``pathway.states``
    that are not absorbing, and absorbing ones that a payment line pays for or that are the primary outcome."""
    absorbing = set(sc.pathway.absorbing)
    paid = {sc.contract.primary_outcome} if sc.contract.primary_outcome else set()
    for rule in sc.contract.payments:
        paid |= {rule.state} if rule.state else set()
        paid |= set(rule.states or ())
    states = sc.pathway.states
    return {s: {t for t in states[i + 1:] if t not in absorbing or t in paid} for i, s in enumerate(states)}


def _check_class_tariff(path: str, rule: PaymentRule, sc: Scenario) -> list[tuple[str, str]]:
    if rule.tariff_by_class is None:
        return []
    if rule.tariff_by_year is not None:
        return [(path, "prices by latent class do not combine with `tariff_by_year`; give `tariff` with them")]
    p = []
    for seg, prices in rule.tariff_by_class.items():
        spec = sc.segments.get(seg)
        if spec is None:
            p.append((f"{path}.{seg}", f"unknown segment {seg!r}; segments are {list(sc.segments)}"))
            continue
        names = [c.name for c in spec.latent_classes.classes] if spec.latent_classes is not None else []
        for cls, amount in prices.items():
            if cls not in names:
                p.append((f"{path}.{seg}.{cls}", f"unknown latent class {cls!r} of segment {seg!r}; its classes are {names}"))
            elif amount < 0:
                p.append((f"{path}.{seg}.{cls}", "tariff must not be negative"))
    return p


def _check_latent_classes(sc: Scenario) -> list[tuple[str, str]]:
    p: list[tuple[str, str]] = []
    forward = None
    for name, seg in sc.segments.items():
        lc = seg.latent_classes
        if lc is None:
            continue
        path = f"segments.{name}.latent_classes.classes"
        total = sum(c.share for c in lc.classes)
        if abs(total - 1) > SHARE_TOLERANCE:
            p.append((path, f"class shares must sum to 1 (they sum to {total:.6g})"))
        names = [c.name for c in lc.classes]
        for i, c in enumerate(lc.classes):
            if names.count(c.name) > 1:
                p.append((f"{path}[{i}].name", f"class name {c.name!r} is used twice in the segment"))
        seg_t = sc.pathway.transitions.get(name)
        if seg_t is None:
            continue
        forward = forward if forward is not None else forward_states(sc)
        for i, c in enumerate(lc.classes):
            if c.progress <= 1.0:
                continue
            for level in SERVICE_LEVELS:
                for frm, row in getattr(seg_t, level).items():
                    stay = row.get(frm, 0.0)
                    if frm in sc.pathway.absorbing or stay <= 0.0:
                        continue
                    fwd = sum(q for to, q in row.items() if to in forward[frm] and to != frm)
                    if (c.progress - 1.0) * fwd > stay + ROW_TOLERANCE:
                        p.append((f"{path}[{i}].progress", (
                            f"progress {c.progress:g} needs more than the chance of staying in {frm!r} "
                            f"(pathway.transitions.{name}.{level}.{frm}: forward moves {fwd:.6g}, staying {stay:.6g}); "
                            f"the most it can be is {1.0 + stay / fwd:.6g}")))
                        break
                else:
                    continue
                break
    return p


def check_rules(sc: Scenario) -> list[tuple[str, str]]:
    """Rules that span fields; each problem is (dotted path, rule)."""
    p: list[tuple[str, str]] = []
    states = sc.pathway.states
    known = set(states)
    if len(known) != len(states):
        p.append(("pathway.states", "state names must be unique"))
    if DROPPED_STATE in known:
        p.append(("pathway.states", f"{DROPPED_STATE!r} is reserved for clients of a failed provider"))
    if sc.pathway.initial_state not in known:
        p.append(("pathway.initial_state", f"unknown state {sc.pathway.initial_state!r}; states are {states}"))
    absorbing = set(sc.pathway.absorbing)
    for i, s in enumerate(sc.pathway.absorbing):
        if s not in known:
            p.append((f"pathway.absorbing[{i}]", f"unknown state {s!r}; states are {states}"))
    if sc.pathway.initial_state in absorbing:
        p.append(("pathway.initial_state", "the initial state must not be absorbing"))
    pw = sc.pathway
    if pw.max_months_on_programme is not None and pw.exit_state is None:
        p.append(("pathway.exit_state", "required when max_months_on_programme is set"))
    if pw.exit_state is not None:
        if pw.exit_state not in known:
            p.append(("pathway.exit_state", f"unknown state {pw.exit_state!r}; states are {states}"))
        elif pw.exit_state not in absorbing:
            p.append(("pathway.exit_state", f"{pw.exit_state!r} must be listed in pathway.absorbing"))
    if pw.exit_applies_to is not None and pw.max_months_on_programme is None:
        p.append(("pathway.exit_applies_to", "only applies with max_months_on_programme"))
    for i, s in enumerate(pw.exit_applies_to or []):
        if s not in known:
            p.append((f"pathway.exit_applies_to[{i}]", f"unknown state {s!r}; states are {states}"))
        elif s in absorbing:
            p.append((f"pathway.exit_applies_to[{i}]", f"{s!r} is absorbing; forced exit only applies to active states"))
    for i, s in enumerate(pw.service_states or []):
        if s not in known:
            p.append((f"pathway.service_states[{i}]", f"unknown state {s!r}; states are {states}"))
        elif s in absorbing:
            p.append((f"pathway.service_states[{i}]", f"{s!r} is absorbing; service is only delivered in active states"))

    # segments
    total = sum(seg.share for seg in sc.segments.values())
    if abs(total - 1) > SHARE_TOLERANCE:
        p.append(("segments", f"segment shares must sum to 1 (they sum to {total:.6g})"))
    for name in sc.segments:
        if name not in pw.transitions:
            p.append(("pathway.transitions", f"no transitions for segment {name!r}"))
    for name, seg_t in pw.transitions.items():
        if name not in sc.segments:
            p.append((f"pathway.transitions.{name}", f"unknown segment {name!r}; segments are {list(sc.segments)}"))
            continue
        for level in SERVICE_LEVELS:
            p += _check_rows(f"pathway.transitions.{name}.{level}", getattr(seg_t, level), states, absorbing)
    if not p:
        p += _check_latent_classes(sc)

    # referrals
    r = sc.referrals
    if (r.monthly is None) == (r.rate is None):
        p.append(("referrals", "give exactly one of `monthly` (a list) or `rate` (a constant)"))
    if r.monthly is not None and len(r.monthly) > sc.months:
        p.append(("referrals.monthly", f"{len(r.monthly)} months given but the contract lasts {sc.months}"))
    if r.rate is not None and r.end is not None and r.end > sc.months:
        p.append(("referrals.end", f"end month {r.end} is after the contract end {sc.months}"))
    if r.rate is not None and r.start >= sc.months:
        p.append(("referrals.start", f"start month {r.start} is not before the contract end ({sc.months} months)"))
    if r.rate is not None and r.end is not None and r.end < r.start:
        p.append(("referrals.end", "end must not be before start"))

    p += _check_organisations(sc)
    p += _check_finance(sc)
    if sc.value is not None:
        p += check_value(sc.value, states, sc.pathway.absorbing, list(sc.segments), (DROPPED_STATE,))

    if r.monthly is not None and ({"start", "end"} & r.model_fields_set):
        p.append(("referrals", "`start` and `end` only apply to `rate`; a `monthly` list gives every month itself"))

    # contract
    c = sc.contract
    names = [rule.name for rule in c.payments]
    reserved_items = {"service_fee", "overhead", "interest", "delivery_full", "delivery_minimal", "ffs_start", "ffs_month"} | set(EXTRA_ITEMS)
    for i, rule in enumerate(c.payments):
        if rule.name in reserved_items:
            p.append((f"contract.payments[{i}].name", f"{rule.name!r} is reserved; reserved names are {sorted(reserved_items)}"))
    if sc.provider is not None and sc.provider.name in {c.commissioner, "staff_and_suppliers", "lender"}:
        p.append(("provider.name", f"{sc.provider.name!r} is the name of another party (the commissioner, staff_and_suppliers or lender)"))
    for i, rule in enumerate(c.payments):
        path = f"contract.payments[{i}]"
        if names.count(rule.name) > 1:
            p.append((f"{path}.name", f"payment name {rule.name!r} is used more than once"))
        if rule.kind == "sustainment":
            if not rule.states:
                p.append((f"{path}.states", "sustainment payments need `states` (the states whose months are paid)"))
            if rule.max_months is None:
                p.append((f"{path}.max_months", "sustainment payments need `max_months`"))
            if rule.state is not None:
                p.append((f"{path}.state", "sustainment payments use `states`, not `state`"))
            for j, s in enumerate(rule.states or []):
                if s not in known:
                    p.append((f"{path}.states[{j}]", f"unknown state {s!r}; states are {states}"))
        else:
            if (rule.state is None) == (rule.states is None):
                p.append((f"{path}.state", f"{rule.kind} payments need `state` (the state whose first entry is paid) "
                          "or `states` (first entry into any of them), not both"))
            elif rule.state is not None and rule.state not in known:
                p.append((f"{path}.state", f"unknown state {rule.state!r}; states are {states}"))
            if rule.states is not None and not rule.states:
                p.append((f"{path}.states", "name at least one state"))
            for j, s in enumerate(rule.states or []):
                if s not in known:
                    p.append((f"{path}.states[{j}]", f"unknown state {s!r}; states are {states}"))
            if rule.max_months is not None:
                p.append((f"{path}.max_months", f"`max_months` only applies to sustainment payments, not {rule.kind}"))
        if (rule.tariff is None) == (rule.tariff_by_year is None):
            p.append((f"{path}.tariff", "give exactly one of `tariff` or `tariff_by_year`"))
        if rule.tariff is not None:
            p += _check_tariff(f"{path}.tariff", rule.tariff, sc)
        for y, tariff in enumerate(rule.tariff_by_year or []):
            p += _check_tariff(f"{path}.tariff_by_year[{y}]", tariff, sc)
        p += _check_class_tariff(f"{path}.tariff_by_class", rule, sc)
        if "year_basis" in rule.model_fields_set and rule.tariff_by_year is None:
            p.append((f"{path}.year_basis", "only applies with `tariff_by_year`"))
        if rule.requires is not None:
            p += _check_requires(path, rule, c.payments, sc.pathway.initial_state)
    items = set(names) | reserved_items | set(EXTRA_ITEMS)
    for i, cp in enumerate(c.cohort_payments):
        path = f"contract.cohort_payments[{i}]"
        if cp.name in items:
            p.append((f"{path}.name", f"{cp.name!r} is already the name of a payment line or a reserved item"))
        items.add(cp.name)
        if cp.event_state not in known:
            p.append((f"{path}.event_state", f"unknown state {cp.event_state!r}; states are {states}"))
        last_end = 0
        for j, co in enumerate(cp.cohorts):
            if co.end <= co.start:
                p.append((f"{path}.cohorts[{j}].end", "end must be after start"))
            if co.start < last_end:
                p.append((f"{path}.cohorts[{j}].start", "cohorts must be in order and must not overlap"))
            if co.end > sc.months:
                p.append((f"{path}.cohorts[{j}].end", f"end month {co.end} is after the contract end {sc.months}"))
            elif co.end - 1 + cp.window_months > sc.months:
                p.append((f"{path}.cohorts[{j}].end", f"the last member's {cp.window_months}-month window ends after the contract "
                          f"({sc.months} months): clients stop moving at the contract end, so end must be at most "
                          f"{sc.months - cp.window_months + 1}"))
            last_end = max(last_end, co.end)
    if c.primary_outcome is not None and c.primary_outcome not in known:
        p.append(("contract.primary_outcome", f"unknown state {c.primary_outcome!r}; states are {states}"))
    fee = c.service_fee
    if fee is not None:
        given = [k for k in ("share_of_value", "total", "amounts") if getattr(fee, k) is not None]
        if len(given) != 1:
            p.append(("contract.service_fee", "give exactly one of `share_of_value`, `total` or `amounts`"))
        if fee.share_of_value is not None and c.value is None:
            p.append(("contract.value", "required when service_fee.share_of_value is used"))
        if fee.amounts is not None and len(fee.amounts) > sc.months:
            p.append(("contract.service_fee.amounts", f"{len(fee.amounts)} months given but the contract lasts {sc.months}"))
        if fee.volume_band is not None and fee.amounts is None and fee.schedule == "upfront":
            p.append(("contract.service_fee.volume_band", "needs a fee paid over the contract years (not `upfront`)"))
        vb_segments = fee.volume_band.segments if fee.volume_band is not None else None
        if vb_segments is not None:
            if not vb_segments:
                p.append(("contract.service_fee.volume_band.segments", "name at least one segment (or leave the field out: all)"))
            for j, g in enumerate(vb_segments):
                if g not in sc.segments:
                    p.append((f"contract.service_fee.volume_band.segments[{j}]", f"unknown segment {g!r}; segments are {list(sc.segments)}"))
        if isinstance(fee.schedule, list):
            if not fee.schedule:
                p.append(("contract.service_fee.schedule", "a list of months must name at least one month"))
            for j, m in enumerate(fee.schedule):
                if not (0 <= m < sc.months):
                    p.append((f"contract.service_fee.schedule[{j}]", f"month {m} is outside the contract (0 to {sc.months - 1})"))
    return p


def _check_requires(path: str, rule: PaymentRule, lines: list[PaymentRule], initial: str) -> list[tuple[str, str]]:
    """`requires`: another line, paid once per client, that does not itself require one; not paid at referral."""
    by_name = {r.name: r for r in lines}
    other = by_name.get(rule.requires)
    if rule.requires == rule.name:
        return [(f"{path}.requires", "a line cannot require itself")]
    if other is None:
        return [(f"{path}.requires", f"unknown payment line {rule.requires!r}; lines are {sorted(by_name)}")]
    p: list[tuple[str, str]] = []
    if other.kind == "sustainment":
        p.append((f"{path}.requires", f"{other.name!r} is a sustainment line; name a line paid once per client "
                  "(attachment, milestone or outcome)"))
    if other.requires is not None:
        p.append((f"{path}.requires", f"{other.name!r} itself requires {other.requires!r}: chains of `requires` are not supported"))
    if rule.kind != "sustainment" and (rule.state == initial or initial in (rule.states or [])):
        p.append((f"{path}.requires", f"this line is paid at referral (state {initial!r}), before any other claim can "
                  "have been accepted"))
    return p


def _check_tariff(path: str, tariff: Tariff, sc: Scenario) -> list[tuple[str, str]]:
    p: list[tuple[str, str]] = []
    if not isinstance(tariff, dict):
        if tariff < 0:
            p.append((path, "tariff must not be negative"))
        return p
    for seg, amount in tariff.items():
        if amount < 0:
            p.append((f"{path}.{seg}", "tariff must not be negative"))
        if seg != "default" and seg not in sc.segments:
            p.append((f"{path}.{seg}", f"unknown segment {seg!r}; segments are {list(sc.segments)}"))
    missing = [s for s in sc.segments if s not in tariff]
    if missing and "default" not in tariff:
        p.append((path, f"no tariff for segments {missing}; list them or give `default`"))
    return p


def _check_finance(sc: Scenario) -> list[tuple[str, str]]:
    f = sc.finance
    if f is None:
        return []
    p: list[tuple[str, str]] = []
    orgs = [o.name for o in sc.organisation_specs] if (sc.provider is None) != (sc.organisations is None) else []
    taken = set(orgs) | {sc.contract.commissioner, "staff_and_suppliers", "lender"}
    if f.tranches is None:
        if f.investor is None:
            p.append(("finance.investor", "give the investor's name, or `tranches`"))
        if f.commitment is None:
            p.append(("finance.commitment", "give the commitment, or `tranches`"))
    else:
        for field in ("investor", "commitment", "protection"):
            if field in f.model_fields_set:
                p.append((f"finance.{field}", "with `tranches`, give it in each tranche"))
    paths = ([f"finance.tranches[{i}].investor" for i in range(len(f.tranches))] if f.tranches is not None else ["finance.investor"])
    paths += ["finance.intermediary.name"] * bool(f.intermediary) + ["finance.guarantee.guarantor"] * bool(f.guarantee)
    paths += ["finance.top_up.funder"] * bool(f.top_up)
    seen: set[str] = set()
    for path, name in zip(paths, f.parties):
        if name in taken:
            p.append((path, f"{name!r} is the name of another party"))
        elif name in seen:
            p.append((path, f"{name!r} is used by another finance party"))
        seen.add(name)
    if f.organisation is not None and orgs and f.organisation not in orgs:
        p.append(("finance.organisation", f"unknown organisation {f.organisation!r}; organisations are {orgs}"))
    if "cash_floor" in f.model_fields_set and f.drawdown != "as_needed":
        p.append(("finance.cash_floor", "only applies with drawdown: as_needed"))
    protected = f.protection > 0 or any(t.protection > 0 for t in f.tranches or [])
    if (protected or (f.guarantee is not None and f.guarantee.first_loss > 0)) is False and f.guarantee is not None:
        p.append(("finance.guarantee", "guarantees nothing: give `first_loss` or a tranche's `protection`"))
    if protected and f.guarantee is None:
        p.append(("finance.guarantee", "capital protection needs a guarantor: give `guarantee: {guarantor: NAME}`"))
    if f.return_cap is not None and f.return_cap.annual is None and f.return_cap.multiple is None:
        p.append(("finance.return_cap", "give `annual`, `multiple` or both"))
    return p


def _check_organisations(sc: Scenario) -> list[tuple[str, str]]:
    p: list[tuple[str, str]] = []
    if (sc.provider is None) == (sc.organisations is None):
        return [("provider", "give exactly one of `provider` (one organisation) or `organisations` (a supply chain)")]
    if sc.provider is not None:
        if sc.supply_chain is not None:
            p.append(("supply_chain", "only applies with `organisations`"))
        return p
    orgs = sc.organisations
    names = [o.name for o in orgs]
    reserved = {sc.contract.commissioner, "staff_and_suppliers", "lender"}
    for i, o in enumerate(orgs):
        if names.count(o.name) > 1:
            p.append((f"organisations[{i}].name", f"organisation name {o.name!r} is used more than once"))
        if o.name in reserved:
            p.append((f"organisations[{i}].name", f"{o.name!r} is reserved for another party"))
        if o.role == "prime" and o.terms is not None:
            p.append((f"organisations[{i}].terms", "the prime has no terms with itself; terms belong to subcontractors"))
        if o.role == "subcontractor" and o.terms is None:
            p.append((f"organisations[{i}].terms", "a subcontractor needs `terms` with the prime"))
        f = o.on_failure
        if f.to is not None and f.to not in names:
            p.append((f"organisations[{i}].on_failure.to", f"unknown organisation {f.to!r}; organisations are {names}"))
        if f.to == o.name:
            p.append((f"organisations[{i}].on_failure.to", "clients cannot be transferred to the failed organisation itself"))
        if f.action == "drop" and (f.to or f.gap_months or f.restart_state):
            p.append((f"organisations[{i}].on_failure", "`to`, `gap_months` and `restart_state` only apply to action: transfer"))
        if f.restart_state is not None:
            if f.restart_state not in sc.pathway.states:
                p.append((f"organisations[{i}].on_failure.restart_state", f"unknown state {f.restart_state!r}; states are {sc.pathway.states}"))
            elif f.restart_state in sc.pathway.absorbing:
                p.append((f"organisations[{i}].on_failure.restart_state", "must not be absorbing"))
    primes = [o.name for o in orgs if o.role == "prime"]
    if len(primes) != 1:
        p.append(("organisations", f"exactly one organisation must have role: prime (found {len(primes)})"))
    alloc = (sc.supply_chain or SupplyChain()).allocation
    base = "supply_chain.allocation"
    if alloc.method in ("fixed_shares", "performance"):
        if alloc.shares is None:
            if len(orgs) > 1:
                p.append((f"{base}.shares", f"required for method {alloc.method}"))
        else:
            p += _check_share_map(f"{base}.shares", alloc.shares, names)
    else:
        if alloc.by_segment is None:
            p.append((f"{base}.by_segment", "required for method by_segment"))
        else:
            for seg in sc.segments:
                if seg not in alloc.by_segment:
                    p.append((f"{base}.by_segment", f"no allocation for segment {seg!r}"))
            for seg, shares in alloc.by_segment.items():
                if seg not in sc.segments:
                    p.append((f"{base}.by_segment.{seg}", f"unknown segment {seg!r}; segments are {list(sc.segments)}"))
                else:
                    p += _check_share_map(f"{base}.by_segment.{seg}", shares, names)
    return p


def _check_share_map(path: str, shares: dict[str, float], names: list[str]) -> list[tuple[str, str]]:
    p = []
    for org, share in shares.items():
        if org not in names:
            p.append((f"{path}.{org}", f"unknown organisation {org!r}; organisations are {names}"))
        if not 0 <= share <= 1:
            p.append((f"{path}.{org}", "share must be a fraction between 0 and 1 (0.4 for 40%)"))
    total = sum(shares.values())
    if abs(total - 1) > SHARE_TOLERANCE:
        p.append((path, f"shares must sum to 1 (they sum to {total:.6g})"))
    return p


def json_schema() -> dict:
    return Scenario.model_json_schema()
