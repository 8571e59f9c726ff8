"""The hot reads run on the event loop's async pool and answer exactly as the blocking views do."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.async_reads import AsyncReadModels
from api.app import create_app
from tests.e2e.conftest import Merchant, position

pytestmark = pytest.mark.e2e


def test_reads_on_the_async_pool_answer_byte_for_byte_as_the_blocking_views(
    running_services, key_of, monkeypatch
):
    calls: list[str] = []
    for name in ("order", "orders", "customer"):
        original = getattr(AsyncReadModels, name)

        async def spy(
            self: Any, *args: Any, _name: str = name, _original: Any = original, **kwargs: Any
        ) -> Any:
            calls.append(_name)
            return await _original(self, *args, **kwargs)

        monkeypatch.setattr(AsyncReadModels, name, spy)
    app = create_app(running_services)
    key = key_of("acme", "admin")
    paths: list[tuple[str, dict[str, Any]]] = []
    with TestClient(app) as client:
        acme = Merchant(client, key)
        customer = acme.customer()
        card = acme.card(customer["id"])
        placed = acme.place_order(customer["id"], card["id"])
        assert placed.status_code == 201, placed.text
        at = {"min_position": position(placed)}
        paths = [
            (f"/v1/orders/{placed.json()['id']}", at),
            ("/v1/orders", {**at, "customer_id": customer["id"], "limit": 1}),
            (f"/v1/customers/{customer['id']}", at),
        ]
        on_the_loop = [acme.get(path, params=params) for path, params in paths]
    assert sorted(calls) == ["customer", "order", "orders"]

    # Outside the lifespan (no pool on this loop) the same routes read through the views.
    calls.clear()
    blocking = Merchant(TestClient(app), key)
    through_views = [blocking.get(path, params=params) for path, params in paths]

    assert calls == []
    for fast, slow in zip(on_the_loop, through_views, strict=True):
        assert fast.status_code == slow.status_code == 200, (fast.text, slow.text)
        assert fast.headers["content-type"] == "application/json"
        assert fast.content == slow.content
    # One rendering of a resource: the read model answers as the command did.
    assert on_the_loop[0].json() == placed.json()
    assert on_the_loop[1].json()["data"] == [placed.json()]
    assert on_the_loop[2].json()["order_count"] == 1


def test_an_unknown_id_is_the_one_404_shape_on_the_async_path(acme):
    missing = "00000000-0000-4000-8000-000000000000"
    for path in (f"/v1/orders/{missing}", f"/v1/customers/{missing}"):
        response = acme.get(path)
        assert response.status_code == 404, response.text
        assert set(response.json()["error"]) == {"type", "code", "message", "param"}
