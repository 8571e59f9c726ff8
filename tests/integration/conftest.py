from __future__ import annotations

from uuid import UUID

import pytest

from adapters.bootstrap import Services


class Shop:
    """Drives the ledger like a merchant's back office would, through commands only."""

    def __init__(self, services: Services, tenant_id: str = "acme") -> None:
        self.ledger = services.ledger
        self.tenant_id = tenant_id

    def customer(self, currency: str = "USD", card: str = "4242424242424242") -> tuple[UUID, str]:
        customer = self.ledger.register_customer(
            tenant_id=self.tenant_id,
            email="buyer@example.com",
            name="Buyer",
            country="US",
            currency=currency,
        )
        customer_id = UUID(customer.body["id"])
        method = self.ledger.attach_payment_method(
            tenant_id=self.tenant_id,
            customer_id=customer_id,
            card_number=card,
            exp_month=12,
            exp_year=2031,
        )
        return customer_id, method.body["id"]

    def paid_order(
        self, customer_id: UUID, method_id: str, amount_minor: int = 2500, currency: str = "USD"
    ):
        return self.ledger.place_order(
            tenant_id=self.tenant_id,
            customer_id=customer_id,
            currency=currency,
            lines=[{"sku": "SKU-1", "quantity": 1, "unit_price_minor": amount_minor}],
            payment={"payment_method_id": method_id, "mode": "purchase"},
        )


@pytest.fixture
def shop(services: Services) -> Shop:
    return Shop(services)
