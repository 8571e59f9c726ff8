"""The MRR report: monthly figures in one currency, from the MRR read model's sums.

Other currencies convert to the report's currency at the rate of the first day of each month
(the latest rate published on or before it, across the euro when no direct rate is known). The
effect of rate changes is ``fx_adjustment_minor``, never expansion or contraction; see
``monthly_report`` for how the identity MRR(m) = MRR(m−1) + new + expansion − contraction −
churn + reactivation + fx_adjustment is kept exact in integers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Any

from domain.fx import FxRateMissing, convert_minor, cross_rate
from domain.mrr import (
    COUNTED_KINDS,
    INCREASES,
    MOVEMENT_COUNTERS,
    MOVEMENT_KINDS,
    add_months,
)


def quick_ratio(gained_minor: int, lost_minor: int) -> str | None:
    """(new + expansion + reactivation) ÷ (contraction + churn) as a decimal string with two
    places, rounded half to even; None when nothing was lost (the ratio is unbounded)."""
    if lost_minor == 0:
        return None
    ratio = (Decimal(gained_minor) / Decimal(lost_minor)).quantize(
        Decimal("0.01"), rounding=ROUND_HALF_EVEN
    )
    return str(ratio)


# The report ---------------------------------------------------------------------------------------

CUSTOMER_COUNTERS = tuple(COUNTED_KINDS.values())
Quotes = Mapping[tuple[str, str], Decimal]


class MonthRates:
    """Converts to the report's currency at the rate of each month's first day: ``quotes`` maps
    a month to the rates (``(base, quote)`` → quote per base) latest published on or before its
    first day. A rate is looked up only when a non-zero amount needs it."""

    def __init__(self, target: str, quotes: Mapping[date, Quotes]) -> None:
        self.target = target
        self.quotes = quotes
        self._rates: dict[tuple[str, date], Fraction] = {}

    def convert(self, amount_minor: int, currency: str, month: date) -> int:
        """Raises ``FxRateMissing``."""
        if amount_minor == 0 or currency == self.target:
            return amount_minor
        rate = self._rates.get((currency, month))
        if rate is None:
            rate = cross_rate(self.quotes.get(month, {}), currency, self.target)
            if rate is None:
                raise FxRateMissing(currency, self.target, month)
            self._rates[(currency, month)] = rate
        return convert_minor(amount_minor, currency, self.target, rate)


def monthly_report(
    *,
    currency: str,
    months: Sequence[date],
    opening: Mapping[tuple[str, str], Mapping[str, int]],
    figures: Mapping[tuple[str, date, str], Mapping[str, int]],
    quotes: Mapping[date, Quotes],
    by_plan: bool = False,
) -> dict[str, Any]:
    """The MRR report in ``currency`` over ``months`` (consecutive, oldest first).

    ``opening`` holds the sums of the figure counters before the first month per (currency,
    plan); ``figures`` the counters per (currency, month, plan) within the months (see
    ``COUNTERS``). Per month: ``mrr_minor`` (MRR at the end of the month), ``arr_minor``
    (12 × MRR), the movements, ``fx_adjustment_minor``, ``customers`` (customer and currency
    pairs with MRR at the end of the month), ``new_customers``, ``churned_customers``,
    ``reactivated_customers`` and ``quick_ratio`` (see ``quick_ratio``).

    Conversion: each currency's MRR at the end of a month, and each currency's sum of one kind
    of movement within a month, converts at the rate of the month's first day
    (``convert_minor``: one rounding rule). ``fx_adjustment_minor`` is what the movements do not
    explain: MRR(m) − MRR(m−1) − (new + expansion − contraction − churn + reactivation), so
    the identity holds exactly in integers; it is the effect of rate changes plus conversion
    rounding, and exactly 0 when every MRR is in the report's currency. The month before the
    first converts at its own rate (``opening_mrr_minor``), as an earlier report would have.

    With ``by_plan``, each month lists ``plans``: per plan its true MRR, the movements
    attributed to it (see the module docstring), the counts, ``plan_change_minor`` (MRR moved
    between plans by plan changes, plus rounding) and its ``fx_adjustment_minor``, so that per
    plan too MRR(m) = MRR(m−1) + movements + plan_change + fx_adjustment.

    Raises ``FxRateMissing`` naming the first currency and month without a rate.
    """
    if not months:
        raise ValueError("a report covers at least one month")
    rates = MonthRates(currency, quotes)
    totals_opening: dict[tuple[str, str], Mapping[str, int]] = {}
    for (ccy, _plan_id), row in opening.items():
        totals_opening[(ccy, "")] = _summed(totals_opening.get((ccy, ""), {}), row)
    totals_figures: dict[tuple[str, date, str], Mapping[str, int]] = {}
    for (ccy, month, _plan_id), row in figures.items():
        key = (ccy, month, "")
        totals_figures[key] = _summed(totals_figures.get(key, {}), row)
    opening_minor, totals = _series(rates, months, totals_opening, totals_figures, "")
    customers = sum(_customers_delta(row) for row in totals_opening.values())
    report_months = []
    for month, row in zip(months, totals, strict=True):
        customers += _customers_delta(row)
        gained = row["new_minor"] + row["expansion_minor"] + row["reactivation_minor"]
        lost = row["contraction_minor"] + row["churn_minor"]
        # Over all plans MRR changes only by movements: the rest is conversion.
        fx_minor = row.pop("fx_adjustment_minor") + row.pop("plan_change_minor")
        report_months.append(
            {
                "month": f"{month:%Y-%m}",
                "mrr_minor": row["mrr_minor"],
                "arr_minor": 12 * row["mrr_minor"],
                **{counter: row[counter] for counter in MOVEMENT_COUNTERS},
                "fx_adjustment_minor": fx_minor,
                "customers": customers,
                **{counter: row[counter] for counter in CUSTOMER_COUNTERS},
                "quick_ratio": quick_ratio(gained, lost),
            }
        )
    if by_plan:
        _add_plans(report_months, rates, months, opening, figures)
    return {
        "currency": currency,
        "opening_mrr_minor": opening_minor,
        "opening_customers": sum(_customers_delta(row) for row in totals_opening.values()),
        "months": report_months,
    }


def _add_plans(
    report_months: list[dict[str, Any]],
    rates: MonthRates,
    months: Sequence[date],
    opening: Mapping[tuple[str, str], Mapping[str, int]],
    figures: Mapping[tuple[str, date, str], Mapping[str, int]],
) -> None:
    plan_ids = sorted({p for _, p in opening} | {p for _, _, p in figures})
    for month_row in report_months:
        month_row["plans"] = []
    for plan_id in plan_ids:
        _, series = _series(rates, months, opening, figures, plan_id)
        for month_row, row in zip(report_months, series, strict=True):
            if any(row.values()):
                month_row["plans"].append({"plan_id": plan_id, **row})


def _series(
    rates: MonthRates,
    months: Sequence[date],
    opening: Mapping[tuple[str, str], Mapping[str, int]],
    figures: Mapping[tuple[str, date, str], Mapping[str, int]],
    plan_id: str,
) -> tuple[int, list[dict[str, int]]]:
    """The converted opening MRR and per-month figures of one plan ("" for all of them)."""
    currencies = sorted(
        {c for c, p in opening if p == plan_id} | {c for c, _, p in figures if p == plan_id}
    )
    mrr_minor = {c: opening.get((c, plan_id), {}).get("mrr_delta_minor", 0) for c in currencies}
    before_first = add_months(months[0], -1)
    previous_minor = sum(rates.convert(mrr_minor[c], c, before_first) for c in currencies)
    opening_minor, series = previous_minor, []
    for month in months:
        row = {
            "mrr_minor": 0,
            **dict.fromkeys(MOVEMENT_COUNTERS, 0),
            **dict.fromkeys(CUSTOMER_COUNTERS, 0),
        }
        delta_minor = 0
        for ccy in currencies:
            counters = figures.get((ccy, month, plan_id), {})
            for counter in MOVEMENT_COUNTERS:
                row[counter] += rates.convert(counters.get(counter, 0), ccy, month)
            for counter in CUSTOMER_COUNTERS:
                row[counter] += counters.get(counter, 0)
            change_minor = counters.get("mrr_delta_minor", 0)
            delta_minor += rates.convert(change_minor, ccy, month)
            mrr_minor[ccy] += change_minor
            row["mrr_minor"] += rates.convert(mrr_minor[ccy], ccy, month)
        net_minor = _net_movements_minor(row)
        row["plan_change_minor"] = delta_minor - net_minor
        row["fx_adjustment_minor"] = row["mrr_minor"] - previous_minor - delta_minor
        previous_minor = row["mrr_minor"]
        series.append(row)
    return opening_minor, series


def _net_movements_minor(row: Mapping[str, int]) -> int:
    return sum(row[f"{k}_minor"] * (1 if k in INCREASES else -1) for k in MOVEMENT_KINDS)


def _customers_delta(row: Mapping[str, int]) -> int:
    return (
        row.get("new_customers", 0)
        + row.get("reactivated_customers", 0)
        - row.get("churned_customers", 0)
    )


def _summed(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    return {key: a.get(key, 0) + b.get(key, 0) for key in a.keys() | b.keys()}
