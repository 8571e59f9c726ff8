"""``/v1/orders``: place orders (with an optional purchase), refund, cancel, read and list."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

import orjson
from fastapi import APIRouter, Query, Response

from api.deps import (
    CommandPrincipal,
    IdempotencyKey,
    MinPosition,
    ReadPrincipal,
    ServicesDep,
    command_body,
    wait_for_position,
)
from api.errors import ApiError
from api.schemas import CancelRequest, OrderCreate, OrderOut, OrderPage, RefundCreate
from application.ledger import OrderNotFound
from domain.order import OrderStatus

router = APIRouter(prefix="/v1/orders", tags=["orders"])

LIMIT_DEFAULT = 20
LIMIT_MAX = 100


@router.post("", status_code=201, response_model=OrderOut)
def place_order(
    body: OrderCreate,
    principal: CommandPrincipal,
    services: ServicesDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Place an order; with ``payment`` its total is purchased at once.

    A declined payment still records the order: the response is 201 with status ``declined``.
    """
    result = services.ledger.place_order(
        tenant_id=principal.tenant_id,
        customer_id=body.customer_id,
        currency=body.currency,
        lines=[line.model_dump() for line in body.lines],
        payment=body.payment.model_dump(mode="json") if body.payment else None,
        idempotency_key=idempotency_key,
    )
    return command_body(response, result)


@router.post("/{order_id}/refunds", status_code=201, response_model=OrderOut)
def refund_order(
    order_id: UUID,
    body: RefundCreate,
    principal: CommandPrincipal,
    services: ServicesDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    result = services.ledger.refund_order(
        tenant_id=principal.tenant_id,
        order_id=order_id,
        amount_minor=body.amount_minor,
        reason=body.reason,
        idempotency_key=idempotency_key,
    )
    return command_body(response, result)


@router.post("/{order_id}/cancel", response_model=OrderOut)
def cancel_order(
    order_id: UUID,
    principal: CommandPrincipal,
    services: ServicesDep,
    response: Response,
    body: CancelRequest | None = None,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Cancel an order no money was captured for (a paid order is refunded instead)."""
    result = services.ledger.cancel_order(
        tenant_id=principal.tenant_id,
        order_id=order_id,
        reason=body.reason if body else None,
        idempotency_key=idempotency_key,
    )
    return command_body(response, result)


@router.get("/{order_id}", response_model=OrderOut)
def get_order(
    order_id: UUID,
    principal: ReadPrincipal,
    services: ServicesDep,
    min_position: MinPosition = None,
) -> dict[str, Any]:
    wait_for_position(services, services.orders, min_position)
    row = services.orders.get(principal.tenant_id, order_id)
    if row is None:
        raise OrderNotFound(f"no order {order_id}", param="order_id")
    return order_from_row(row)


@router.get("", response_model=OrderPage)
def list_orders(
    principal: ReadPrincipal,
    services: ServicesDep,
    customer_id: UUID | None = None,
    status: OrderStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=LIMIT_MAX)] = LIMIT_DEFAULT,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    min_position: MinPosition = None,
) -> dict[str, Any]:
    """Orders newest first, ``limit`` at a time; follow ``next_cursor`` for the next page."""
    wait_for_position(services, services.orders, min_position)
    rows = services.orders.list(
        principal.tenant_id,
        customer_id=customer_id,
        status=status.value if status else None,
        after=decode_cursor(cursor) if cursor else None,
        limit=limit + 1,  # one more than asked tells whether a next page exists
    )
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1]) if len(rows) > limit else None
    return {"data": [order_from_row(row) for row in page], "next_cursor": next_cursor}


def order_from_row(row: dict[str, Any]) -> dict[str, Any]:
    """An ``order_summaries`` row in the same words as the commands' responses."""
    payment = None
    if row["attempts"]:
        payment = {
            "outcome": "declined" if row["status"] == OrderStatus.DECLINED.value else "succeeded",
            "decline_code": row["decline_code"],
            "attempts": row["attempts"],
        }
    return {
        "id": row["order_id"],
        "number": row["number"],
        "customer_id": row["customer_id"],
        "status": row["status"],
        "currency": row["currency"],
        "total_minor": row["total_minor"],
        "captured_minor": row["captured_minor"],
        "refunded_minor": row["refunded_minor"],
        "lines": row["lines"],
        "placed_at": row["placed_at"].astimezone(UTC),
        "payment": payment,
    }


def encode_cursor(row: dict[str, Any]) -> str:
    """An opaque cursor naming the last row of a page: its (placed_at, order_id)."""
    key = [row["placed_at"].astimezone(UTC).isoformat(), str(row["order_id"])]
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """Raises ``ApiError`` 400 ``invalid_cursor`` for anything ``encode_cursor`` did not make."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        placed_at_text, order_id_text = orjson.loads(raw)
        placed_at = datetime.fromisoformat(placed_at_text)
        order_id = UUID(order_id_text)
    except (binascii.Error, AttributeError, TypeError, ValueError):
        placed_at = None
    if placed_at is None or placed_at.tzinfo is None:
        raise ApiError(
            400,
            "invalid_request_error",
            "invalid_cursor",
            "the cursor is not one this API returned",
            param="cursor",
        )
    return placed_at, order_id
