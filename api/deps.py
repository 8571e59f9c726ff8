"""Dependencies shared by the routers: the services, the caller's principal, common parameters.

Routers receive the services built by the lifespan through ``request.app.state.services``; the
``LedgerServices`` protocol names what the API uses of them, so this layer never imports the
adapters that build them.
"""

from __future__ import annotations

from typing import Annotated, Any, Protocol

from fastapi import Depends, Header, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import ApiError
from application.access import COMMAND_ROLES, READ_ROLES, AccessStore, PermissionDenied, Principal
from application.ledger import CommandResult, Ledger
from projections.base import BatchView
from projections.customer_summaries import CustomerSummariesView
from projections.order_summaries import OrderSummariesView


class PositionWaiter(Protocol):
    def wait(self, view: BatchView, position: int, timeout_s: float) -> bool: ...


class LedgerServices(Protocol):
    """What the API needs of ``adapters.bootstrap.Services``."""

    ledger: Ledger
    orders: OrderSummariesView
    customers: CustomerSummariesView
    access: AccessStore
    waiter: PositionWaiter
    settings: Any

    def readiness(self) -> dict[str, Any]: ...


def get_services(request: Request) -> LedgerServices:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[LedgerServices, Depends(get_services)]

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`")


def authenticate(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The principal behind the bearer key; 401 without a key or with an unknown one."""
    if credentials is None:
        raise ApiError(
            401,
            "authentication_error",
            "unauthenticated",
            "send an API key as 'Authorization: Bearer <key>'",
        )
    principal = services.access.authenticate(credentials.credentials)
    if principal is None:
        raise ApiError(401, "authentication_error", "invalid_api_key", "the API key is not valid")
    return principal


def command_principal(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    """A principal whose role may change this tenant's data. Raises ``PermissionDenied``."""
    principal.require(COMMAND_ROLES)
    return principal


def read_principal(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    """A principal whose role may read this tenant's data. Raises ``PermissionDenied``."""
    principal.require(READ_ROLES)
    return principal


def platform_principal(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    """A platform principal, the only kind that manages tenants. Raises ``PermissionDenied``."""
    if principal.role != "platform":
        raise PermissionDenied("only a platform key may manage tenants")
    return principal


CommandPrincipal = Annotated[Principal, Depends(command_principal)]
ReadPrincipal = Annotated[Principal, Depends(read_principal)]
PlatformPrincipal = Annotated[Principal, Depends(platform_principal)]

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Same key and body: the first response is replayed. Other body: 409.",
    ),
]
MinPosition = Annotated[
    int | None,
    Query(
        ge=0,
        description="Wait (briefly) until the read model has applied this log position, as "
        "returned in a command's X-Ledger-Position header; 504 if it cannot.",
    ),
]


def command_body(response: Response, result: CommandResult) -> dict[str, Any]:
    """The command's body, with its log position and replay flag as response headers."""
    if result.position is not None:
        response.headers["X-Ledger-Position"] = str(result.position)
    if result.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return result.body


def wait_for_position(services: LedgerServices, view: BatchView, min_position: int | None) -> None:
    """Block until ``view`` has applied ``min_position``; 504 after the configured timeout."""
    if min_position is None:
        return
    if not services.waiter.wait(view, min_position, services.settings.read_wait_timeout_s):
        raise ApiError(
            504,
            "timeout_error",
            "read_model_behind",
            f"the read model has not yet applied position {min_position}; retry shortly",
            param="min_position",
        )
