"""Monthly recurring revenue: one definition, used by subscriptions and the MRR read model.

A subscription's MRR is its recurring price × quantity normalised to one month (a yearly plan
÷ 12, a plan billed every 3 months ÷ 3), rounded to the minor unit half to even; trials and setup
fees are not recurring revenue.

A subscription's MRR over time is a *step function*: a list of points ``(at, mrr_minor,
plan_id)``, each meaning "from the effective instant ``at`` on, the MRR is ``mrr_minor`` on plan
``plan_id``" (0 before the first point). Its events replace the points at or after an instant
(``replace_points``), so imports and scheduled changes rewrite history in effective time.

Movements are classified per customer *and currency* (``classify``), always from the customer's
whole history sorted by instant, never incrementally in log order (an import may arrive after
live data). A customer's MRR is the sum of their subscriptions' MRR. All points at one instant
are applied together and their one net change is classified:

- 0 → x is *new* the first time the customer ever has MRR, *reactivation* afterwards;
- x → y with y > x > 0 is *expansion*; x → y with x > y > 0 is *contraction*;
- x → 0 is *churn*.

A movement's amount is positive; its month is the UTC calendar month of its instant. A
movement is attributed to one plan: among the subscriptions whose change has the sign of the
net change, the one that changed most (ties: the lowest subscription id); an increase goes to
that subscription's new plan, a decrease to the plan it had before (where revenue was lost).
Besides movements, each plan's true MRR change is kept (``PlanChange``): a plan change of one
subscription moves MRR from one plan to another without a customer-level movement.

The report (``monthly_report``) gives per month the MRR at the end of the month and the
movements within it; see its docstring for currency conversion and ``fx_adjustment_minor``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, NamedTuple

from domain.errors import InvalidInput

MONTHS_PER_INTERVAL = {"month": 1, "year": 12}

NEW, EXPANSION, CONTRACTION, CHURN, REACTIVATION = (
    "new",
    "expansion",
    "contraction",
    "churn",
    "reactivation",
)
MOVEMENT_KINDS = (NEW, EXPANSION, CONTRACTION, CHURN, REACTIVATION)
# Movements that add MRR (the rest remove it), and those that count a customer.
INCREASES = frozenset({NEW, EXPANSION, REACTIVATION})
COUNTED_KINDS = {
    NEW: "new_customers",
    CHURN: "churned_customers",
    REACTIVATION: "reactivated_customers",
}
MOVEMENT_COUNTERS = tuple(f"{kind}_minor" for kind in MOVEMENT_KINDS)
# What one customer contributes to a figure row of (month, plan): movements, the plan's true
# MRR change, and customer counts.
COUNTERS = (*MOVEMENT_COUNTERS, "mrr_delta_minor", *COUNTED_KINDS.values())


def monthly_recurring_minor(
    amount_minor: int, quantity: int, interval: str, interval_count: int = 1
) -> int:
    """The MRR of ``quantity`` × a price of ``amount_minor`` billed every ``interval_count``
    ``interval``s, in minor units, rounded half to even (``$2,000/year`` → ``16667`` cents)."""
    months = MONTHS_PER_INTERVAL[interval] * interval_count
    exact = Decimal(amount_minor * quantity) / Decimal(months)
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


class InvalidMonth(InvalidInput):
    code = "invalid_month"


# Step functions --------------------------------------------------------------------------------


class MrrPoint(NamedTuple):
    at: datetime
    mrr_minor: int
    plan_id: str


def instant(text: str) -> datetime:
    """An ISO-8601 instant as an aware UTC datetime (naive text is taken as UTC)."""
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def replace_points(points: Sequence[MrrPoint], change: Mapping[str, Any]) -> list[MrrPoint]:
    """The step function after an event's ``mrr`` change ``{"from", "points"}``: points before
    ``from`` kept, the rest replaced by the change's points (a later point at one instant wins)."""
    cut = instant(change["from"])
    by_instant = {p.at: p for p in points if p.at < cut}
    for at, mrr_minor, plan_id in change["points"]:
        moment = instant(at)
        by_instant[moment] = MrrPoint(moment, int(mrr_minor), str(plan_id))
    return [by_instant[at] for at in sorted(by_instant)]


@dataclass(frozen=True, slots=True)
class Movement:
    at: datetime
    kind: str
    amount_minor: int
    plan_id: str
    mrr_after_minor: int


class PlanChange(NamedTuple):
    at: datetime
    plan_id: str
    delta_minor: int


@dataclass(frozen=True, slots=True)
class CustomerHistory:
    movements: list[Movement]
    plan_changes: list[PlanChange]


