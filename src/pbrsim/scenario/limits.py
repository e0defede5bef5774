"""Input limits: the caps that keep every accepted input within bounded time and memory.

Two kinds (docs/scenarios.md, "Limits"):

* size limits (file sizes, values in a file, months, lags, states, clients, designs, runs and the
  estimated memory of a run) protect an ordinary machine. ``--allow-large`` (or the environment
  variable ``PBRSIM_ALLOW_LARGE=1``) replaces them with the larger ``LARGE`` set for people with bigger
  machines;
* hard limits come from pbrsim's number types (months in 16-bit integers, money in 64-bit integer
  pence) or guard against malformed files (nesting depth, recursive aliases, long ``extends`` chains);
  they always apply.

The memory model (``run_bytes``) was measured with ``benchmarks/bench_limits.py``: the peak memory of
``pbrsim run`` grows by at most about 20 + 3·S bytes per client and 600 + 30·S bytes per organisation-month
(S = pathway states, plus one) kept for every replication; the estimate uses these upper figures.
"""

from __future__ import annotations

import contextlib
import os
from contextvars import ContextVar
from dataclasses import dataclass

ALLOW_LARGE_ENV = "PBRSIM_ALLOW_LARGE"
ALLOW_LARGE_FLAG = "--allow-large"

# --- hard limits: never lifted -----------------------------------------------------------------
MAX_DEPTH = 40  # nesting of mappings and lists in a YAML file (a scenario needs 7)
MAX_EXTENDS = 10  # files in an `extends` chain
MAX_MONTHS_EVER = 10_000  # months and lags are stored in 16-bit integers: months + lags stay below 32,767
MAX_LAG_EVER = 10_000
MAX_COUNT_EVER = 30_000  # states, segments and organisations are 16-bit codes
MAX_PENCE = 2**53  # money per replication: float64 sums of integer pence are exact below 2**53 (about £90 trillion)
MAX_INT64 = 2**63 - 1
MAX_DIGITS = 30  # integers in YAML files longer than this are refused (nothing in pbrsim counts that high)

MIB = 1 << 20
GIB = 1 << 30


@dataclass(frozen=True)
class Limits:
    """The size limits in force; ``None`` means no limit."""

    yaml_bytes: int  # size of a YAML file (scenario, experiment, stresses, targets)
    csv_bytes: int  # size of an INDIGO CSV file
    values: int  # values in one YAML file, each use of an alias counted in full
    months: int
    lag: int  # every lag, extra lag and gap, in months
    states: int
    segments: int
    organisations: int
    payment_lines: int  # payment lines plus cohort payments
    memory: int | None  # estimated bytes of the tables of a run's replications
    designs: int | None  # designs an experiment makes (designs plus sweep points)
    design_values: int | None  # designs × values of each design's scenario
    runs: int | None  # designs × replications of an experiment
    large: bool = False

    def flag_hint(self) -> str:
        """What to say when a size limit is hit."""
        if self.large:
            return "this is beyond the limits of --allow-large as well"
        return f"on a machine with more memory, {ALLOW_LARGE_FLAG} (or {ALLOW_LARGE_ENV}=1) lifts this limit"


DEFAULT = Limits(
    yaml_bytes=1 * MIB,
    csv_bytes=20 * MIB,
    values=100_000,
    months=600,
    lag=120,
    states=100,
    segments=50,
    organisations=20,
    payment_lines=100,
    memory=4 * GIB,
    designs=10_000,
    design_values=20_000_000,
    runs=1_000_000,
)

LARGE = Limits(
    yaml_bytes=64 * MIB,
    csv_bytes=1024 * MIB,
    values=10_000_000,
    months=MAX_MONTHS_EVER,
    lag=MAX_LAG_EVER,
    states=MAX_COUNT_EVER,
    segments=MAX_COUNT_EVER,
    organisations=MAX_COUNT_EVER,
    payment_lines=MAX_COUNT_EVER,
    memory=None,
    designs=None,
    design_values=None,
    runs=None,
    large=True,
)

_large: ContextVar[bool] = ContextVar("pbrsim_allow_large", default=False)


def env_allows_large() -> bool:
    return os.environ.get(ALLOW_LARGE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def active() -> Limits:
    """The limits in force here: LARGE inside ``allowing_large()`` or with PBRSIM_ALLOW_LARGE=1, else DEFAULT."""
    return LARGE if _large.get() or env_allows_large() else DEFAULT


@contextlib.contextmanager
def allowing_large(enabled: bool = True):
    """Within this block the LARGE limits are in force (what ``--allow-large`` does for one command)."""
    token = _large.set(bool(enabled) or _large.get())
    try:
        yield
    finally:
        _large.reset(token)


# --- the memory model --------------------------------------------------------------------------
BYTES_PER_CLIENT = 20  # plus BYTES_PER_CLIENT_STATE per pathway state
BYTES_PER_CLIENT_STATE = 3
BYTES_PER_ORG_MONTH = 600  # plus BYTES_PER_ORG_MONTH_STATE per pathway state
BYTES_PER_ORG_MONTH_STATE = 30
VALUE_TABLE_CELLS = 4096  # the policy's auxiliary states at most (engine.client_value.MAX_AUX)


def replication_bytes(clients: float, states: int, horizon: int, organisations: int) -> float:
    """Estimated bytes one replication's tables take while a run keeps them."""
    return clients * (BYTES_PER_CLIENT + BYTES_PER_CLIENT_STATE * states) + \
        horizon * organisations * (BYTES_PER_ORG_MONTH + BYTES_PER_ORG_MONTH_STATE * states)


def model_bytes(segments: int, states: int, value_tables: bool) -> float:
    """Estimated bytes of a compiled scenario: transition tables and, for policies that value clients, their tables."""
    out = 3 * 2 * segments * states * states * 8
    if value_tables:
        out += 6 * 2 * segments * 2 * states * VALUE_TABLE_CELLS * 8
    return out


def fmt_bytes(n: float) -> str:
    if not n < float("inf"):
        return "unbounded"
    if n >= 1e7 * GIB:
        return f"{n / GIB:.3g} GB"
    if n >= 100 * GIB:
        return f"{n / GIB:,.0f} GB"
    if n >= GIB:
        return f"{n / GIB:,.1f} GB"
    return f"{n / MIB:,.0f} MB"


def fmt_count(n: float) -> str:
    """A count for messages: exact below a trillion, else in scientific notation."""
    if not n < float("inf"):
        return "unboundedly many"
    return f"{n:,.0f}" if n < 1e12 else f"{n:.2g}"
