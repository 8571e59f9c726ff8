"""The one map from errors to HTTP responses, and the one error shape.

Every failure leaves the API as ``{"error": {"type", "code", "message", "param"}}``:

- ``type`` is the family a client branches on: ``invalid_request_error`` (fix the request),
  ``authentication_error`` (401), ``permission_error`` (403), ``idempotency_error`` (409, the key
  was used for another request), ``conflict_error`` (409, a concurrent write; retry),
  ``timeout_error`` (504, a read model is behind) and ``api_error`` (500, our fault; 503 with
  ``Retry-After`` when PostgreSQL cannot be reached, code ``service_unavailable``).
- ``code`` is the stable machine name (``refund_exceeds_captured``); ``param`` names the input to
  blame as a dotted path (``lines.0.quantity``) or is null.

Submitted values are never echoed back (pydantic's ``input`` is dropped), so a card number cannot
leak through an error, and unexpected exceptions are logged here and answered without a trace.
"""

from __future__ import annotations

import logging
from typing import Any

import eventsourcing.persistence
import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.schemas import OrjsonResponse
from application.access import PermissionDenied, TenantAlreadyExists
from application.commands import ConcurrentModification, GatewayOutcomeUnknown
from application.idempotency import (
    IdempotencyKeyInProgress,
    IdempotencyKeyReused,
    InvalidIdempotencyKey,
)
from application.payments import OperationDeclined, RefundDeclined
from domain.customer import PaymentMethodNotFound
from domain.errors import DomainError, InvalidInput, InvalidTransition, NotFound

logger = logging.getLogger(__name__)

INVALID_REQUEST = "invalid_request_error"

# Most specific first: the first class an error is an instance of decides its status and type.
DOMAIN_ERROR_STATUSES: tuple[tuple[type[DomainError], int, str], ...] = (
    (IdempotencyKeyReused, 409, "idempotency_error"),
    (IdempotencyKeyInProgress, 409, "idempotency_error"),
    # The gateway did not answer: recorded as unknown; a retry with the same key learns it.
    (GatewayOutcomeUnknown, 502, "api_error"),
    (RefundDeclined, 402, "card_error"),
    (OperationDeclined, 402, "card_error"),
    (InvalidIdempotencyKey, 400, INVALID_REQUEST),
    (ConcurrentModification, 409, "conflict_error"),
    (TenantAlreadyExists, 409, INVALID_REQUEST),
    (PermissionDenied, 403, "permission_error"),
    # A payment method named in a body that does not exist: not found, like a customer id there.
    (PaymentMethodNotFound, 404, INVALID_REQUEST),
    (NotFound, 404, INVALID_REQUEST),
    (InvalidInput, 422, INVALID_REQUEST),
    (InvalidTransition, 409, INVALID_REQUEST),
    (DomainError, 400, INVALID_REQUEST),
)

# PostgreSQL unreachable (connection refused or lost, no pooled connection within the pool's
# timeout, a lock or statement timeout): the request may succeed if retried shortly. psycopg_pool's
# ``PoolTimeout`` and ``TooManyRequests`` are ``psycopg.OperationalError``s; eventsourcing
# re-raises psycopg's errors as its own ``OperationalError`` and ``InterfaceError``.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    eventsourcing.persistence.OperationalError,
    eventsourcing.persistence.InterfaceError,
)
RETRY_AFTER_S = 1

# Fields whose pattern stands for a domain rule: the same code as the domain's own check.
PATTERN_ERROR_CODES = {
    "email": "invalid_email",
    "id": "invalid_tenant_id",
    "from": "invalid_month",  # the MRR report's months (other reports' dates have no pattern)
    "to": "invalid_month",
}

HTTP_STATUS_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
}


