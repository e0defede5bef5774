"""Green Book conventions: discounting at the social time preference rate and real prices.

HM Treasury, *The Green Book: central government guidance on appraisal and evaluation* (2022),
Annex A6: the social time preference rate (STPR) is 3.5% a year for the first 30 years and then
declines: 3.0% for years 31-75, 2.5% for 76-125, 2.0% for 126-200, 1.5% for 201-300 and 1.0% after.
Year 0 (the first appraisal year) is not discounted; the factor for year t is the product of
1 / (1 + r) over years 1..t. A flow in month m falls in appraisal year m // 12.

Real prices: a figure in prices of year y is expressed in prices of the base year b by multiplying
by deflator[b] / deflator[y] (HM Treasury, *GDP deflators at market prices, and money GDP: user's
guide*, "Inflating and deflating figures").
"""

from __future__ import annotations

import numpy as np

# (last year the rate applies to, rate): HM Treasury Green Book (2022), Annex A6, Table 8
STPR_SCHEDULE = ((30, 0.035), (75, 0.030), (125, 0.025), (200, 0.020), (300, 0.015), (None, 0.010))


def stpr(year: int) -> float:
    """The discount rate that applies to appraisal year ``year`` (years counted from 1)."""
    for last, rate in STPR_SCHEDULE:
        if last is None or year <= last:
            return rate
    raise AssertionError("unreachable")


def discount_factors(years: int) -> np.ndarray:
    """Green Book discount factors for appraisal years 0..years-1 (year 0 = 1)."""
    rates = np.array([stpr(t) for t in range(1, years)])
    return np.concatenate([[1.0], np.cumprod(1.0 / (1.0 + rates))])


def monthly_factors(months: int) -> np.ndarray:
    """The discount factor of each month 0..months-1: that of its appraisal year (month // 12)."""
    annual = discount_factors(months // 12 + 1)
    return annual[np.arange(months) // 12]


def deflate(amount: float, from_year: str, to_year: str, index: dict[str, float]) -> float:
    """``amount`` in prices of ``from_year`` expressed in prices of ``to_year`` with a deflator ``index``."""
    if from_year == to_year:
        return float(amount)
    return float(amount) * index[to_year] / index[from_year]
