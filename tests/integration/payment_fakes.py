"""What the payment tests share: the configured gateway with injected faults, and a purchase
request of a customer with a card on file."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from adapters.bootstrap import Services
from application.ports import GatewayOutcome

TENANT = "acme"


class FaultyGateway:
    """The configured gateway; ``before`` and ``after`` run around the processor's action on the
    next money call only (a dead network before it acts, a lost answer after it did)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.book = inner, inner.name, inner.book
        self.before: Any = None
        self.after: Any = None
        self.purchases = 0

    def _once(self, method: str, request: dict[str, Any]) -> GatewayOutcome:
        before, after = self.before, self.after
        self.before = self.after = None
        if before:
            before()
        outcome: GatewayOutcome = getattr(self.inner, method)(**request)
        if after:
            after()
        return outcome

    def purchase(self, **request: Any) -> GatewayOutcome:
        self.purchases += 1
        return self._once("purchase", request)

    def authorize(self, **request: Any) -> GatewayOutcome:
        return self._once("authorize", request)

    def capture(self, **request: Any) -> GatewayOutcome:
        return self._once("capture", request)

    def void(self, **request: Any) -> GatewayOutcome:
        return self._once("void", request)

    def refund(self, **request: Any) -> GatewayOutcome:
        return self._once("refund", request)


def install_faulty_gateway(services: Services) -> FaultyGateway:
    faulty = FaultyGateway(services.ledger.gateway)
    services.ledger.gateway = faulty  # type: ignore[assignment]
    return faulty


def timeout() -> None:
    raise TimeoutError("no answer from the processor")


def killed() -> None:
    raise SystemExit("the process died")  # not an Exception: nothing after it is saved


def purchase_request(services: Services, key: str | None = None) -> dict[str, Any]:
    """A purchase of 4,200 minor units by a new customer with a good card on file."""
    ledger = services.ledger
    customer = ledger.register_customer(
        tenant_id=TENANT, email="a@example.com", name="Ada", country="US", currency="USD"
    ).body
    method = ledger.attach_payment_method(
        tenant_id=TENANT,
        customer_id=UUID(customer["id"]),
        card_number="4242424242424242",
        exp_month=12,
        exp_year=datetime.now(UTC).year + 2,
    ).body
    return {
        "tenant_id": TENANT,
        "customer_id": UUID(customer["id"]),
        "currency": "USD",
        "lines": [{"sku": "MUG", "quantity": 1, "unit_price_minor": 4200}],
        "payment": {"payment_method_id": method["id"], "mode": "purchase"},
        "idempotency_key": key,
    }


def charges(services: Services) -> list[Any]:
    """Money-taking transactions in the processor's own books."""
    assert services.sandbox_book is not None
    return [
        t for _, t in services.sandbox_book.transactions(TENANT) if t.kind in ("charge", "capture")
    ]
