"""``/v1/reports``: sales and gateway figures over a period of UTC days, from their read models.

A period is ``from`` and ``to``, both included, as ``YYYY-MM-DD`` UTC dates, at most
``PERIOD_DAYS_MAX`` days long. The figures' definitions are in ``projections.sales_report`` and
``projections.gateway_report``.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BeforeValidator

from api.deps import (
    GatewayReportAtMinPosition,
    ReadPrincipal,
    SalesReportAtMinPosition,
    ServicesDep,
)
from api.errors import ApiError
from api.schemas import CurrencyCode, GatewayReportOut, SalesReportOut
from projections.sales_report import sales_groups, sales_totals

router = APIRouter(prefix="/v1/reports", tags=["reports"])

PERIOD_DAYS_MAX = 366
_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_PERIOD_RULES = (
    f"`from` may not be after `to` (422 `invalid_period`), and a period has at most "
    f"{PERIOD_DAYS_MAX} days (422 `period_too_long`)."
)


def _calendar_date(value: Any) -> Any:
    """Only ``YYYY-MM-DD``: pydantic alone would also take ``0`` or a midnight datetime."""
    if isinstance(value, str) and not _ISO_DATE.match(value):
        raise ValueError("a date is written YYYY-MM-DD")
    return value


def _day(name: str, description: str) -> Any:
    return Annotated[
        date,
        BeforeValidator(_calendar_date),
        Query(alias=name, description=description, examples=["2026-05-01"]),
    ]


DateFrom = _day("from", "The first UTC day of the period (YYYY-MM-DD), included")
DateTo = _day("to", "The last UTC day of the period (YYYY-MM-DD), included")
GroupBy = Literal["day", "country", "gateway", "campaign"]


def _checked_period(date_from: date, date_to: date) -> None:
    """Raises 422 ``invalid_period`` or ``period_too_long``."""
    if date_from > date_to:
        raise ApiError(
            422, "invalid_request_error", "invalid_period", "`from` is after `to`", param="from"
        )
    if (date_to - date_from).days + 1 > PERIOD_DAYS_MAX:
        raise ApiError(
            422,
            "invalid_request_error",
            "period_too_long",
            f"a period has at most {PERIOD_DAYS_MAX} days",
            param="to",
        )


@router.get(
    "/sales",
    response_model=SalesReportOut,
    description="Gross, refunds, chargebacks, net, order count and average order value per "
    "group and currency, over the UTC days of the period (see the fields for definitions). "
    + _PERIOD_RULES,
)
def sales_report(
    principal: ReadPrincipal,
    services: ServicesDep,
    date_from: DateFrom,
    date_to: DateTo,
    group_by: Annotated[
        GroupBy, Query(description="What a row of `data` stands for: a day, country, …")
    ] = "day",
    currency: Annotated[CurrencyCode | None, Query(description="Only this currency")] = None,
    at_min_position: SalesReportAtMinPosition = None,
) -> dict[str, Any]:
    _checked_period(date_from, date_to)
    rows = services.sales_report.report(
        principal.tenant_id,
        date_from=date_from,
        date_to=date_to,
        group_by=group_by,
        currency=currency,
    )
    return {
        "from": date_from,
        "to": date_to,
        "group_by": group_by,
        "currency": currency,
        "data": sales_groups(rows),
        "totals": sales_totals(rows),
    }


@router.get(
    "/gateways",
    response_model=GatewayReportOut,
    description="Attempts, approvals, approval rate, declines by code, captured and refunded "
    "volume and chargeback figures per gateway and card brand; an attempt and its outcome "
    "count on the UTC day it was requested, money on the day it moved. " + _PERIOD_RULES,
)
def gateway_report(
    principal: ReadPrincipal,
    services: ServicesDep,
    date_from: DateFrom,
    date_to: DateTo,
    at_min_position: GatewayReportAtMinPosition = None,
) -> dict[str, Any]:
    _checked_period(date_from, date_to)
    rows = services.gateway_report.report(principal.tenant_id, date_from=date_from, date_to=date_to)
    return {"from": date_from, "to": date_to, "data": rows}
