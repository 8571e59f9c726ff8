"""The wire format: request and response models, and the JSON response class.

Request models forbid unknown fields and take integers strictly (``"12"``, ``12.5`` and ``true``
are not amounts), so a typo or a float never reaches a command silently. Business rules (known
currencies, card checks, refund limits) stay in the domain; the bounds declared here document
the wire format in ``/docs`` and reject nonsense before any I/O.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import orjson
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from domain.money import AMOUNT_MINOR_MAX
from domain.order import OrderStatus


class OrjsonResponse(JSONResponse):
    """JSON rendered by orjson (FastAPI's own ``ORJSONResponse`` is deprecated)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


StrictInt = Annotated[int, Field(strict=True)]
AmountMinor = Annotated[int, Field(strict=True, ge=0, le=AMOUNT_MINOR_MAX)]
ShortText = Annotated[str, Field(max_length=500)]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Requests ----------------------------------------------------------------------------------------


class TenantCreate(Request):
    id: Annotated[str, Field(max_length=63, examples=["acme"])]
    name: Annotated[str | None, Field(max_length=200)] = None


class CustomerCreate(Request):
    email: Annotated[str, Field(max_length=254, examples=["buyer@example.com"])]
    name: Annotated[str, Field(max_length=200)]
    country: Annotated[str, Field(max_length=16, examples=["US"], description="ISO 3166-1 alpha-2")]
    currency: Annotated[str, Field(max_length=16, examples=["USD"], description="ISO 4217")]


class PaymentMethodCreate(Request):
    card_number: Annotated[str, Field(max_length=32, examples=["4242424242424242"])]
    exp_month: StrictInt
    exp_year: StrictInt
    cvc: Annotated[str | None, Field(max_length=4)] = None


class OrderLineIn(Request):
    sku: Annotated[str, Field(max_length=64)]
    quantity: StrictInt
    unit_price_minor: AmountMinor


class PaymentIn(Request):
    payment_method_id: UUID
    mode: Literal["purchase", "authorize"] = "purchase"


class OrderCreate(Request):
    customer_id: UUID
    currency: Annotated[str, Field(max_length=16, examples=["USD"], description="ISO 4217")]
    lines: Annotated[list[OrderLineIn], Field(max_length=100)]
    payment: PaymentIn | None = None


class RefundCreate(Request):
    amount_minor: AmountMinor
    reason: ShortText | None = None


class CancelRequest(Request):
    reason: ShortText | None = None


# Responses ---------------------------------------------------------------------------------------


class TenantOut(BaseModel):
    id: str
    name: str


class CustomerOut(BaseModel):
    id: UUID
    email: str
    name: str
    country: str
    currency: str
    created_at: datetime


class CurrencyValueOut(BaseModel):
    net_minor: int
    orders: int


class CustomerSummaryOut(CustomerOut):
    payment_methods: int = Field(description="How many payment methods are on file")
    lifetime_value_minor: int = Field(
        description="Captured minus refunded money of paid orders, in the customer's currency"
    )
    order_count: int
    average_order_value_minor: int = Field(description="Rounded down")
    value_by_currency: dict[str, CurrencyValueOut]
    first_order_at: datetime | None
    last_order_at: datetime | None


class PaymentMethodOut(BaseModel):
    id: UUID
    brand: str
    last4: str
    bin: str
    exp_month: int
    exp_year: int


class OrderLineOut(BaseModel):
    sku: str
    quantity: int
    unit_price_minor: int
    amount_minor: int


class PaymentOut(BaseModel):
    outcome: str
    decline_code: str | None
    attempts: int


class OrderOut(BaseModel):
    id: UUID
    number: str
    customer_id: UUID
    status: OrderStatus
    currency: str
    total_minor: int
    captured_minor: int
    refunded_minor: int
    lines: list[OrderLineOut]
    placed_at: datetime
    payment: PaymentOut | None


class OrderPage(BaseModel):
    data: list[OrderOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page")


class ErrorDetail(BaseModel):
    type: str
    code: str
    message: str
    param: str | None


class ErrorOut(BaseModel):
    error: ErrorDetail
