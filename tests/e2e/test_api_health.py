"""Probes and metrics answer without a key."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.e2e


def test_liveness_and_readiness(client: TestClient) -> None:
    live = client.get("/healthz")
    ready = client.get("/readyz")

    assert live.status_code == 200 and live.json() == {"status": "ok"}
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == body["database"] == body["redis"] == "ok"
    assert set(body["projections"]) >= {"order_summaries", "customer_summaries"}


def test_readiness_fails_when_redis_is_unreachable(
    client: TestClient, running_services, monkeypatch
) -> None:
    def unreachable() -> None:
        raise ConnectionError("redis is down")

    monkeypatch.setattr(running_services.broker.client, "ping", unreachable)

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert response.json()["database"] == "ok"
    assert response.json()["redis"] == "error: ConnectionError"


def test_metrics_are_exported_for_prometheus(client: TestClient) -> None:
    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "ledger_projection_lag_events" in response.text


def test_the_openapi_document_lists_the_routes(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()

    assert {"/v1/customers", "/v1/orders", "/v1/orders/{order_id}/refunds"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 200
