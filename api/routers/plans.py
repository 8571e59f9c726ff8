"""``/v1/plans``: the recurring prices subscriptions are billed at.

A plan's ``code`` is unique per tenant (409 ``plan_code_taken``). A price change
(``POST /v1/plans/{id}/price``) applies to periods that start from then on; subscriptions keep
the price of the period they are in.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from api.deps import (
    CommandPrincipal,
    IdempotencyKey,
    ReadPrincipal,
    ServicesDep,
    command_body,
)
from api.schemas import (
    VISIBLE_PATTERN,
    CurrencyCode,
    PositiveAmountMinor,
    Request,
    integer,
)
from application.billing import render_plan
from domain.plan import INTERVAL_COUNT_MAX, TRIAL_DAYS_MAX

router = APIRouter(prefix="/v1/plans", tags=["billing"])


class PlanCreate(Request):
    code: Annotated[
        str,
        Field(
            min_length=1,
            max_length=64,
            pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
            description="Unique per tenant (409 `plan_code_taken`)",
            examples=["gold-monthly"],
        ),
    ]
    name: Annotated[str, Field(min_length=1, max_length=200, pattern=VISIBLE_PATTERN)]
    currency: CurrencyCode
    amount_minor: PositiveAmountMinor = Field(description="The price of one unit for one period")
    interval: Literal["month", "year"]
    interval_count: integer(1, INTERVAL_COUNT_MAX) = 1  # type: ignore[valid-type]
    trial_days: integer(0, TRIAL_DAYS_MAX) = 0  # type: ignore[valid-type]
    setup_fee_minor: integer(0, 10**15) = Field(  # type: ignore[valid-type]
        default=0, description="Charged once, with the first paid period"
    )


class PriceChange(Request):
    amount_minor: PositiveAmountMinor


class PlanOut(BaseModel):
    id: UUID
    code: str
    name: str
    currency: str
    amount_minor: int
    interval: str
    interval_count: int
    trial_days: int
    setup_fee_minor: int
    created_at: str


class PlanList(BaseModel):
    data: list[PlanOut]


@router.post("", status_code=201, response_model=PlanOut)
def create_plan(
    body: PlanCreate,
    principal: CommandPrincipal,
    services: ServicesDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    result = services.ledger.create_plan(
        tenant_id=principal.tenant_id, idempotency_key=idempotency_key, **body.model_dump()
    )
    return command_body(response, result)


@router.get("", response_model=PlanList)
def list_plans(
    principal: ReadPrincipal,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """The tenant's plans, newest first (from the subscriptions read model)."""
    rows = services.subscriptions.plans(principal.tenant_id, limit=limit)
    return {"data": [plan_from_row(row) for row in rows]}


def plan_from_row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        **{key: row[key] for key in PlanOut.model_fields if key not in ("id", "created_at")},
        "id": row["plan_id"],
        "created_at": row["created_at"].isoformat(),
    }


@router.get("/{plan_id}", response_model=PlanOut)
def get_plan(plan_id: UUID, principal: ReadPrincipal, services: ServicesDep) -> dict[str, Any]:
    return render_plan(services.ledger.get_plan(principal.tenant_id, plan_id))


@router.post("/{plan_id}/price", response_model=PlanOut)
def change_price(
    plan_id: UUID,
    body: PriceChange,
    principal: CommandPrincipal,
    services: ServicesDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """A new price for periods that start from now on."""
    result = services.ledger.change_plan_price(
        tenant_id=principal.tenant_id,
        plan_id=plan_id,
        amount_minor=body.amount_minor,
        idempotency_key=idempotency_key,
    )
    return command_body(response, result)
