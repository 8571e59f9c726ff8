"""The FastAPI application: routers, the error map and the lifespan that owns the services.

``create_app()`` bootstraps the whole system in its lifespan (listener, projection runners and
worker included) and closes it on shutdown. ``create_app(services)`` uses services built by the
caller (tests) and leaves their lifecycle to it. ``uvicorn --factory api.app:app_factory`` runs
the former.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.metrics import HTTP_REQUESTS
from api.errors import error_response, install_error_handlers
from api.routers import (
    api_keys,
    billing,
    commission_plans,
    customers,
    disputes,
    distributors,
    gateways,
    health,
    mrr,
    orders,
    plans,
    reports,
    sandbox,
    subscriptions,
    tenants,
)
from api.schemas import ErrorOut, OrjsonResponse

REQUEST_BODY_SIZE_MAX_BYTES = 1024 * 1024

_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": description}
    for status, description in (
        (400, "Malformed request (invalid JSON, invalid cursor or idempotency key)"),
        (401, "Missing or invalid API key"),
        (403, "The key's role may not do this"),
        (404, "Not found (or another tenant's)"),
        (409, "Conflict: lifecycle rule, reused idempotency key or concurrent write"),
        (422, "Invalid input; `param` names the field"),
    )
}
_ERROR_RESPONSES[503] = {
    "model": ErrorOut,
    "description": "PostgreSQL cannot be reached (`service_unavailable`); retry after the delay",
    "headers": {
        "Retry-After": {
            "description": "Seconds to wait before retrying",
            "schema": {"type": "integer", "minimum": 1},
        }
    },
}
_BODY_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorOut, "description": "The request body exceeds 1 MiB"},
    415: {"model": ErrorOut, "description": "The body is not sent as `application/json`"},
}
_WAITING_READ_RESPONSES: dict[int | str, dict[str, Any]] = {
    504: {
        "model": ErrorOut,
        "description": "The read model has not applied `min_position` within the wait",
    },
}


def create_app(services: Any = None, *, api_only: bool = False) -> FastAPI:
    """Build the API. With ``services`` (tests), the caller starts and closes them.

    ``api_only`` (the API processes of ``ledger serve``): the lifespan starts the listener only;
    the projection runners and the job worker run in processes of their own.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if services is not None:
            app.state.services = services
            async with _async_reads(app, services):
                yield
            return
        from adapters.bootstrap import bootstrap

        built = bootstrap()
        try:
            built.start_listener()
            if not api_only:
                built.start_runners()
                built.start_worker()
            app.state.services = built
            async with _async_reads(app, built):
                yield
        finally:
            built.close()

    app = FastAPI(
        title="Commerce Ledger",
        version="0.1.0",
        description="Event-sourced ledger of customers, orders and payments. Amounts are "
        "integers of minor units; errors share one shape (see `ErrorOut`).",
        lifespan=lifespan,
        default_response_class=OrjsonResponse,
        docs_url="/docs",
        responses=_ERROR_RESPONSES,
    )
    if services is not None:
        # Also usable without entering the lifespan (a TestClient outside ``with``).
        app.state.services = services
    install_error_handlers(app)
    app.add_middleware(BodySizeLimitMiddleware, size_max_bytes=REQUEST_BODY_SIZE_MAX_BYTES)
    app.add_middleware(RequestMetricsMiddleware)
    app.include_router(health.router)
    app.include_router(tenants.router)
    app.include_router(api_keys.router)
    app.include_router(customers.router)
    app.include_router(orders.router)
    app.include_router(disputes.router)
    app.include_router(sandbox.router)
    app.include_router(reports.router)
    app.include_router(gateways.router)
    app.include_router(mrr.router)
    app.include_router(plans.router)
    app.include_router(subscriptions.router)
    app.include_router(subscriptions.policy_router)
    app.include_router(billing.router)
    app.include_router(commission_plans.router)
    app.include_router(distributors.router)
    document_route_statuses(app)
    return app


@asynccontextmanager
async def _async_reads(app: FastAPI, services: Any) -> AsyncIterator[None]:
    """The read routes' async pool, open on this app's event loop while it serves."""
    factory = getattr(services, "async_reads", None)
    if factory is None:  # services without one (fakes): the routes read through the views
        yield
        return
    reads = factory()
    await reads.open()
    app.state.async_reads = reads
    try:
        yield
    finally:
        app.state.async_reads = None
        await reads.close()


def document_route_statuses(app: FastAPI) -> None:
    """Add the statuses only some routes return: 413/415 with a body, 504 where reads wait.

    Done on the generated document (``app.openapi`` caches its result), so it holds for routes
    added by any router.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                _add_statuses(operation)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _add_statuses(operation: dict[str, Any]) -> None:
    responses = operation.get("responses", {})
    error_content = responses.get("422", {}).get("content")
    if error_content is None:
        return
    extra: dict[int | str, dict[str, Any]] = {}
    if "requestBody" in operation:
        extra.update(_BODY_ERROR_RESPONSES)
    if any(param.get("name") == "min_position" for param in operation.get("parameters", [])):
        extra.update(_WAITING_READ_RESPONSES)
    for status, response in extra.items():
        responses.setdefault(
            str(status), {"description": response["description"], "content": error_content}
        )


class BodySizeLimitMiddleware:
    """413 for a request body above the limit, declared or streamed, in the one error shape.

    (FastAPI's own ``max_body_size`` answers in plain text when Content-Length is too large.)
    """

    def __init__(self, app: ASGIApp, size_max_bytes: int) -> None:
        self.app = app
        self.size_max_bytes = size_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.size_max_bytes:
            response = error_response(
                413,
                "invalid_request_error",
                "request_too_large",
                f"a request body has at most {self.size_max_bytes} bytes",
            )
            await response(scope, receive, send)
            return
        received_bytes = 0

        async def receive_counting() -> Message:
            nonlocal received_bytes
            message = await receive()
            received_bytes += len(message.get("body", b""))
            if received_bytes > self.size_max_bytes:
                # Raised inside the route's body read, rendered by the HTTPException handler.
                raise HTTPException(413, f"a request body has at most {self.size_max_bytes} bytes")
            return message

        await self.app(scope, receive_counting, send)


class RequestMetricsMiddleware:
    """Request latency per route template (not per URL, so ids do not explode the labels).

    Pure ASGI: Starlette's ``BaseHTTPMiddleware`` would run each request through a task, a
    stream and a copy of the response.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees if the application raises before answering

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            # The router records the matched route in the scope it was given (this one).
            route = scope.get("route")
            HTTP_REQUESTS.labels(
                scope["method"], getattr(route, "path", "unmatched"), str(status)
            ).observe(time.perf_counter() - started)


def app_factory() -> FastAPI:
    """For ``uvicorn --factory api.app:app_factory``: bootstraps from ``LEDGER_*`` settings."""
    return create_app()
