"""``/v1/orders/{id}/chargebacks`` and ``/v1/orders/{id}/upsells``: disputes recorded by staff
(webhooks use the same commands) and one-click upsells charged to the parent order's card."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Response

from api.deps import CommandPrincipal, IdempotencyKey, ServicesDep, command_body
from api.routers.orders import GATEWAY_UNKNOWN
from api.schemas import ChargebackCreate, ChargebackResolve, OrderOut, UpsellCreate

router = APIRouter(prefix="/v1/orders")


@router.post("/{order_id}/chargebacks", status_code=201, response_model=OrderOut, tags=["disputes"])
def open_chargeback(
    order_id: UUID,
    body: ChargebackCreate,
    principal: CommandPrincipal,
    services: ServicesDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Record a chargeback: the order is `disputed` (refunds are refused, 409
    `order_disputed`) until it is resolved. The new chargeback is the last of
    `payment.chargebacks`. 409 `payment_in_progress` while an upsell of the order is being
    charged: retry once it has its outcome."""
    result = services.ledger.open_chargeback(
        tenant_id=principal.tenant_id,
        order_id=order_id,
        amount_minor=body.amount_minor,
        reason_code=body.reason_code,
        idempotency_key=idempotency_key,
    )
    return command_body(response, result)


@router.post(
    "/{order_id}/chargebacks/{chargeback_id}/resolve", response_model=OrderOut, tags=["disputes"]
)
def resolve_chargeback(
    order_id: UUID,
    chargeback_id: UUID,
    body: ChargebackResolve,
    principal: CommandPrincipal,
    services: ServicesDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Record the network's decision: `won` returns the order to its settled status, `lost`
    debits it like a refund (`charged_back` once nothing captured is left). 404
    `chargeback_not_found`, 409 `chargeback_already_resolved`."""
    result = services.ledger.resolve_chargeback(
        tenant_id=principal.tenant_id,
        order_id=order_id,
        chargeback_id=str(chargeback_id),
        outcome=body.outcome,
        idempotency_key=idempotency_key,
    )
    return command_body(response, result)


@router.post(
    "/{order_id}/upsells",
    status_code=201,
    response_model=OrderOut,
    responses=GATEWAY_UNKNOWN,
    tags=["orders"],
)
def place_upsell(
    order_id: UUID,
    body: UpsellCreate,
    principal: CommandPrincipal,
    services: ServicesDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Place a one-click upsell: a new order linked to this one (`parent_order_id`), purchased
    at once with the card that paid it. A declined payment still records the order (201,
    status `declined`). It is recorded on the parent too: a chargeback of the parent saved
    meanwhile makes it a 409 (`concurrent_modification`), and none follows a disputed parent."""
    result = services.ledger.place_upsell(
        tenant_id=principal.tenant_id,
        parent_order_id=order_id,
        lines=[line.model_dump() for line in body.lines],
        payment_method_id=body.payment_method_id,
        idempotency_key=idempotency_key,
    )
    return command_body(response, result)
