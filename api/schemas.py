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
from domain.order import (
    LINES_MAX,
    QUANTITY_MAX,
    REASON_CODE_LENGTH_MAX,
    SKU_LENGTH_MAX,
    OrderStatus,
)


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
VISIBLE_PATTERN = _VISIBLE  # a name: at least one character that is not whitespace
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
    volume_minor: AmountMinor | None = Field(
        default=None,
        description="The line's personal volume (PV) for commissions; default: its amount",
    )


class AttributionIn(Request):
    distributor_id: UUID | None = Field(
        default=None, description="The distributor the order is credited to (commissions)"
    )
    affiliate_id: Annotated[str, Field(min_length=1, max_length=64, pattern=_VISIBLE)] | None = None


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
    attribution: AttributionIn | None = None


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


class ChargebackCreate(Request):
    """A chargeback of a paid or partially refunded order (409 `order_not_disputable`
    otherwise); open and lost chargebacks with refunds never exceed the captured amount (409
    `chargeback_exceeds_captured`)."""

    amount_minor: PositiveAmountMinor
    reason_code: Annotated[
        str,
        Field(
            min_length=1,
            max_length=REASON_CODE_LENGTH_MAX,
            pattern=_VISIBLE,
            examples=["10.4"],
            description="The card network's reason code (Visa `10.4`, Mastercard `4837`, …)",
        ),
    ]


class ChargebackResolve(Request):
    outcome: Literal["won", "lost"] = Field(
        description="`won`: the money comes back; `lost`: it is debited like a refund"
    )


