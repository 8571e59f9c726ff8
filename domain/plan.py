"""The Plan aggregate: what a subscription costs and how often it is billed.

A plan's code is unique per tenant (its id is derived from the code). A price change is a new
event, not an edit: subscriptions keep the price of the period they are in and take the new one
from their next period (``Subscription`` reads the plan's current price at each renewal).
Periods are whole calendar months from an anchor (``period_bounds``): a subscription anchored on
the 31st renews on the last day of shorter months and on the 31st again when the month has one.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidInput
from domain.money import validate_amount_minor, validate_currency
from domain.mrr import MONTHS_PER_INTERVAL

_PLAN_NAMESPACE = uuid5(NAMESPACE_URL, "https://commerce-ledger/plans")
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
TRIAL_DAYS_MAX = 730
INTERVAL_COUNT_MAX = 36


class InvalidPlan(InvalidInput):
    code = "invalid_plan"


@dataclass(frozen=True, slots=True)
class Terms:
    """What one period of a subscription costs: the unit price, billed every
    ``interval_count`` ``interval``s, times the quantity."""

    plan_id: str
    amount_minor: int
    currency: str
    interval: str
    interval_count: int

    @property
    def months(self) -> int:
        return MONTHS_PER_INTERVAL[self.interval] * self.interval_count

    def as_dict(self) -> dict:
        return {
            "plan_id": self.plan_id,
            "amount_minor": self.amount_minor,
            "currency": self.currency,
            "interval": self.interval,
            "interval_count": self.interval_count,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Terms:
        return cls(
            plan_id=data["plan_id"],
            amount_minor=data["amount_minor"],
            currency=data["currency"],
            interval=data["interval"],
            interval_count=data["interval_count"],
        )


def add_months(anchor: datetime, months: int) -> datetime:
    """``anchor`` moved by whole calendar months, its day clamped to the month's last day."""
    years, month0 = divmod(anchor.month - 1 + months, 12)
    year, month = anchor.year + years, month0 + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def period_bounds(anchor: datetime, months: int, index: int) -> tuple[datetime, datetime]:
    """The ``index``-th period (from 0) of ``months`` months from ``anchor``: [start, end)."""
    return add_months(anchor, months * index), add_months(anchor, months * (index + 1))


def period_index_at(anchor: datetime, months: int, at: datetime) -> int:
    """The index of the period from ``anchor`` that contains ``at`` (``at`` ≥ ``anchor``)."""
    elapsed = (at.year - anchor.year) * 12 + at.month - anchor.month
    index = max(0, elapsed // months - 1)
    while period_bounds(anchor, months, index)[1] <= at:
        index += 1
    return index


def plan_id_for(tenant_id: str, code: str) -> UUID:
    return uuid5(_PLAN_NAMESPACE, f"{tenant_id}:{code}")


class Plan(Aggregate):
    """A tenant's recurring price."""

    @classmethod
    def create(
        cls,
        *,
        tenant_id: str,
        code: str,
        name: str,
        currency: str,
        amount_minor: int,
        interval: str,
        interval_count: int = 1,
        trial_days: int = 0,
        setup_fee_minor: int = 0,
    ) -> Plan:
        """Raises ``InvalidPlan``, ``InvalidAmount``, ``UnknownCurrency``."""
        if not isinstance(code, str) or not _CODE.match(code):
            raise InvalidPlan(
                "a plan code has 1 to 64 letters, digits, '_', '.' or '-'", param="code"
            )
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise InvalidPlan("a plan name has 1 to 200 characters", param="name")
        validate_currency(currency)
        validate_amount_minor(amount_minor, allow_zero=False)
        validate_amount_minor(setup_fee_minor, param="setup_fee_minor")
        if interval not in MONTHS_PER_INTERVAL:
            raise InvalidPlan("the interval is 'month' or 'year'", param="interval")
        if not isinstance(interval_count, int) or not 1 <= interval_count <= INTERVAL_COUNT_MAX:
            raise InvalidPlan(
                f"the interval count is 1 to {INTERVAL_COUNT_MAX}", param="interval_count"
            )
        if not isinstance(trial_days, int) or not 0 <= trial_days <= TRIAL_DAYS_MAX:
            raise InvalidPlan(f"trial days are 0 to {TRIAL_DAYS_MAX}", param="trial_days")
        return cls(
            tenant_id=tenant_id,
            code=code,
            name=name.strip(),
            currency=currency,
            amount_minor=amount_minor,
            interval=interval,
            interval_count=interval_count,
            trial_days=trial_days,
            setup_fee_minor=setup_fee_minor,
        )

    @staticmethod
    def create_id(*, tenant_id: str, code: str, **_: object) -> UUID:
        return plan_id_for(tenant_id, code)

    @event("Created")
    def __init__(
        self,
        *,
        tenant_id: str,
        code: str,
        name: str,
        currency: str,
        amount_minor: int,
        interval: str,
        interval_count: int,
        trial_days: int,
        setup_fee_minor: int,
    ) -> None:
        self.tenant_id = tenant_id
        self.code = code
        self.name = name
        self.currency = currency
        self.amount_minor = amount_minor
        self.interval = interval
        self.interval_count = interval_count
        self.trial_days = trial_days
        self.setup_fee_minor = setup_fee_minor

    def change_price(self, amount_minor: int) -> None:
        """A new price for periods that start from now on. Raises ``InvalidAmount``."""
        validate_amount_minor(amount_minor, allow_zero=False)
        if amount_minor != self.amount_minor:
            self._price_changed(amount_minor=amount_minor)

    @event("PriceChanged")
    def _price_changed(self, *, amount_minor: int) -> None:
        self.amount_minor = amount_minor

    @property
    def terms(self) -> Terms:
        return Terms(
            plan_id=str(self.id),
            amount_minor=self.amount_minor,
            currency=self.currency,
            interval=self.interval,
            interval_count=self.interval_count,
        )
