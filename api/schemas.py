"""The wire format: request and response models, and the JSON response class.

Request models forbid unknown fields and take integers strictly (``"12"``, ``12.5`` and ``true``
are not amounts), so a typo or a float never reaches a command silently. Every integer has real
bounds (no 64-bit overflow reaches a command, a fingerprint or a column), and every string the
domain checks has its shape here too (patterns, lengths, the ISO code lists as enums), so
``/openapi.json`` states what the server enforces and a request valid by it is not refused for its
shape. Rules across fields or against state (an order total above the maximum, the Luhn check
and expiry of a card, refund limits) stay in the domain and are named in the descriptions.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import orjson
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from domain.countries import COUNTRY_CODES
from domain.money import AMOUNT_MINOR_MAX, CURRENCY_EXPONENTS
from domain.order import LINES_MAX, QUANTITY_MAX, SKU_LENGTH_MAX, OrderStatus


class OrjsonResponse(JSONResponse):
    """JSON rendered by orjson (FastAPI's own ``ORJSONResponse`` is deprecated)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def _integral(value: Any) -> Any:
    """JSON has one number type: ``12.0`` is the integer 12 (JSON Schema agrees); ``12.5``,
    ``"12"`` and ``true`` stay what they are, and the strict check refuses them."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def integer(minimum: int, maximum: int) -> Any:
    """An integer field with real bounds, so no 64-bit overflow reaches a command or a column."""
    # The Field goes first: after a validator, pydantic renders its bounds as "ge"/"le", not
    # JSON Schema's "minimum"/"maximum".
    return Annotated[int, Field(strict=True, ge=minimum, le=maximum), BeforeValidator(_integral)]


AmountMinor = integer(0, AMOUNT_MINOR_MAX)
PositiveAmountMinor = integer(1, AMOUNT_MINOR_MAX)
# PostgreSQL text cannot hold NUL: no string field may contain one.
NO_NUL = r"^[^\x00]*$"
ShortText = Annotated[str, Field(max_length=500, pattern=NO_NUL)]
# Whitespace spelled out: Python's ``\s`` and ``str.strip()`` (the domain's reading), the Rust
# regex of pydantic and ECMA's (JSON Schema's) each mean a different set by ``\s``; this is their
# union, so every reader agrees on the patterns below.
_SPACE = r"\t\n\x0b\x0c\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
# At least one character that ``str.strip()`` keeps (the domain strips names and SKUs), no NUL.
_VISIBLE = rf"^[^\x00]*[^{_SPACE}\x00][^\x00]*$"
_EMAIL_PART = rf"[^@{_SPACE}\x00]"
CurrencyCode = Annotated[
    str,
    Field(
        min_length=3,
        max_length=3,
        pattern=r"^[A-Z]{3}$",
        examples=["USD"],
        description="ISO 4217 code; one of the listed currencies (422 `unknown_currency`)",
        json_schema_extra={"enum": sorted(CURRENCY_EXPONENTS)},
    ),
]
CountryCode = Annotated[
    str,
    Field(
        min_length=2,
        max_length=2,
        pattern=r"^[A-Z]{2}$",
        examples=["US"],
        description="ISO 3166-1 alpha-2 code; one of the listed countries (422 `unknown_country`)",
        json_schema_extra={"enum": sorted(COUNTRY_CODES)},
    ),
]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Requests ----------------------------------------------------------------------------------------


class TenantCreate(Request):
    id: Annotated[
        str, Field(min_length=1, max_length=63, pattern=r"^[a-z0-9][a-z0-9_-]*$", examples=["acme"])
    ]
    name: Annotated[str | None, Field(max_length=200, pattern=NO_NUL)] = None


class CustomerCreate(Request):
    email: Annotated[
        str,
        Field(
            min_length=3,
            max_length=254,
            pattern=rf"^{_EMAIL_PART}{{1,64}}@{_EMAIL_PART}+\.{_EMAIL_PART}+$",
            examples=["buyer@example.com"],
        ),
    ]
    name: Annotated[str, Field(min_length=1, max_length=200, pattern=_VISIBLE)]
    country: CountryCode
    currency: CurrencyCode


class PaymentMethodCreate(Request):
    """A card to keep on file. Its number must pass the Luhn check and the card must not have
    expired (nor expire more than 50 years ahead): 422 ``invalid_card`` otherwise."""

    card_number: Annotated[
        str,
        Field(
            min_length=12,
            max_length=32,
            pattern=r"^[0-9][0-9 -]*[0-9]$",
            examples=["4242424242424242"],
            description="12 to 19 digits, spaces or dashes between them allowed",
        ),
    ]
    exp_month: integer(1, 12)  # type: ignore[valid-type]
    exp_year: integer(2000, 2100)  # type: ignore[valid-type]
    cvc: Annotated[str | None, Field(min_length=3, max_length=4, pattern=r"^[0-9]{3,4}$")] = None


class OrderLineIn(Request):
    sku: Annotated[str, Field(min_length=1, max_length=SKU_LENGTH_MAX, pattern=_VISIBLE)]
    quantity: integer(1, QUANTITY_MAX)  # type: ignore[valid-type]
    unit_price_minor: AmountMinor


class PaymentIn(Request):
    payment_method_id: UUID
    mode: Literal["purchase", "authorize"] = Field(
        default="purchase",
        description="`purchase` takes the money at once; `authorize` holds it for a later "
        "capture (`POST /v1/orders/{id}/capture`) or void",
    )


class OrderCreate(Request):
    """An order. Its total (the sum of quantity × unit_price_minor) may not exceed
    10^15 minor units, and an order paid at once needs a total above zero: 422
    ``invalid_amount`` otherwise."""

    customer_id: UUID
    currency: CurrencyCode
    lines: Annotated[list[OrderLineIn], Field(min_length=1, max_length=LINES_MAX)]
    payment: PaymentIn | None = None


class RefundCreate(Request):
    amount_minor: PositiveAmountMinor
    reason: ShortText | None = None


class CaptureRequest(Request):
    amount_minor: PositiveAmountMinor | None = Field(
        default=None,
        description="At most the authorized amount (default: all of it); an authorization is "
        "captured once and the rest released",
    )


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


class PaymentAttemptOut(BaseModel):
    attempt_id: UUID
    gateway_id: str | None = Field(description="The gateway the attempt was sent to")
    kind: Literal["purchase", "authorize"]
    amount_minor: int | None
    outcome: Literal["requested", "succeeded", "declined", "unknown"]
    decline_code: str | None


class PaymentOut(BaseModel):
    outcome: str
    decline_code: str | None
    attempts: int
    history: list[PaymentAttemptOut] = Field(
        default_factory=list, description="Every payment attempt of the order, oldest first"
    )


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


class ReadinessOut(BaseModel):
    status: Literal["ok", "unavailable"]
    database: str = Field(description='"ok" or "error: <what failed>"')
    redis: str = Field(description='"ok" or "error: <what failed>"')
    projections: dict[str, dict[str, int]] | None = Field(
        default=None, description="Per projection: position, lag and parked aggregates"
    )


class SandboxTransactionOut(BaseModel):
    id: str
    account_id: str = Field(description="The tenant (merchant account) the processor acted for")
    kind: Literal["charge", "authorization", "capture", "void", "refund"]
    status: Literal["succeeded", "declined"]
    idempotency_key: UUID = Field(description="Our payment attempt's or refund's id")
    amount_minor: int
    currency: str
    reference: str = Field(description="Our order id")
    decline_code: str | None
    charge_id: str | None = Field(
        description="For a capture or void: its authorization; for a refund: the charge or "
        "capture it gives back"
    )
    created_at: datetime


class SandboxTransactionPage(BaseModel):
    data: list[SandboxTransactionOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page")


class ErrorDetail(BaseModel):
    type: str
    code: str
    message: str
    param: str | None


class ErrorOut(BaseModel):
    error: ErrorDetail


# API keys ----------------------------------------------------------------------------------------

# ``application.access.ROLES`` as an enum of the OpenAPI document (a unit test keeps them equal).
RoleName = Literal["platform", "admin", "manager", "agent", "auditor", "readonly"]


class ApiKeyCreate(Request):
    role: Annotated[RoleName, Field(description="`platform` only if the caller is a platform key")]
    name: Annotated[
        str, Field(min_length=1, max_length=100, pattern=NO_NUL, examples=["warehouse sync"])
    ]


class ApiKeyOut(BaseModel):
    id: UUID
    name: str
    role: str
    created_at: datetime
    last_used_at: datetime | None = Field(description="Recorded at most once a minute")


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The key itself: shown in this response only, never again")


class ApiKeyList(BaseModel):
    data: list[ApiKeyOut]


# Reports -----------------------------------------------------------------------------------------


class SalesTotalsOut(BaseModel):
    currency: str
    gross_minor: int = Field(description="Money captured, on the UTC day of each capture")
    refunds_minor: int = Field(description="Money refunded, on the UTC day of each refund")
    chargebacks_minor: int = Field(
        description="Money lost to chargebacks (0: none are recorded yet)"
    )
    net_minor: int = Field(description="gross − refunds − chargebacks")
    order_count: int = Field(description="Orders whose first capture falls in the group")
    average_order_value_minor: int = Field(
        description="net ÷ order count, rounded down (floor); 0 without orders"
    )


class SalesFiguresOut(SalesTotalsOut):
    group: str = Field(
        description="The UTC day (YYYY-MM-DD), the customer's country, the gateway's name or "
        "the campaign (`none` for orders without one); `unknown` where it was never recorded"
    )


class SalesReportOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    date_from: date = Field(alias="from")
    date_to: date = Field(alias="to")
    group_by: Literal["day", "country", "gateway", "campaign"]
    currency: str | None
    data: list[SalesFiguresOut] = Field(description="Groups with figures, by group then currency")
    totals: list[SalesTotalsOut] = Field(description="The whole period, per currency")


class GatewayVolumeOut(BaseModel):
    captured_minor: int
    refunded_minor: int
    chargebacks_minor: int = Field(description="0: no chargebacks are recorded yet")


class GatewayFiguresOut(BaseModel):
    gateway: str
    brand: str = Field(description="The card brand of the payment method; `unknown` if never seen")
    attempts: int = Field(description="Payment attempts requested in the period")
    approvals: int
    declines: int
    outcome_unknown: int = Field(description="Attempts whose outcome is unknown (not reconciled)")
    approval_rate_bps: int = Field(description="approvals × 10,000 ÷ attempts, rounded down")
    declines_by_code: dict[str, int]
    volume_by_currency: dict[str, GatewayVolumeOut] = Field(
        description="Money captured and refunded, each on its own UTC day"
    )
    chargebacks: int = Field(description="0: no chargebacks are recorded yet")
    chargeback_ratio_bps: int = Field(
        description="chargebacks × 10,000 ÷ approvals, rounded down (0 until chargebacks exist)"
    )


class GatewayReportOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    date_from: date = Field(alias="from")
    date_to: date = Field(alias="to")
    data: list[GatewayFiguresOut] = Field(description="By gateway, then brand")