class UpsellCreate(Request):
    """A one-click upsell of a paid order (409 `parent_order_not_paid` otherwise), in its
    currency, for its customer; purchased at once."""

    lines: Annotated[list[OrderLineIn], Field(min_length=1, max_length=LINES_MAX)]
    payment_method_id: UUID | None = Field(
        default=None,
        description="A card of the parent order's customer; default: the card that paid it",
    )


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
    """A line; ``volume_minor`` (its personal volume for commissions) is present when it was
    given at placing (else the volume is the amount)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": True})

    sku: str
    quantity: int
    unit_price_minor: int
    amount_minor: int


class AttributionOut(BaseModel):
    distributor_id: UUID | None
    affiliate_id: str | None


class PaymentAttemptOut(BaseModel):
    attempt_id: UUID
    gateway_id: str | None = Field(description="The gateway the attempt was sent to")
    kind: Literal["purchase", "authorize"]
    amount_minor: int | None
    outcome: Literal["requested", "succeeded", "declined", "unknown"]
    decline_code: str | None


class ChargebackOut(BaseModel):
    id: UUID
    amount_minor: int
    reason_code: str
    status: Literal["open", "won", "lost"]


class PaymentOut(BaseModel):
    outcome: str
    decline_code: str | None
    attempts: int
    history: list[PaymentAttemptOut] = Field(
        default_factory=list, description="Every payment attempt of the order, oldest first"
    )
    chargebacks: list[ChargebackOut] = Field(
        default_factory=list, description="Chargebacks of the order, in the order opened"
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
    charged_back_minor: int = Field(default=0, description="Money lost to chargebacks")
    parent_order_id: UUID | None = Field(
        default=None, description="The order a one-click upsell follows"
    )
    attribution: AttributionOut | None = Field(
        default=None, description="The distributor and affiliate the order is credited to"
    )
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
        description="Money taken back by chargebacks: counted on the UTC day a chargeback is "
        "opened, reversed on the day it is won (a lost one stays counted)"
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
    chargebacks_minor: int = Field(
        description="Money of chargebacks opened, reversed on the day one is won"
    )


RatioBand = Literal["ok", "warning", "excessive"]


class VisaRatioOut(BaseModel):
    disputes: int = Field(description="Chargebacks opened in the month")
    transactions: int = Field(description="Captures (settled transactions) in the month")
    ratio_bps: int | None = Field(description="None: disputes without transactions")
    band: RatioBand = Field(description="ok < 65 bps ≤ warning < 100 bps ≤ excessive")


class MastercardRatioOut(BaseModel):
    chargebacks: int = Field(description="Chargebacks opened in the month")
    previous_month_transactions: int = Field(description="Captures in the previous month")
    ratio_bps: int | None = Field(description="None: chargebacks without transactions")
    band: RatioBand = Field(description="ok < 100 bps ≤ warning < 150 bps ≤ excessive")


class SchemeRatiosOut(BaseModel):
    month: str = Field(description="YYYY-MM: the month of `to`, up to and including `to`")
    visa: VisaRatioOut
    mastercard: MastercardRatioOut


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
    captures: int = Field(description="Captures (settled transactions) in the period")
    chargebacks: int = Field(description="Chargebacks opened in the period, whatever the outcome")
    chargeback_ratio_bps: int = Field(
        description="chargebacks × 10,000 ÷ approvals of the period, rounded down"
    )
    scheme_ratios: SchemeRatiosOut


class CapCurrencyOut(BaseModel):
    committed_minor: int = Field(
        ge=0,
        description="The month's volume in this currency as routing counts it against the "
        "cap: approved purchases and authorizations, gross (refunds and chargebacks not "
        "deducted), plus amounts reserved for attempts whose outcome is not known yet",
    )
    remaining_minor: int = Field(
        ge=0, description="monthly_cap_minor − committed_minor, never below 0"
    )
    used_bps: int = Field(
        ge=0,
        description="committed_minor × 10,000 ÷ monthly_cap_minor, rounded down; above 10,000 "
        "when the cap was lowered below the volume",
    )


class GatewayCapOut(BaseModel):
    gateway_id: UUID
    gateway: str = Field(description="The gateway's name, as in the rows of `data`")
    month: str = Field(description="YYYY-MM: the UTC month of `to`")
    monthly_cap_minor: int = Field(
        gt=0, description="The cap, in minor units, for each currency separately"
    )
    by_currency: dict[str, CapCurrencyOut] = Field(
        description="Each currency the gateway accepts, and any other it has volume in"
    )


class GatewayReportOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    date_from: date = Field(alias="from")
    date_to: date = Field(alias="to")
    data: list[GatewayFiguresOut] = Field(description="By gateway, then brand")
    monthly_caps: list[GatewayCapOut] = Field(
        description="Each routed gateway of the tenant (none without gateways), in the order "
        "they were registered: its monthly cap beside its volume of the month of `to`, per "
        "currency as routing counts the cap; for the current month, what routing sees now"
    )


ReconciliationClassName = Literal[
    "matched", "missing_ours", "missing_processor", "amount_mismatch", "state_mismatch"
]
CallKind = Literal["purchase", "authorize", "capture", "void", "refund"]


def _iso_day(value: Any) -> Any:
    """Only ``YYYY-MM-DD``: pydantic alone would also take a number or a midnight datetime."""
    if not isinstance(value, str) or len(value) != 10:
        raise ValueError("a date is written YYYY-MM-DD")
    return value


class ReconciliationRun(Request):
    day: Annotated[date, BeforeValidator(_iso_day)] = Field(
        alias="date", description="The UTC day to reconcile (YYYY-MM-DD)"
    )


class ReconciliationCountsOut(BaseModel):
    matched: int
    missing_ours: int = Field(
        description="The processor has a transaction we have no record of, or only an unknown "
        "or still requested outcome for"
    )
    missing_processor: int = Field(description="We have a call the processor has no record of")
    amount_mismatch: int = Field(description="Both have it, for other amounts or currencies")
    state_mismatch: int = Field(description="Both have it, with other outcomes or kinds")


class ReconciliationOursOut(BaseModel):
    kind: CallKind
    state: Literal["requested", "unknown", "succeeded", "declined"]
    amount_minor: int = Field(description="0 for a void")
    currency: str
    requested_at: datetime


class ReconciliationTheirsOut(BaseModel):
    transaction_id: str
    account_id: str = Field(description="The processor's merchant account")
    kind: str = Field(description="purchase, authorize, capture, void or refund")
    state: Literal["succeeded", "declined", "pending"]
    amount_minor: int
    currency: str
    created_at: datetime


class ReconciliationItemOut(BaseModel):
    classification: ReconciliationClassName
    order_id: UUID | None = Field(description="Our order, or the processor's reference to one")
    kind: str
    attempt_id: UUID | None = Field(description="The payment attempt (purchase, authorize)")
    call_id: UUID | None = Field(description="The capture, void or refund")
    ours: ReconciliationOursOut | None = Field(description="What our events say; null: nothing")
    theirs: ReconciliationTheirsOut | None = Field(
        description="What the processor's books say; null: nothing"
    )
    settleable: bool = Field(
        description="Our outcome is unknown and the processor's final: a run settles it by "
        "repeating the call with its own key (nothing moves twice)"
    )
    resolution: str | None = Field(
        description="After a run: what settling recorded (`succeeded`, `declined`, `resolved`, "
        "`unknown`; `in_flight` when the call was too recent; `error`); null otherwise"
    )


class ReconciliationReportOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    day: date = Field(alias="date")
    counts: ReconciliationCountsOut
    items: list[ReconciliationItemOut] = Field(
        description="Every item not matched (and the matched ones with `include_matched`): "
        "our calls in the order requested, then the processor's transactions we have no call for"
    )