class ApiError(Exception):
    """A failure the API itself names (authentication, cursors, timeouts)."""

    def __init__(
        self, status: int, type: str, code: str, message: str, *, param: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.code = code
        self.message = message
        self.param = param


def error_response(
    status: int,
    type: str,
    code: str,
    message: str,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> OrjsonResponse:
    body = {"error": {"type": type, "code": code, "message": message, "param": param}}
    return OrjsonResponse(body, status_code=status, headers=headers)


def domain_status(error: DomainError) -> tuple[int, str]:
    for error_class, status, type in DOMAIN_ERROR_STATUSES:
        if isinstance(error, error_class):
            return status, type
    raise AssertionError("DomainError itself is the last entry")  # pragma: no cover


async def handle_domain_error(request: Request, error: Exception) -> OrjsonResponse:
    assert isinstance(error, DomainError)
    status, type = domain_status(error)
    # The key that learns a lost gateway answer when the request is sent again with it.
    key = getattr(error, "idempotency_key", None)
    headers = {"Idempotency-Key": key} if key else None
    return error_response(status, type, error.code, error.message, error.param, headers)


async def handle_api_error(request: Request, error: Exception) -> OrjsonResponse:
    assert isinstance(error, ApiError)
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return error_response(error.status, error.type, error.code, error.message, error.param, headers)


async def handle_unavailable(request: Request, error: Exception) -> OrjsonResponse:
    logger.warning(
        "database unavailable in %s %s: %s: %s",
        request.method,
        request.url.path,
        type(error).__name__,
        error,
    )
    return error_response(
        503,
        "api_error",
        "service_unavailable",
        "the ledger's database cannot be reached; retry shortly",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def handle_validation_error(request: Request, error: Exception) -> OrjsonResponse:
    assert isinstance(error, RequestValidationError)
    errors = list(error.errors())
    first = errors[0] if errors else {"type": "value_error", "loc": (), "msg": "invalid request"}
    location = tuple(first.get("loc", ()))
    if first["type"] == "json_invalid":
        return error_response(400, INVALID_REQUEST, "invalid_json", "the body is not valid JSON")
    if location == ("query", "cursor"):
        return error_response(
            400,
            INVALID_REQUEST,
            "invalid_cursor",
            "the cursor is not one this API returned",
            "cursor",
        )
    if location[:1] == ("header",) and str(location[-1]).lower() == "idempotency-key":
        message = (
            "an idempotency key has 1 to 255 printable ASCII characters, "
            "not starting or ending with a space"
        )
        return error_response(
            400, INVALID_REQUEST, "invalid_idempotency_key", message, "Idempotency-Key"
        )
    if location[:1] == ("path",):
        # A path id that cannot be an id names nothing: the same answer as an unknown id.
        name = str(location[-1]).removesuffix("_id")
        return error_response(404, INVALID_REQUEST, f"{name}_not_found", f"no {name} with this id")
    if location == ("body",) and first["type"] != "missing":
        # The body parsed, but not as a JSON object: usually the wrong Content-Type.
        content_type = request.headers.get("content-type", "")
        if "json" not in content_type:
            message = "send the body as JSON with 'Content-Type: application/json'"
            return error_response(415, INVALID_REQUEST, "unsupported_media_type", message)
        return error_response(
            422, INVALID_REQUEST, "validation_error", "the body must be a JSON object"
        )
    param = ".".join(str(part) for part in location[1:]) or None
    code, message = _describe(first, param)
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problems)"
    return error_response(422, INVALID_REQUEST, code, message, param)


def _describe(error: Any, param: str | None) -> tuple[str, str]:
    """A code and message for one pydantic error, never quoting the submitted value."""
    kind = error["type"]
    if kind == "missing":
        return "parameter_missing", "a JSON body is required" if param is None else "required"
    if kind == "extra_forbidden":
        return "parameter_unknown", "this field is not accepted"
    if kind in ("greater_than_equal", "less_than_equal") and (param or "").endswith("_minor"):
        return "invalid_amount", f"an amount of minor units: {error['msg'].lower()}"
    if kind == "string_pattern_mismatch":
        # The pattern is in /openapi.json; the domain's code where the domain names the error.
        code = PATTERN_ERROR_CODES.get(param or "", "validation_error")
        return code, "this value does not have the documented format"
    if kind.startswith("uuid"):
        # pydantic's UUID messages quote the offending character.
        return "validation_error", "a UUID is expected"
    return "validation_error", str(error["msg"])


async def handle_http_exception(request: Request, error: Exception) -> OrjsonResponse:
    assert isinstance(error, StarletteHTTPException)
    status = error.status_code
    if status == 401:
        type = "authentication_error"
    elif status == 403:
        type = "permission_error"
    elif status >= 500:
        type = "api_error"
    else:
        type = INVALID_REQUEST
    code = HTTP_STATUS_CODES.get(status, f"http_{status}")
    message = error.detail if isinstance(error.detail, str) else code.replace("_", " ")
    return error_response(status, type, code, message, headers=dict(error.headers or {}))


class UnexpectedErrorMiddleware:
    """Answer an unexpected exception with a generic 500 and log it (once, with its trace)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response_started = False

        async def send_tracking_start(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracking_start)
        except Exception:
            logger.exception("unexpected error in %s %s", scope["method"], scope["path"])
            if response_started:
                raise
            response = error_response(
                500, "api_error", "internal_error", "an unexpected error occurred; it was logged"
            )
            await response(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, handle_domain_error)
    app.add_exception_handler(ApiError, handle_api_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, handle_http_exception)
    for error_class in UNAVAILABLE_ERRORS:
        app.add_exception_handler(error_class, handle_unavailable)
    app.add_middleware(UnexpectedErrorMiddleware)
