"""Dependencies shared by the routers: the services, the caller's principal, common parameters.

Routers receive the services built by the lifespan through ``request.app.state.services``; the
``LedgerServices`` protocol names what the API uses of them, so this layer never imports the
adapters that build them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Protocol
from uuid import UUID

from fastapi import Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api.errors import ApiError
from application.access import (
    COMMAND_ROLES,
    READ_ROLES,
    AccessControl,
    PermissionDenied,
    Principal,
)
from application.commands import CommandResult
from application.ledger import Ledger
from projections.base import BatchView
from projections.customer_summaries import CustomerSummariesView
from projections.gateway_report import GatewayReportView
from projections.order_summaries import OrderSummariesView
from projections.sales_report import SalesReportView


class PositionWaiter(Protocol):
    def reached(self, view: BatchView, position: int) -> bool: ...

    def refresh(self, view: BatchView) -> int: ...

    async def wait_async(self, view: BatchView, position: int, timeout_s: float) -> bool: ...


class AsyncReads(Protocol):
    """The hot reads on the event loop (``adapters.async_reads.AsyncReadModels``)."""

    def usable(self) -> bool: ...

    async def order(self, tenant_id: str, order_id: UUID) -> dict[str, Any] | None: ...

    async def orders(
        self,
        tenant_id: str,
        *,
        customer_id: UUID | None = None,
        status: str | None = None,
        after: tuple[datetime, UUID] | None = None,
        limit: int = 20,
    ) -> list[dict[str, Any]]: ...

    async def customer(self, tenant_id: str, customer_id: UUID) -> dict[str, Any] | None: ...


class BillingRuns(Protocol):
    """What is due of the subscriptions, done now (``adapters.billing_scheduler``)."""

    def run_due(
        self, *, tenant_id: str | None = None, now: datetime | None = None
    ) -> dict[str, int]: ...

    def run_account_updater(self, *, tenant_id: str | None = None) -> dict[str, int]: ...


class LedgerServices(Protocol):
    """What the API needs of ``adapters.bootstrap.Services``."""

    ledger: Ledger
    orders: OrderSummariesView
    customers: CustomerSummariesView
    sales_report: SalesReportView
    gateway_report: GatewayReportView
    mrr: Any  # projections.mrr.MrrView
    fx_rates: Any  # adapters.fx_rates.PgFxRates
    subscriptions: Any  # projections.subscriptions' view
    genealogy: Any  # projections.genealogy's view
    billing: BillingRuns
    access: AccessControl
    waiter: PositionWaiter
    settings: Any
    sandbox_book: Any  # the sandbox processor's books, or None with another gateway

    def readiness(self) -> dict[str, Any]: ...


# Dependencies are ``async def`` unless they block: FastAPI runs a sync one in a worker thread,
# a hop per dependency per request.


async def get_services(request: Request) -> LedgerServices:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[LedgerServices, Depends(get_services)]


def async_reads(request: Request) -> AsyncReads | None:
    """The app's async read models if they serve this event loop, else None (then read through
    the blocking views in a worker thread: a test client without a lifespan, fakes)."""
    reads: AsyncReads | None = getattr(request.app.state, "async_reads", None)
    return reads if reads is not None and reads.usable() else None


class JsonBytesResponse(JSONResponse):
    """JSON already rendered to bytes, sent as is. As a route's ``response_class`` (a
    ``JSONResponse``) it keeps the ``response_model``'s schema in the OpenAPI document."""

    def render(self, content: Any) -> bytes:
        assert isinstance(content, bytes), "render with json_response()"
        return content


def json_response(model: type[BaseModel], content: Any) -> Response:
    """``content`` validated and serialised by ``model`` to JSON bytes, as FastAPI would for a
    route's ``response_model``, without its generic encoding pass (the route returns this
    ``Response``, which FastAPI sends as is; the decorator's ``response_model`` documents it)."""
    body = model.__pydantic_serializer__.to_json(model.model_validate(content))
    return JsonBytesResponse(content=body)


