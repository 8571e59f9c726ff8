"""``/v1/customers``: register customers, keep cards on file, read lifetime value."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from api.deps import (
    CommandPrincipal,
    CustomersReader,
    IdempotencyKey,
    JsonBytesResponse,
    ServicesDep,
    async_reads,
    command_body,
    json_response,
)
from api.schemas import (
    CustomerCreate,
    CustomerOut,
    CustomerSummaryOut,
    PaymentMethodCreate,
    PaymentMethodOut,
)
from application.customers import CustomerNotFound

router = APIRouter(prefix="/v1/customers", tags=["customers"])


@router.post("", status_code=201, response_model=CustomerOut)
def register_customer(
    body: CustomerCreate,
    principal: CommandPrincipal,
    services: ServicesDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    result = services.ledger.register_customer(
        tenant_id=principal.tenant_id,
        email=body.email,
        name=body.name,
        country=body.country,
        currency=body.currency,
        idempotency_key=idempotency_key,
    )
    return command_body(response, result)


@router.get("/{customer_id}", response_model=CustomerSummaryOut, response_class=JsonBytesResponse)
async def get_customer(customer_id: UUID, principal: CustomersReader, request: Request) -> Response:
    # Async on the event loop's pool (no thread hop), answered with JSON bytes rendered by the
    # response model (measured by ``bench.http_load``, see bench/README.md).
    reads = async_reads(request)
    if reads is not None:
        row = await reads.customer(principal.tenant_id, customer_id)
    else:
        customers = request.app.state.services.customers
        row = await run_in_threadpool(customers.get, principal.tenant_id, customer_id)
    if row is None:
        raise CustomerNotFound("no customer with this id", param="customer_id")
    return json_response(CustomerSummaryOut, customer_from_row(row))


@router.post("/{customer_id}/payment-methods", status_code=201, response_model=PaymentMethodOut)
def attach_payment_method(
    customer_id: UUID,
    body: PaymentMethodCreate,
    principal: CommandPrincipal,
    services: ServicesDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    result = services.ledger.attach_payment_method(
        tenant_id=principal.tenant_id,
        customer_id=customer_id,
        card_number=body.card_number,
        exp_month=body.exp_month,
        exp_year=body.exp_year,
        cvc=body.cvc,
        idempotency_key=idempotency_key,
    )
    return command_body(response, result)


@router.put("/{customer_id}/payment-methods/{payment_method_id}", response_model=PaymentMethodOut)
def replace_card(
    customer_id: UUID,
    payment_method_id: UUID,
    body: PaymentMethodCreate,
    principal: CommandPrincipal,
    services: ServicesDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Put a new card behind a payment method on file. Past-due subscriptions paid with it are
    retried at once with the new card (their outcome shows on each subscription)."""
    result = services.ledger.replace_card(
        tenant_id=principal.tenant_id,
        customer_id=customer_id,
        payment_method_id=payment_method_id,
        card_number=body.card_number,
        exp_month=body.exp_month,
        exp_year=body.exp_year,
        cvc=body.cvc,
        idempotency_key=idempotency_key,
    )
    retry_past_due_paid_with(services, principal.tenant_id, customer_id, payment_method_id)
    return command_body(response, result)


def retry_past_due_paid_with(
    services: Any, tenant_id: str, customer_id: UUID, payment_method_id: UUID
) -> None:
    """Retry at once the customer's past-due subscriptions paid with this method. The read
    model may lag a failure of the last instant: the dunning schedule retries those anyway."""
    rows = services.subscriptions.list(
        tenant_id, customer_id=customer_id, status="past_due", limit=100
    )
    services.ledger.retry_past_due(
        tenant_id=tenant_id,
        subscription_ids=[row["subscription_id"] for row in rows],
        payment_method_id=str(payment_method_id),
    )


def customer_from_row(row: dict[str, Any]) -> dict[str, Any]:
    """A ``customer_summaries`` row in the same words as the register command's response."""
    return {
        "id": row["customer_id"],
        "email": row["email"],
        "name": row["name"],
        "country": row["country"],
        "currency": row["currency"],
        "created_at": _utc(row["registered_at"]),
        "payment_methods": row["payment_methods"],
        "lifetime_value_minor": row["lifetime_value_minor"],
        "order_count": row["order_count"],
        "average_order_value_minor": row["average_order_value_minor"],
        "value_by_currency": row["value_by_currency"],
        "first_order_at": _utc(row["first_order_at"]),
        "last_order_at": _utc(row["last_order_at"]),
    }


def _utc(moment: datetime | None) -> datetime | None:
    return moment.astimezone(UTC) if moment is not None else None
