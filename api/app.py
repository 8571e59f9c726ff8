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

from fastapi import FastAPI, Request, Response
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.metrics import HTTP_REQUESTS
from api.errors import error_response, install_error_handlers
from api.routers import customers, health, orders, tenants
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


def create_app(services: Any = None) -> FastAPI:
    """Build the API. With ``services`` (tests), the caller starts and closes them."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if services is not None:
            app.state.services = services
            yield
            return
        from adapters.bootstrap import bootstrap

        built = bootstrap()
        try:
            built.start_listener()
            built.start_runners()
            built.start_worker()
            app.state.services = built
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
    app.middleware("http")(_record_latency)
    app.include_router(health.router)
    app.include_router(tenants.router)
    app.include_router(customers.router)
    app.include_router(orders.router)
    return app


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


async def _record_latency(request: Request, call_next: Any) -> Response:
    """Request latency per route template (not per URL, so ids do not explode the labels)."""
    started = time.perf_counter()
    response = await call_next(request)
    route = request.scope.get("route")
    HTTP_REQUESTS.labels(
        request.method, getattr(route, "path", "unmatched"), str(response.status_code)
    ).observe(time.perf_counter() - started)
    return response


def app_factory() -> FastAPI:
    """For ``uvicorn --factory api.app:app_factory``: bootstraps from ``LEDGER_*`` settings."""
    return create_app()
