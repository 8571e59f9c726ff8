"""``/v1/gateways``: a tenant's merchant accounts, which its payments are routed through.

Registering the first gateway switches the tenant from the default sandbox to routing. Admins
register, change (PATCH: only the fields sent), enable/disable (``enabled``) and reset gateways
tripped by the circuit breaker; any role may read them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from api.deps import AdminPrincipal, IdempotencyKey, ReadPrincipal, ServicesDep, command_body
from api.schemas import CountryCode, CurrencyCode, PositiveAmountMinor, Request, integer
from domain.gateway import (
    ACCOUNT_LENGTH_MAX,
    BIN_RANGES_MAX,
    CARD_BRANDS,
    LIST_LENGTH_MAX,
    NAME_LENGTH_MAX,
    THRESHOLD_BPS_MAX,
    WEIGHT_MAX,
)

router = APIRouter(prefix="/v1/gateways", tags=["gateways"])

LIMIT_DEFAULT = 50
LIMIT_MAX = 100

Processor = Literal["sandbox", "spreedly"]
CardBrand = Literal[CARD_BRANDS]  # type: ignore[valid-type]
BinBound = Annotated[str, Field(pattern=r"^[0-9]{6,8}$", examples=["424242"])]
BinRange = Annotated[
    list[BinBound],
    Field(
        min_length=2,
        max_length=2,
        description="[low, high]: card BIN prefixes of 6 to 8 digits, in either order; a card "
        "matches when its BIN is within them (each compared on the digits both have)",
    ),
]
Name = Annotated[
    str, Field(min_length=1, max_length=NAME_LENGTH_MAX, pattern=r"^[ -~]*[!-~][ -~]*$")
]
ProcessorAccount = Annotated[
    str,
    Field(
        pattern=rf"^[!-~]{{1,{ACCOUNT_LENGTH_MAX}}}$",
        description="The merchant account at the processor (its own books); the gateway id "
        "when absent. Sandbox: an id ending in `+decline_<code>` declines every charge with "
        "<code> (for cascade tests)",
    ),
]
Currencies = Annotated[list[CurrencyCode], Field(min_length=1, max_length=LIST_LENGTH_MAX)]
Brands = Annotated[list[CardBrand], Field(min_length=1, max_length=len(CARD_BRANDS))]
Countries = Annotated[list[CountryCode], Field(min_length=1, max_length=LIST_LENGTH_MAX)]
BinRanges = Annotated[list[BinRange], Field(min_length=1, max_length=BIN_RANGES_MAX)]
Weight = integer(0, WEIGHT_MAX)
ThresholdBps = integer(1, THRESHOLD_BPS_MAX)


class GatewayCreate(Request):
    """A merchant account. ``monthly_cap_minor`` caps the approved volume per currency per UTC
    month; ``weight`` shares traffic among eligible gateways (0: only as a fallback)."""

    name: Name
    processor: Processor
    currencies: Currencies
    card_brands: Brands
    monthly_cap_minor: PositiveAmountMinor
    weight: Weight = 1
    bin_ranges: BinRanges | None = None
    countries: Countries | None = None
    chargeback_ratio_threshold_bps: ThresholdBps | None = None
    processor_account: ProcessorAccount | None = None


class GatewayUpdate(Request):
    """The fields to change; the others stay. ``enabled: false`` disables the gateway."""

    name: Name | None = None
    processor: Processor | None = None
    currencies: Currencies | None = None
    card_brands: Brands | None = None
    monthly_cap_minor: PositiveAmountMinor | None = None
    weight: Weight | None = None
    bin_ranges: BinRanges | None = None
    countries: Countries | None = None
    chargeback_ratio_threshold_bps: ThresholdBps | None = None
    processor_account: ProcessorAccount | None = None
    enabled: bool | None = None


class GatewayOut(BaseModel):
    id: UUID
    name: str
    processor: str
    currencies: list[str]
    card_brands: list[str]
    bin_ranges: list[list[str]] | None
    countries: list[str] | None
    monthly_cap_minor: int
    weight: int
    chargeback_ratio_threshold_bps: int | None
    processor_account: str | None
    enabled: bool
    tripped: bool = Field(description="The circuit breaker skips it until reset")
    tripped_reason: str | None
    created_at: datetime


class GatewayPage(BaseModel):
    data: list[GatewayOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page")


# Fields that may be cleared by sending null (the others are required once set).
_CLEARABLE = {"bin_ranges", "countries", "chargeback_ratio_threshold_bps", "processor_account"}


@router.post("", status_code=201, response_model=GatewayOut)
def register_gateway(
    body: GatewayCreate,
    principal: AdminPrincipal,
    services: ServicesDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Register a merchant account; the tenant's payments are routed from now on."""
    result = services.ledger.register_gateway(
        tenant_id=principal.tenant_id,
        config=body.model_dump(mode="json"),
        idempotency_key=idempotency_key,
    )
    return command_body(response, result)


@router.patch("/{gateway_id}", response_model=GatewayOut)
def update_gateway(
    gateway_id: UUID,
    body: GatewayUpdate,
    principal: AdminPrincipal,
    services: ServicesDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Change the fields sent (null clears an optional field: BIN ranges, countries,
    threshold, processor account)."""
    sent = body.model_dump(mode="json", exclude_unset=True)
    changes = {k: v for k, v in sent.items() if v is not None or k in _CLEARABLE}
    result = services.ledger.update_gateway(
        tenant_id=principal.tenant_id,
        gateway_id=gateway_id,
        changes=changes,
        idempotency_key=idempotency_key,
    )
    return command_body(response, result)


@router.post("/{gateway_id}/reset", response_model=GatewayOut)
def reset_gateway(
    gateway_id: UUID,
    principal: AdminPrincipal,
    services: ServicesDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Close the breaker of a tripped gateway (409 ``gateway_not_tripped`` otherwise)."""
    result = services.ledger.reset_gateway(
        tenant_id=principal.tenant_id, gateway_id=gateway_id, idempotency_key=idempotency_key
    )
    return command_body(response, result)


@router.get("", response_model=GatewayPage)
def list_gateways(
    principal: ReadPrincipal,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=LIMIT_MAX)] = LIMIT_DEFAULT,
    cursor: Annotated[
        str | None, Query(max_length=6, pattern=r"^[0-9]{1,6}$", description="next_cursor")
    ] = None,
) -> dict[str, Any]:
    """The tenant's gateways, in the order they were registered."""
    gateways = services.ledger.list_gateways(principal.tenant_id)
    start = int(cursor) if cursor else 0
    page = gateways[start : start + limit]
    more = start + limit < len(gateways)
    return {"data": page, "next_cursor": str(start + limit) if more else None}


@router.get("/{gateway_id}", response_model=GatewayOut)
def get_gateway(
    gateway_id: UUID, principal: ReadPrincipal, services: ServicesDep
) -> dict[str, Any]:
    return services.ledger.read_gateway(principal.tenant_id, gateway_id)  # type: ignore[no-any-return]
