"""``/v1/subscriptions``: subscribe, cancel, change plan, pause, resume, reactivate, read; and
``/v1/billing/dunning-policy``: how the tenant recovers failed renewals.

Commands answer with the subscription as it stands after them (one rendering with the read
model, ``application.billing.render_subscription``). A charge a command makes (the first
period, an upgrade's proration, a reactivation) goes through the payment gateway: a lost answer
is a 502 with the ``Idempotency-Key`` that finishes it. A declined first charge still records
the subscription: 201 with status ``cancelled`` and ``ended_reason: first_payment_declined``; a
declined upgrade or reactivation answers 200 with the subscription unchanged and the decline in
``last_charge``.

``effective_at`` (admin keys only, 403 otherwise) imports history from another system: the
command takes effect at that instant, which may not be in the future nor before the
subscription's last change (422 ``invalid_effective_at``); periods that began before now are
recorded as billed elsewhere and never charged.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Response
from pydantic import AwareDatetime, BaseModel, Field

from api.deps import (
    AdminPrincipal,
    CommandPrincipal,
    IdempotencyKey,
    ReadPrincipal,
    ServicesDep,
    SubscriptionsReader,
    command_body,
)
from api.routers.orders import CURSOR_PATTERN, GATEWAY_UNKNOWN, decode_cursor, encode_cursor
from api.schemas import Request, integer
from application.access import PermissionDenied, Principal
from application.billing import SubscriptionNotFound, render_subscription
from domain.subscription import (
    QUANTITY_MAX,
    DunningPolicy,
    InvalidEffectiveAt,
    SubscriptionStatus,
)

router = APIRouter(prefix="/v1/subscriptions", tags=["billing"])
policy_router = APIRouter(prefix="/v1/billing", tags=["billing"])

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
EffectiveAt = Annotated[
    AwareDatetime | None,
    Field(
        default=None,
        description="Admin only: when this took effect (an import from another system); "
        "after 1970, not in the future, not before the subscription's last change "
        "(422 `invalid_effective_at`)",
    ),
]
Quantity = integer(1, QUANTITY_MAX)


class SubscriptionCreate(Request):
    customer_id: UUID
    plan_id: UUID
    payment_method_id: UUID
    quantity: Quantity = 1  # type: ignore[valid-type]
    effective_at: EffectiveAt = None


class CancelBody(Request):
    at_period_end: bool = Field(
        default=False,
        description="End when the paid period ends (reactivate withdraws it); false: now",
    )
    effective_at: EffectiveAt = None


class ChangePlanBody(Request):
    plan_id: UUID
    quantity: Quantity | None = None  # type: ignore[valid-type]
    effective_at: EffectiveAt = None


class EffectiveBody(Request):
    effective_at: EffectiveAt = None


class DunningPolicyBody(Request):
    retry_days: list[integer(0, 90)] = Field(  # type: ignore[valid-type]
        min_length=1,
        max_length=30,
        description="Days after the first failure at which each retry runs, increasing",
        examples=[[1, 2, 3, 5, 7, 9, 11, 14]],
    )
    step_down_bps: integer(0, 10_000) = 0  # type: ignore[valid-type]
    floor_bps: integer(1, 10_000) = 10_000  # type: ignore[valid-type]
    auto_churn_after_days: integer(1, 365) | None = None  # type: ignore[valid-type]
    churn_recognition: Literal["period_end", "cancellation"] = "period_end"


class SubscriptionOut(BaseModel):
    id: UUID
    customer_id: UUID
    plan_id: UUID
    status: SubscriptionStatus
    quantity: int
    currency: str
    amount_minor: int
    interval: str
    interval_count: int
    mrr_minor: int
    payment_method_id: UUID
    started_at: str
    trial_end: str | None
    current_period_start: str | None
    current_period_end: str | None
    paid_through: str | None
    cancel_at_period_end: bool
    scheduled_change: dict[str, Any] | None
    pending_charge: dict[str, Any] | None
    last_charge: dict[str, Any] | None
    dunning: dict[str, Any] | None
    ended_at: str | None
    ended_reason: str | None
    next_action_at: str | None


class SubscriptionPage(BaseModel):
    data: list[SubscriptionOut]
    next_cursor: str | None


def _effective(principal: Principal, effective_at: datetime | None) -> datetime | None:
    if effective_at is None:
        return None
    if principal.role != "admin":
        raise PermissionDenied("only an admin key may set effective_at (imports)")
    try:
        at = effective_at.astimezone(UTC)
    except OverflowError:  # the first hours of year 1 in a zone east of UTC
        at = EARLIEST
    if at <= EARLIEST:
        raise InvalidEffectiveAt("effective_at is after 1970", param="effective_at")
    return at


@router.post("", status_code=201, response_model=SubscriptionOut, responses=GATEWAY_UNKNOWN)
def create_subscription(
    body: SubscriptionCreate,
    principal: CommandPrincipal,
    services: ServicesDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    result = services.ledger.create_subscription(
        tenant_id=principal.tenant_id,
        customer_id=body.customer_id,
        plan_id=body.plan_id,
        payment_method_id=body.payment_method_id,
        quantity=body.quantity,
        effective_at=_effective(principal, body.effective_at),
        idempotency_key=idempotency_key,
    )
    return command_body(response, result)


@router.get("/{subscription_id}", response_model=SubscriptionOut)
def get_subscription(
    subscription_id: UUID, principal: SubscriptionsReader, services: ServicesDep
) -> dict[str, Any]:
    row = services.subscriptions.get(principal.tenant_id, subscription_id)
    if row is None:
        raise SubscriptionNotFound("no subscription with this id", param="subscription_id")
    return subscription_from_row(row)


@router.get("", response_model=SubscriptionPage)
def list_subscriptions(
    principal: SubscriptionsReader,
    services: ServicesDep,
    customer_id: UUID | None = None,
    status: SubscriptionStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[
        str | None,
        Query(pattern=CURSOR_PATTERN, description="`next_cursor` of the previous page"),
    ] = None,
) -> dict[str, Any]:
    """Newest first; ``next_cursor`` pages on."""
    rows = services.subscriptions.list(
        principal.tenant_id,
        customer_id=customer_id,
        status=None if status is None else status.value,
        after=decode_cursor(cursor) if cursor else None,
        limit=limit + 1,
    )
    page = rows[:limit]
    next_cursor = (
        encode_cursor(page[-1]["created_at"], page[-1]["subscription_id"])
        if len(rows) > limit
        else None
    )
    return {"data": [subscription_from_row(row) for row in page], "next_cursor": next_cursor}


def subscription_from_row(row: dict[str, Any]) -> dict[str, Any]:
    return render_subscription(
        subscription_id=row["subscription_id"], customer_id=row["customer_id"], state=row["state"]
    )


@router.post("/{subscription_id}/cancel", response_model=SubscriptionOut)
def cancel_subscription(
    subscription_id: UUID,
    body: CancelBody,
    principal: CommandPrincipal,
    services: ServicesDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    result = services.ledger.cancel_subscription(
        tenant_id=principal.tenant_id,
        subscription_id=subscription_id,
        at_period_end=body.at_period_end,
        effective_at=_effective(principal, body.effective_at),
        idempotency_key=idempotency_key,
    )
    return command_body(response, result)


@router.post(
    "/{subscription_id}/change-plan", response_model=SubscriptionOut, responses=GATEWAY_UNKNOWN
)
def change_plan(
    subscription_id: UUID,
    body: ChangePlanBody,
    principal: CommandPrincipal,
    services: ServicesDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """An upgrade applies now and charges the prorated difference for the rest of the period
    (``(new − old price) × seconds left // seconds in the period``, rounded down); a downgrade
    is scheduled for the period's end (``scheduled_change``). The new plan must have the same
    currency and billing interval (422 ``plan_mismatch``)."""
    result = services.ledger.change_subscription_plan(
        tenant_id=principal.tenant_id,
        subscription_id=subscription_id,
        plan_id=body.plan_id,
        quantity=body.quantity,
        effective_at=_effective(principal, body.effective_at),
        idempotency_key=idempotency_key,
    )
    return command_body(response, result)


class PaymentMethodBody(Request):
    payment_method_id: UUID
    effective_at: EffectiveAt = None


@router.post(
    "/{subscription_id}/payment-method", response_model=SubscriptionOut, responses=GATEWAY_UNKNOWN
)
def change_payment_method(
    subscription_id: UUID,
    body: PaymentMethodBody,
    principal: CommandPrincipal,
    services: ServicesDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Charge another card of the customer from now on (404 ``payment_method_not_found`` for a
    card not on file); a past-due subscription is retried with it at once."""
    result = services.ledger.change_subscription_payment_method(
        tenant_id=principal.tenant_id,
        subscription_id=subscription_id,
        payment_method_id=body.payment_method_id,
        effective_at=_effective(principal, body.effective_at),
        idempotency_key=idempotency_key,
    )
    return command_body(response, result)


def _simple(action: str) -> Any:
    def command(
        subscription_id: UUID,
        principal: CommandPrincipal,
        services: ServicesDep,
        response: Response,
        body: EffectiveBody | None = None,
        idempotency_key: IdempotencyKey = None,
    ) -> dict[str, Any]:
        result = getattr(services.ledger, f"{action}_subscription")(
            tenant_id=principal.tenant_id,
            subscription_id=subscription_id,
            effective_at=_effective(principal, body.effective_at if body else None),
            idempotency_key=idempotency_key,
        )
        return command_body(response, result)

    command.__name__ = f"{action}_subscription"
    return command


router.post("/{subscription_id}/pause", response_model=SubscriptionOut, summary="Pause")(
    _simple("pause")
)
router.post("/{subscription_id}/resume", response_model=SubscriptionOut, summary="Resume")(
    _simple("resume")
)
router.post(
    "/{subscription_id}/reactivate",
    response_model=SubscriptionOut,
    responses=GATEWAY_UNKNOWN,
    summary="Reactivate: withdraw a scheduled cancellation, or restart an ended subscription "
    "(its first period is charged now)",
)(_simple("reactivate"))


@policy_router.get("/dunning-policy", response_model=DunningPolicyBody)
def get_dunning_policy(principal: ReadPrincipal, services: ServicesDep) -> dict[str, Any]:
    return services.ledger.dunning_policy(principal.tenant_id).as_dict()


@policy_router.put("/dunning-policy", response_model=DunningPolicyBody)
def set_dunning_policy(
    body: DunningPolicyBody,
    principal: AdminPrincipal,
    services: ServicesDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Retry days must increase and end within 90 days (422 ``invalid_dunning_policy``)."""
    policy = DunningPolicy(**{**body.model_dump(), "retry_days": tuple(body.retry_days)})
    result = services.ledger.set_dunning_policy(
        tenant_id=principal.tenant_id, policy=policy, idempotency_key=idempotency_key
    )
    return command_body(response, result)