_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`")


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]

# Each principal dependency below authenticates by itself (a plain call, not a sub-dependency):
# FastAPI solves every dependency of a request in Python, a measurable share of a read's time.


async def _principal_of(
    request: Request, credentials: HTTPAuthorizationCredentials | None
) -> Principal:
    """The principal behind the bearer key; 401 without a key or with an unknown one.

    Answered from the key cache on the event loop; only a key the cache does not know is looked
    up in the database, in a worker thread.
    """
    if credentials is None:
        raise ApiError(
            401,
            "authentication_error",
            "unauthenticated",
            "send an API key as 'Authorization: Bearer <key>'",
        )
    access = request.app.state.services.access
    known, principal = access.authenticate_cached(credentials.credentials)
    if not known:
        principal = await run_in_threadpool(access.authenticate, credentials.credentials)
    if principal is None:
        raise ApiError(401, "authentication_error", "invalid_api_key", "the API key is not valid")
    return principal


async def authenticate(request: Request, credentials: Credentials) -> Principal:
    """The principal behind the bearer key, whatever its role; 401 as ``_principal_of``."""
    return await _principal_of(request, credentials)


async def command_principal(request: Request, credentials: Credentials) -> Principal:
    """A principal whose role may change this tenant's data. Raises ``PermissionDenied``."""
    principal = await _principal_of(request, credentials)
    principal.require(COMMAND_ROLES)
    return principal


async def read_principal(request: Request, credentials: Credentials) -> Principal:
    """A principal whose role may read this tenant's data. Raises ``PermissionDenied``."""
    principal = await _principal_of(request, credentials)
    principal.require(READ_ROLES)
    return principal


async def platform_principal(request: Request, credentials: Credentials) -> Principal:
    """A platform principal, the only kind that manages tenants. Raises ``PermissionDenied``."""
    principal = await _principal_of(request, credentials)
    if principal.role != "platform":
        raise PermissionDenied("only a platform key may manage tenants")
    return principal


async def admin_principal(request: Request, credentials: Credentials) -> Principal:
    """An admin of a tenant. Raises ``PermissionDenied``."""
    principal = await _principal_of(request, credentials)
    principal.require(frozenset({"admin"}))
    return principal


CommandPrincipal = Annotated[Principal, Depends(command_principal)]
AdminPrincipal = Annotated[Principal, Depends(admin_principal)]
ReadPrincipal = Annotated[Principal, Depends(read_principal)]
PlatformPrincipal = Annotated[Principal, Depends(platform_principal)]

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Same key and body: the first response is replayed. Other body: 409. "
        "1 to 255 printable ASCII characters, not starting or ending with a space.",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$",
    ),
]
MinPosition = Annotated[
    int | None,
    Query(
        ge=0,
        le=2**63 - 1,
        description="Wait (briefly) until the read model has applied this log position, as "
        "returned in a command's X-Ledger-Position header; 504 if it cannot, 422 "
        "(`position_not_reached`) if the log has no such position yet.",
    ),
]


def command_body(response: Response, result: CommandResult) -> dict[str, Any]:
    """The command's body, with its log position and replay flag as response headers."""
    if result.position is not None:
        response.headers["X-Ledger-Position"] = str(result.position)
    if result.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return result.body


async def wait_for_position(
    services: LedgerServices, view: BatchView, min_position: int | None
) -> None:
    """Wait until ``view`` has applied ``min_position``, holding no worker thread meanwhile.

    422 ``position_not_reached`` at once if the log has no such position (waiting could not
    help); 504 after the configured timeout.
    """
    if min_position is None or services.waiter.reached(view, min_position):
        return
    # One short query in a worker thread (re-read the position, read the log's head); the wait
    # itself is a suspended coroutine.
    head = await run_in_threadpool(services.waiter.refresh, view)
    if services.waiter.reached(view, min_position):
        return
    if min_position > head:
        raise ApiError(
            422,
            "invalid_request_error",
            "position_not_reached",
            "the log has not reached the requested position; use a position a command returned",
            param="min_position",
        )
    timeout_s = services.settings.read_wait_timeout_s
    if not await services.waiter.wait_async(view, min_position, timeout_s):
        raise ApiError(
            504,
            "timeout_error",
            "read_model_behind",
            "the read model has not yet applied the requested position; retry shortly",
            param="min_position",
        )


def _read_at_min_position(view_of: Callable[[LedgerServices], BatchView]) -> Any:
    async def wait(
        principal: ReadPrincipal, services: ServicesDep, min_position: MinPosition = None
    ) -> None:
        """Runs after authentication (``principal``), so an unknown caller never waits."""
        await wait_for_position(services, view_of(services), min_position)

    return wait


def _reader_at_min_position(view_of: Callable[[LedgerServices], BatchView]) -> Any:
    async def reader(
        request: Request, credentials: Credentials, min_position: MinPosition = None
    ) -> Principal:
        """A reading principal, once the read model has applied ``min_position`` (checked
        after authentication, so an unknown caller never waits)."""
        principal = await _principal_of(request, credentials)
        principal.require(READ_ROLES)
        services = request.app.state.services
        await wait_for_position(services, view_of(services), min_position)
        return principal

    return reader


# The hot reads' one dependency: authentication, role and ``?min_position=`` together.
OrdersReader = Annotated[Principal, Depends(_reader_at_min_position(lambda s: s.orders))]
CustomersReader = Annotated[Principal, Depends(_reader_at_min_position(lambda s: s.customers))]
SubscriptionsReader = Annotated[
    Principal, Depends(_reader_at_min_position(lambda s: s.subscriptions))
]
GenealogyReader = Annotated[Principal, Depends(_reader_at_min_position(lambda s: s.genealogy))]

# Route parameters that apply ``?min_position=`` to a read model before the (sync) route body.
OrdersAtMinPosition = Annotated[None, Depends(_read_at_min_position(lambda s: s.orders))]
CustomersAtMinPosition = Annotated[None, Depends(_read_at_min_position(lambda s: s.customers))]
SalesReportAtMinPosition = Annotated[None, Depends(_read_at_min_position(lambda s: s.sales_report))]
GatewayReportAtMinPosition = Annotated[
    None, Depends(_read_at_min_position(lambda s: s.gateway_report))
]
MrrAtMinPosition = Annotated[None, Depends(_read_at_min_position(lambda s: s.mrr))]
