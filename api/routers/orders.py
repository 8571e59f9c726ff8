"""``/v1/orders``: place orders (with an optional purchase), refund, cancel, read and list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from api.deps import (
    CommandPrincipal,
    IdempotencyKey,
    JsonBytesResponse,
    OrdersReader,
    ServicesDep,
    async_reads,
    command_body,
    json_response,
)
from api.schemas import (
    CancelRequest,
    CaptureRequest,
    ErrorOut,
    OrderCreate,
    OrderOut,
    OrderPage,
    RefundCreate,
)
from application.orders import OrderNotFound, render_order
from domain.order import OrderStatus

router = APIRouter(prefix="/v1/orders", tags=["orders"])

# Commands that call the payment gateway.
GATEWAY_UNKNOWN: dict[int | str, dict[str, Any]] = {
    502: {
        "model": ErrorOut,
        "description": "The gateway did not answer (`gateway_outcome_unknown`): the outcome is "
        "recorded as unknown; send the request again with the `Idempotency-Key` of this "
        "response to learn it",
        "headers": {
            "Idempotency-Key": {
                "description": "The key that finishes this request",
                "schema": {"type": "string"},
            }
        },
    }
}
REFUND_DECLINED: dict[int | str, dict[str, Any]] = {
    402: {"model": ErrorOut, "description": "The processor declined the refund (`refund_declined`)"}
}
OPERATION_DECLINED: dict[int | str, dict[str, Any]] = {
    402: {
        "model": ErrorOut,
        "description": "The processor declined the capture or void (`operation_declined`)",
    }
}

LIMIT_DEFAULT = 20
LIMIT_MAX = 100
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Up to 16 digits of microseconds reach the year 2286, well inside ``datetime``'s range.
CURSOR_PATTERN = r"^[0-9]{1,16}_[0-9a-f]{32}$"


@router.post("", status_code=201, response_model=OrderOut, responses=GATEWAY_UNKNOWN)
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
        lines=[line.model_dump(exclude_none=True) for line in body.lines],
        payment=body.payment.model_dump(mode="json") if body.payment else None,
        attribution=body.attribution.model_dump(mode="json") if body.attribution else None,
        idempotency_key=idempotency_key,
    )
    return command_body(response, result)


@router.post(
    "/{order_id}/refunds",
    status_code=201,
    response_model=OrderOut,
    responses={**GATEWAY_UNKNOWN, **REFUND_DECLINED},
)
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


@router.post(
    "/{order_id}/capture",
    response_model=OrderOut,
    responses={**GATEWAY_UNKNOWN, **OPERATION_DECLINED},
)
def capture_order(
    order_id: UUID,
    principal: CommandPrincipal,
    services: ServicesDep,
    response: Response,
    body: CaptureRequest | None = None,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Capture an authorized order, all of it or part (once; the rest is released)."""
    result = services.ledger.capture_order(
        tenant_id=principal.tenant_id,
        order_id=order_id,
        amount_minor=body.amount_minor if body else None,
        idempotency_key=idempotency_key,
    )
    return command_body(response, result)


@router.post(
    "/{order_id}/void",
    response_model=OrderOut,
    responses={**GATEWAY_UNKNOWN, **OPERATION_DECLINED},
)
def void_order(
    order_id: UUID,
    principal: CommandPrincipal,
    services: ServicesDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Release the authorization of an order nothing was captured for."""
    result = services.ledger.void_order(
        tenant_id=principal.tenant_id, order_id=order_id, idempotency_key=idempotency_key
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


# The reads are ``async``: on the event loop's pool (no thread hop), answered with JSON bytes
# rendered by their response model (measured by ``bench.http_load``, see bench/README.md).


@router.get("/{order_id}", response_model=OrderOut, response_class=JsonBytesResponse)
async def get_order(order_id: UUID, principal: OrdersReader, request: Request) -> Response:
    reads = async_reads(request)
    if reads is not None:
        row = await reads.order(principal.tenant_id, order_id)
    else:
        orders = request.app.state.services.orders
        row = await run_in_threadpool(orders.get, principal.tenant_id, order_id)
    if row is None:
        raise OrderNotFound("no order with this id", param="order_id")
    return json_response(OrderOut, order_from_row(row))


@router.get("", response_model=OrderPage, response_class=JsonBytesResponse)
async def list_orders(
    principal: OrdersReader,
    request: Request,
    customer_id: UUID | None = None,
    status: OrderStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=LIMIT_MAX)] = LIMIT_DEFAULT,
    cursor: Annotated[
        str | None,
        Query(
            pattern=CURSOR_PATTERN,
            max_length=60,
            description="The `next_cursor` of the previous page; a position in the list, so "
            "a cursor past the last order gives an empty page",
        ),
    ] = None,
) -> Response:
    """Orders newest first, ``limit`` at a time; follow ``next_cursor`` for the next page."""
    query: dict[str, Any] = {
        "customer_id": customer_id,
        "status": status.value if status else None,
        "after": decode_cursor(cursor) if cursor else None,
        "limit": limit + 1,  # one more than asked tells whether a next page exists
    }
    reads = async_reads(request)
    if reads is not None:
        rows = await reads.orders(principal.tenant_id, **query)
    else:
        orders = request.app.state.services.orders
        rows = await run_in_threadpool(lambda: orders.list(principal.tenant_id, **query))
    page = rows[:limit]
    next_cursor = (
        encode_cursor(page[-1]["placed_at"], page[-1]["order_id"]) if len(rows) > limit else None
    )
    return json_response(
        OrderPage, {"data": [order_from_row(row) for row in page], "next_cursor": next_cursor}
    )


def order_from_row(row: dict[str, Any]) -> dict[str, Any]:
    """An ``order_summaries`` row, rendered by the same function as the commands' responses."""
    return render_order(
        order_id=row["order_id"],
        number=row["number"],
        customer_id=row["customer_id"],
        status=row["status"],
        currency=row["currency"],
        total_minor=row["total_minor"],
        captured_minor=row["captured_minor"],
        refunded_minor=row["refunded_minor"],
        lines=row["lines"],
        placed_at=row["placed_at"].astimezone(UTC),
        attempts=row["attempts"],
        payment_outcome=row.get("payment_outcome"),
        decline_code=row["decline_code"],
        history=row.get("payment_history"),
        charged_back_minor=row.get("charged_back_minor", 0),
        chargebacks=row.get("chargebacks"),
        parent_order_id=row.get("parent_order_id"),
        attribution=row.get("attribution"),
    )


def encode_cursor(moment: datetime, row_id: UUID) -> str:
    """A cursor naming the last row of a page: its time (microseconds since the epoch, UTC)
    and id (an order's placed_at and id, a subscription's creation and id). Every string of
    ``CURSOR_PATTERN`` is a position, so none is "unknown"."""
    microseconds = (moment.astimezone(UTC) - EPOCH) // timedelta(microseconds=1)
    return f"{microseconds}_{row_id.hex}"


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """The (time, id) a cursor names; the route's pattern has checked its shape."""
    microseconds_text, order_id_hex = cursor.split("_")
    return EPOCH + timedelta(microseconds=int(microseconds_text)), UUID(hex=order_id_hex)
