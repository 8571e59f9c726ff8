"""``/v1/reports/mrr``: monthly recurring revenue per month, from the MRR read model; and
``/v1/fx-rates``: the rates it converts other currencies with.

The figures' definitions are in ``domain.mrr`` (movements, plan attribution) and
``domain.mrr_report`` (months, conversion, ``fx_adjustment_minor``, quick ratio). A period is
``from`` and ``to``, both included, as ``YYYY-MM`` UTC months, at most ``PERIOD_MONTHS_MAX``
months. With ``Accept: text/csv`` the report is a CSV table: one row per month (``plan_id``
empty), and with ``breakdown=plan`` one more row per month and plan.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from api.deps import AdminPrincipal, MrrAtMinPosition, ReadPrincipal, ServicesDep
from api.errors import ApiError
from api.schemas import CurrencyCode, Request
from domain.fx import InvalidFxRate, validated_rate
from domain.money import validate_currency
from domain.mrr import COUNTED_KINDS, MOVEMENT_COUNTERS, parse_month
from projections.mrr import mrr_report

router = APIRouter(tags=["reports"])

PERIOD_MONTHS_MAX = 120
RATES_PER_REQUEST_MAX = 1_000
_MONTH_PATTERN = r"^[1-9][0-9]{3}-(0[1-9]|1[0-2])$"
# Positive, below 10^9, at most 18 significant digits (the domain's checks, as a pattern).
_RATE_PATTERN = r"^([1-9][0-9]{0,8}(\.[0-9]{1,9})?|0\.[0-9]{0,8}[1-9][0-9]{0,9})$"
_PERIOD_RULES = (
    f"`from` may not be after `to` (422 `invalid_period`), a period has at most "
    f"{PERIOD_MONTHS_MAX} months (422 `period_too_long`), and every currency with MRR needs a "
    "rate to `currency` on the first day of each month, and of the month before `from` "
    "(422 `fx_rate_missing`, naming the currency and month)."
)


def _month(name: str, description: str) -> Any:
    return Annotated[
        str,
        Query(
            alias=name,
            description=description,
            examples=["2026-01"],
            pattern=_MONTH_PATTERN,
        ),
    ]


MonthFrom = _month("from", "The first UTC month of the period (YYYY-MM), included")
MonthTo = _month("to", "The last UTC month of the period (YYYY-MM), included")


class MrrFiguresOut(BaseModel):
    mrr_minor: int = Field(description="MRR at the end of the month, converted")
    new_minor: int
    expansion_minor: int
    contraction_minor: int
    churn_minor: int
    reactivation_minor: int
    fx_adjustment_minor: int = Field(
        description="MRR(m) − MRR(m−1) − net movements: rate changes and conversion rounding"
    )
    new_customers: int
    churned_customers: int
    reactivated_customers: int


class MrrPlanOut(MrrFiguresOut):
    plan_id: str
    plan_change_minor: int = Field(
        description="MRR moved to or from this plan by plan changes (no customer movement)"
    )


class MrrMonthOut(MrrFiguresOut):
    month: str = Field(examples=["2026-01"])
    arr_minor: int = Field(description="12 × MRR")
    customers: int = Field(description="Customers (per currency) with MRR at the month's end")
    quick_ratio: str | None = Field(
        description="(new + expansion + reactivation) ÷ (contraction + churn), a decimal with "
        "two places rounded half to even; null when nothing was lost",
        examples=["2.50"],
    )
    plans: list[MrrPlanOut] | None = Field(
        default=None, description="With `breakdown=plan`: the plans with figures this month"
    )


class MrrReportOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    month_from: str = Field(alias="from")
    month_to: str = Field(alias="to")
    currency: str
    opening_mrr_minor: int = Field(description="MRR at the end of the month before `from`")
    opening_customers: int
    months: list[MrrMonthOut]


_CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}}
}


@router.get(
    "/v1/reports/mrr",
    response_model=MrrReportOut,
    response_model_exclude_none=False,
    responses=_CSV_RESPONSE,
    description="MRR at the end of each month and its movements (new, expansion, contraction, "
    "churn, reactivation), FX adjustment, customer counts, ARR and quick ratio, converted to "
    "`currency` at the rate of each month's first day. JSON, or CSV with `Accept: text/csv`. "
    + _PERIOD_RULES,
)
def get_mrr_report(
    principal: ReadPrincipal,
    services: ServicesDep,
    month_from: MonthFrom,
    month_to: MonthTo,
    currency: Annotated[CurrencyCode, Query(description="The report's currency")],
    breakdown: Annotated[
        Literal["plan"] | None, Query(description="`plan`: figures per plan too")
    ] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
    at_min_position: MrrAtMinPosition = None,
) -> Any:
    first, last = parse_month(month_from, param="from"), parse_month(month_to, param="to")
    _checked_period(first, last)
    validate_currency(currency)
    report = mrr_report(
        services.mrr,
        services.fx_rates,
        principal.tenant_id,
        currency=currency,
        first=first,
        last=last,
        by_plan=breakdown == "plan",
    )
    if accept is not None and "text/csv" in accept:
        return Response(content=mrr_csv(report), media_type="text/csv; charset=utf-8")
    return report


def _checked_period(first: date, last: date) -> None:
    """Raises 422 ``invalid_period`` or ``period_too_long``."""
    if first > last:
        raise ApiError(
            422, "invalid_request_error", "invalid_period", "`from` is after `to`", param="from"
        )
    if (last.year - first.year) * 12 + last.month - first.month + 1 > PERIOD_MONTHS_MAX:
        raise ApiError(
            422,
            "invalid_request_error",
            "period_too_long",
            f"a period has at most {PERIOD_MONTHS_MAX} months",
            param="to",
        )


_CSV_COLUMNS = (
    "month",
    "plan_id",
    "mrr_minor",
    "arr_minor",
    *MOVEMENT_COUNTERS,
    "fx_adjustment_minor",
    "plan_change_minor",
    "customers",
    *COUNTED_KINDS.values(),
    "quick_ratio",
)


def mrr_csv(report: dict[str, Any]) -> str:
    """The report as CSV: a row per month (``plan_id`` empty), then its plans' rows."""
    out = io.StringIO()
    writer = csv.DictWriter(
        out, fieldnames=_CSV_COLUMNS, extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    for month in report["months"]:
        writer.writerow({**month, "plan_id": "", "quick_ratio": month["quick_ratio"] or ""})
        for plan in month.get("plans") or ():
            writer.writerow({**plan, "month": month["month"]})
    return out.getvalue()


# FX rates -------------------------------------------------------------------------------------


def _iso_day(value: Any) -> Any:
    """Only ``YYYY-MM-DD``: pydantic alone would also take a number or a midnight datetime."""
    if not isinstance(value, str) or len(value) != 10:
        raise ValueError("a date is written YYYY-MM-DD")
    return value


IsoDay = Annotated[date, BeforeValidator(_iso_day)]


class FxRateIn(Request):
    day: IsoDay = Field(alias="date", description="The day the rate was published (YYYY-MM-DD)")
    base: CurrencyCode
    quote: CurrencyCode = Field(description="Another currency than `base` (422 `invalid_fx_rate`)")
    rate: Annotated[
        str,
        Field(
            pattern=_RATE_PATTERN,
            max_length=20,
            examples=["1.0842"],
            description="`quote` units per one `base` unit, a decimal string (never a float): "
            "positive, below 10^9, at most 9 decimals",
        ),
    ]


class FxRatesIn(Request):
    rates: Annotated[list[FxRateIn], Field(min_length=1, max_length=RATES_PER_REQUEST_MAX)]


class FxRateOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    day: date = Field(alias="date")
    base: str
    quote: str
    rate: str


class FxRatesOut(BaseModel):
    data: list[FxRateOut]


@router.post(
    "/v1/fx-rates",
    status_code=201,
    response_model=FxRatesOut,
    tags=["fx"],
    description="Record this tenant's own FX rates (admin). A rate of a day replaces an earlier "
    "one of the same pair and day, so a repeated request changes nothing; platform-wide rates "
    "(`ledger fx import`) apply where the tenant has none that day. 422 `invalid_fx_rate` when "
    "`base` and `quote` are the same currency.",
)
def record_fx_rates(principal: AdminPrincipal, services: ServicesDep, body: FxRatesIn) -> Any:
    rates = []
    for index, rate in enumerate(body.rates):
        try:
            rates.append(validated_rate(rate.day, rate.base, rate.quote, Decimal(rate.rate)))
        except InvalidFxRate as error:
            raise InvalidFxRate(error.message, param=f"rates.{index}.{error.param}") from None
    services.fx_rates.record(rates, scope=principal.tenant_id)
    return {"data": [r.as_dict() for r in rates]}


@router.get(
    "/v1/fx-rates",
    response_model=FxRatesOut,
    tags=["fx"],
    description="The rate of `date` of every pair this tenant sees: the latest published on or "
    "before it, the tenant's own winning over the platform's on the same day.",
)
def list_fx_rates(
    principal: ReadPrincipal,
    services: ServicesDep,
    day: Annotated[
        IsoDay, Query(alias="date", description="A day (YYYY-MM-DD)", examples=["2026-01-01"])
    ],
) -> Any:
    return {"data": [r.as_dict() for r in services.fx_rates.on(principal.tenant_id, day)]}
