"""E2E fixtures: the HTTP API over a running system on real PostgreSQL and Redis.

``Merchant`` drives the API with one tenant's key the way an integrating client would; the
assertion helpers pin the one error shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from adapters.bootstrap import Services
from api.app import create_app

pytestmark = pytest.mark.e2e

GOOD_CARD = "4242424242424242"
GENERIC_DECLINE_CARD = "4000000000000002"
INSUFFICIENT_FUNDS_CARD = "4000000000009995"


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is the one error shape with this status and code; returns the error."""
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"type", "code", "message", "param"}
    assert error["code"] == code, error
    assert isinstance(error["type"], str) and isinstance(error["message"], str)
    return error


def position(response: httpx.Response) -> int:
    return int(response.headers["X-Ledger-Position"])


class Merchant:
    """One tenant's back office, calling the API with one key."""

    def __init__(self, client: TestClient, key: str) -> None:
        self.client = client
        self.key = key

    def post(self, path: str, json: Any = None, **kwargs: Any) -> httpx.Response:
        headers = {**auth(self.key), **kwargs.pop("headers", {})}
        return self.client.post(path, json=json, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**auth(self.key), **kwargs.pop("headers", {})}
        return self.client.get(path, headers=headers, **kwargs)

    def customer(self, currency: str = "USD", **fields: Any) -> dict[str, Any]:
        body = {
            "email": "buyer@example.com",
            "name": "Ada Buyer",
            "country": "US",
            "currency": currency,
            **fields,
        }
        response = self.post("/v1/customers", body)
        assert response.status_code == 201, response.text
        return response.json()

    def card(self, customer_id: str, card_number: str = GOOD_CARD) -> dict[str, Any]:
        body = {"card_number": card_number, "exp_month": 12, "exp_year": 2031, "cvc": "123"}
        response = self.post(f"/v1/customers/{customer_id}/payment-methods", body)
        assert response.status_code == 201, response.text
        return response.json()

    def place_order(
        self,
        customer_id: str,
        method_id: str | None = None,
        *,
        unit_price_minor: int = 2500,
        quantity: int = 1,
        currency: str = "USD",
        **kwargs: Any,
    ) -> httpx.Response:
        body: dict[str, Any] = {
            "customer_id": customer_id,
            "currency": currency,
            "lines": [{"sku": "SKU-1", "quantity": quantity, "unit_price_minor": unit_price_minor}],
        }
        if method_id is not None:
            body["payment"] = {"payment_method_id": method_id, "mode": "purchase"}
        return self.post("/v1/orders", body, **kwargs)

    def paid_order(self, customer_id: str, method_id: str, **kwargs: Any) -> dict[str, Any]:
        response = self.place_order(customer_id, method_id, **kwargs)
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "paid"
        return response.json()


@pytest.fixture
def client(running_services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(running_services)) as test_client:
        yield test_client


@pytest.fixture
def key_of(running_services: Services):
    """``key_of(tenant, role)`` creates an API key."""

    def create(tenant_id: str, role: str = "admin") -> str:
        return running_services.access.create_key(tenant_id, role)

    return create


@pytest.fixture
def acme(client: TestClient, key_of) -> Merchant:
    return Merchant(client, key_of("acme", "admin"))


@pytest.fixture
def globex(client: TestClient, key_of) -> Merchant:
    return Merchant(client, key_of("globex", "admin"))