def classify(subscriptions: Mapping[str, Sequence[MrrPoint]]) -> CustomerHistory:
    """The movements of one customer (in one currency) from its subscriptions' step functions,
    keyed by subscription id (see the module docstring for the rules)."""
    by_instant: dict[datetime, list[tuple[str, MrrPoint]]] = {}
    for subscription_id in sorted(subscriptions):
        for point in subscriptions[subscription_id]:
            by_instant.setdefault(point.at, []).append((subscription_id, point))
    current: dict[str, MrrPoint] = {}
    total_minor, ever_had_mrr = 0, False
    movements: list[Movement] = []
    plan_changes: list[PlanChange] = []
    for at in sorted(by_instant):
        changes: list[tuple[int, str, str, str | None]] = []  # delta, id, new plan, old plan
        plan_deltas: dict[str, int] = {}
        for subscription_id, point in by_instant[at]:
            before = current.get(subscription_id)
            before_minor = before.mrr_minor if before else 0
            if before is not None and before.mrr_minor:
                plan_deltas[before.plan_id] = plan_deltas.get(before.plan_id, 0) - before_minor
            if point.mrr_minor:
                plan_deltas[point.plan_id] = plan_deltas.get(point.plan_id, 0) + point.mrr_minor
            delta = point.mrr_minor - before_minor
            changes.append((delta, subscription_id, point.plan_id, before and before.plan_id))
            current[subscription_id] = point
        plan_changes += [PlanChange(at, p, d) for p, d in sorted(plan_deltas.items()) if d]
        after_minor = total_minor + sum(delta for delta, *_ in changes)
        kind = _kind(total_minor, after_minor, ever_had_mrr)
        if kind is not None:
            movements.append(
                Movement(
                    at,
                    kind,
                    abs(after_minor - total_minor),
                    _plan(changes, after_minor > total_minor),
                    after_minor,
                )
            )
        ever_had_mrr = ever_had_mrr or after_minor > 0
        total_minor = after_minor
    return CustomerHistory(movements, plan_changes)


def _kind(before_minor: int, after_minor: int, ever_had_mrr: bool) -> str | None:
    if after_minor == before_minor:
        return None
    if before_minor == 0:
        return REACTIVATION if ever_had_mrr else NEW
    if after_minor == 0:
        return CHURN
    return EXPANSION if after_minor > before_minor else CONTRACTION


def _plan(changes: list[tuple[int, str, str, str | None]], increase: bool) -> str:
    """The plan a net change is attributed to (see the module docstring)."""
    sign = 1 if increase else -1
    delta, _, new_plan, old_plan = min(
        (c for c in changes if c[0] * sign > 0), key=lambda c: (-abs(c[0]), c[1])
    )
    return new_plan if increase or old_plan is None else old_plan


# Months ----------------------------------------------------------------------------------------


def month_of(moment: datetime) -> date:
    """The first day of the UTC calendar month of an instant."""
    utc = moment.astimezone(UTC)
    return date(utc.year, utc.month, 1)


def parse_month(text: str, *, param: str = "month") -> date:
    """``YYYY-MM`` as the first day of that month; raises ``InvalidMonth``."""
    if not isinstance(text, str) or len(text) != 7 or text[4] != "-":
        raise InvalidMonth("a month is written YYYY-MM", param=param)
    try:
        return date(int(text[:4]), int(text[5:]), 1)
    except ValueError:
        raise InvalidMonth("a month is written YYYY-MM", param=param) from None


def add_months(month: date, count: int) -> date:
    index = month.year * 12 + month.month - 1 + count
    return date(index // 12, index % 12 + 1, 1)


def months_between(first: date, last: date) -> list[date]:
    """The months from ``first`` to ``last``, both included."""
    count = (last.year - first.year) * 12 + last.month - first.month + 1
    return [add_months(first, i) for i in range(max(count, 0))]


Contributions = dict[tuple[date, str], dict[str, int]]


def contributions(history: CustomerHistory) -> Contributions:
    """What one customer adds to the figure rows keyed by (month, plan id); zeros left out."""
    rows: Contributions = {}
    for m in history.movements:
        row = rows.setdefault((month_of(m.at), m.plan_id), {})
        row[f"{m.kind}_minor"] = row.get(f"{m.kind}_minor", 0) + m.amount_minor
        if m.kind in COUNTED_KINDS:
            row[COUNTED_KINDS[m.kind]] = row.get(COUNTED_KINDS[m.kind], 0) + 1
    for change in history.plan_changes:
        row = rows.setdefault((month_of(change.at), change.plan_id), {})
        row["mrr_delta_minor"] = row.get("mrr_delta_minor", 0) + change.delta_minor
    return {
        key: {counter: value for counter, value in row.items() if value}
        for key, row in rows.items()
        if any(row.values())
    }


def difference(new: Contributions, old: Contributions) -> Contributions:
    """Increments turning ``old`` contributions into ``new`` ones (zero rows left out)."""
    increments: Contributions = {}
    for key in new.keys() | old.keys():
        after, before = new.get(key, {}), old.get(key, {})
        row = {c: after.get(c, 0) - before.get(c, 0) for c in COUNTERS}
        if any(row.values()):
            increments[key] = row
    return increments
