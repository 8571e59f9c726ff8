"""``/v1/reports``: sales and gateway figures over a period of UTC days, from their read models;
the reconciliation of a day of payments with the processor's own books.

A period is ``from`` and ``to``, both included, as ``YYYY-MM-DD`` UTC dates, at most
``PERIOD_DAYS_MAX`` days long. The figures' definitions are in ``projections.sales_report`` and
``projections.gateway_report``; reconciliation's classes are in ``domain.reconciliation``.

Reconciliation is read with ``GET /v1/reports/reconciliation`` (read roles: nothing changes);
``POST /v1/reports/reconciliation/run`` (command roles) also settles what the processor can
settle, through the ledger's own reconciliation commands. A run is safe to repeat: each command
repeats a call with its own idempotency key, so nothing moves twice.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BeforeValidator

from api.deps import (
    CommandPrincipal,
    GatewayReportAtMinPosition,
    ReadPrincipal,
    SalesReportAtMinPosition,
    ServicesDep,
)
from api.errors import ApiError
from api.schemas import (
    CurrencyCode,
    GatewayReportOut,
    ReconciliationReportOut,
    ReconciliationRun,
    SalesReportOut,
)
from application.reconciliation import (
    BooksReconciliation,
    ReconciliationReport,
    books_reconciliation,
)
from domain.reconciliation import ATTEMPT_KINDS, ReconciliationClass, ReconciliationItem
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
    "count on the UTC day it was requested, money on the day it moved. `monthly_caps`: each "
    "routed gateway's monthly cap beside its volume of the month of `to`. " + _PERIOD_RULES,
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
    caps = services.ledger.monthly_caps(principal.tenant_id, month=date_to.strftime("%Y-%m"))
    return {"from": date_from, "to": date_to, "data": rows, "monthly_caps": caps}


_RECONCILIATION_RULES = (
    "A call belongs to the UTC day its intent was recorded; a payment attempt's id, and a "
    "capture's, void's or refund's id, is the idempotency key the processor keeps. 409 "
    "`reconciliation_unavailable` when the configured processor offers no transaction listing."
)
ReconciliationDay = _day("date", "The UTC day to reconcile (YYYY-MM-DD)")
IncludeMatched = Annotated[
    bool, Query(description="List the matched items too (they are always counted)")
]


@router.get(
    "/reconciliation",
    response_model=ReconciliationReportOut,
    description="Our payment attempts, captures, voids and refunds of a UTC day compared with "
    "the processor's own transactions: counts per class and the items, ours beside theirs. "
    "Nothing is changed (see `POST /v1/reports/reconciliation/run`). " + _RECONCILIATION_RULES,
)
def reconciliation_report(
    principal: ReadPrincipal,
    services: ServicesDep,
    day: ReconciliationDay,
    include_matched: IncludeMatched = False,
) -> dict[str, Any]:
    report = _reconciliation(services).report(principal.tenant_id, day)
    return reconciliation_body(report, include_matched=include_matched)


@router.post(
    "/reconciliation/run",
    response_model=ReconciliationReportOut,
    description="Reconcile a UTC day and settle every settleable item (our outcome unknown, the "
    "processor's final) with the ledger's reconciliation commands; the report is the one found "
    "before settling, each settled item with its `resolution`. Safe to repeat. "
    + _RECONCILIATION_RULES,
)
def run_reconciliation(
    principal: CommandPrincipal,
    services: ServicesDep,
    body: ReconciliationRun,
    include_matched: IncludeMatched = False,
) -> dict[str, Any]:
    report = _reconciliation(services).report(principal.tenant_id, body.day, settle=True)
    return reconciliation_body(report, include_matched=include_matched)


def _reconciliation(services: ServicesDep) -> BooksReconciliation:
    """Raises 409 ``reconciliation_unavailable``."""
    reconciliation = books_reconciliation(
        services.ledger, services.sandbox_book, lease_s=services.settings.reconcile_after_s
    )
    if reconciliation is None:
        raise ApiError(
            409,
            "invalid_request_error",
            "reconciliation_unavailable",
            "the configured processor offers no transaction listing to reconcile with",
        )
    return reconciliation


def reconciliation_body(report: ReconciliationReport, *, include_matched: bool) -> dict[str, Any]:
    return {
        "date": report.day,
        "counts": report.result.counts,
        "items": [
            _item(item, report.resolutions.get(item.key) if item.key else None)
            for item in report.result.items
            if include_matched or item.classification is not ReconciliationClass.MATCHED
        ],
    }


def _item(item: ReconciliationItem, resolution: str | None) -> dict[str, Any]:
    ours, theirs = item.ours, item.theirs
    is_attempt = item.kind in ATTEMPT_KINDS
    return {
        "classification": item.classification.value,
        "order_id": item.order_id,
        "kind": item.kind,
        "attempt_id": item.key if is_attempt else None,
        "call_id": None if is_attempt else item.key,
        "ours": None
        if ours is None
        else {
            "kind": ours.kind,
            "state": ours.state,
            "amount_minor": ours.amount_minor,
            "currency": ours.currency,
            "requested_at": ours.requested_at,
        },
        "theirs": None
        if theirs is None
        else {
            "transaction_id": theirs.transaction_id,
            "account_id": theirs.account_id,
            "kind": theirs.kind,
            "state": theirs.state,
            "amount_minor": theirs.amount_minor,
            "currency": theirs.currency,
            "created_at": theirs.created_at,
        },
        "settleable": item.settleable,
        "resolution": resolution,
    }
