"""A gateway's account at the sandbox processor is scoped to its tenant: whatever
``processor_account`` a tenant names (another tenant's id, another tenant's gateway id), its
charges land in its own books and show only in its own ``GET /v1/sandbox/transactions``."""

from __future__ import annotations

from typing import Any

from adapters.bootstrap import Services
from tests.e2e.conftest import Merchant
from tests.e2e.test_api_gateways import buyer, gateway_body, register


def book_rows(services: Services, account_id: str) -> list[Any]:
    assert services.sandbox_book is not None
    return [t for _, t in services.sandbox_book.transactions(account_id, limit=10_000)]


def listing(merchant: Merchant) -> list[dict[str, Any]]:
    response = merchant.get("/v1/sandbox/transactions", params={"limit": 100})
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


def test_a_tenant_cannot_route_its_charges_into_another_tenants_processor_account(
    acme: Merchant, globex: Merchant, running_services: Services
) -> None:
    globex_gateway = register(globex, "globex-main")
    customer_id, method_id = buyer(acme)
    acme.paid_order(customer_id, method_id)  # no gateway yet: acme's own default account
    sneaky = []
    for target in ("globex", globex_gateway["id"]):
        body = gateway_body("sneaky-" + target[:8], processor_account=target, weight=100)
        response = acme.post("/v1/gateways", body)
        assert response.status_code == 201, response.text
        sneaky.append(response.json())
        order = acme.paid_order(customer_id, method_id)
        assert order["payment"]["history"][-1]["gateway_id"] == response.json()["id"]
        patched = acme.client.patch(
            f"/v1/gateways/{response.json()['id']}",
            json={"enabled": False},
            headers={"Authorization": f"Bearer {acme.key}"},
        )
        assert patched.status_code == 200, patched.text

    assert listing(globex) == []
    assert book_rows(running_services, "globex") == []
    assert book_rows(running_services, globex_gateway["id"]) == []
    assert [(t["account_id"], t["kind"]) for t in listing(acme)] == [
        ("acme", "charge"),
        ("acme/globex", "charge"),
        (f"acme/{globex_gateway['id']}", "charge"),
    ]
    # globex's own gateway charges its own scoped account, listed to globex only.
    globex_customer, globex_method = buyer(globex)
    globex.paid_order(globex_customer, globex_method)
    assert [(t["account_id"], t["kind"]) for t in listing(globex)] == [
        (f"globex/{globex_gateway['id']}", "charge")
    ]
    assert len(listing(acme)) == 3
