"""Chargeback commands and one-click upsells on in-memory persistence; old ``Placed`` events."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import pytest

from application.commands import ConcurrentModification
from application.idempotency import IdempotencyKeyReused
from application.ledger import Ledger
from application.orders import OrderNotFound
from domain.customer import PaymentMethodNotFound
from domain.order import (
    Order,
    OrderDisputed,
    OrderNotDisputable,
    OrderStatus,
    ParentOrderNotPaid,
    PaymentInProgress,
)
from tests.unit.application.test_ledger import (
    GENERIC_DECLINE,
    LINES,
    SUCCEEDS,
    TENANT_A,
    TENANT_B,
    TOTAL_MINOR,
    CountingGateway,
    attach_card,
    build_ledger,
    register,
)
from tests.unit.application.test_upcasting import as_version_1, stored_events_of

UPSELL_LINES = [{"sku": "BOOST", "quantity": 1, "unit_price_minor": 900}]


@pytest.fixture
def gateway() -> CountingGateway:
    return CountingGateway()


@pytest.fixture
def app(gateway: CountingGateway) -> Ledger:
    return build_ledger(gateway)


def paid_order(app: Ledger, tenant_id: str = TENANT_A) -> tuple[UUID, UUID, dict[str, Any]]:
    customer_id = register(app, tenant_id)
    method_id = attach_card(app, customer_id, SUCCEEDS, tenant_id=tenant_id)
    body = app.place_order(
        tenant_id=tenant_id,
        customer_id=customer_id,
        currency="GBP",
        lines=LINES,
        payment={"payment_method_id": str(method_id)},
    ).body
    assert body["status"] == "paid"
    return customer_id, method_id, body


def test_a_chargeback_opened_with_one_key_twice_is_opened_once(app: Ledger) -> None:
    _customer_id, _method_id, order = paid_order(app)
    order_id = UUID(order["id"])

    def open_it(amount_minor: int) -> Any:
        return app.open_chargeback(
            tenant_id=TENANT_A,
            order_id=order_id,
            amount_minor=amount_minor,
            reason_code="4837",
            idempotency_key="cb-key",
        )

    first, again = open_it(1000), open_it(1000)

    assert again.replayed and again.body == first.body
    assert len(app.get_order(TENANT_A, order_id).chargebacks) == 1
    with pytest.raises(IdempotencyKeyReused):
        open_it(1001)


def test_a_chargeback_is_resolved_and_refunds_wait_for_it(app: Ledger) -> None:
    _customer_id, _method_id, order = paid_order(app)
    order_id = UUID(order["id"])
    opened = app.open_chargeback(
        tenant_id=TENANT_A, order_id=order_id, amount_minor=TOTAL_MINOR, reason_code="10.4"
    ).body
    with pytest.raises(OrderDisputed):
        app.refund_order(tenant_id=TENANT_A, order_id=order_id, amount_minor=1)
    with pytest.raises(OrderNotDisputable):
        app.open_chargeback(
            tenant_id=TENANT_A, order_id=order_id, amount_minor=1, reason_code="10.4"
        )

    lost = app.resolve_chargeback(
        tenant_id=TENANT_A,
        order_id=order_id,
        chargeback_id=opened["payment"]["chargebacks"][0]["id"],
        outcome="lost",
    ).body

    assert (lost["status"], lost["charged_back_minor"]) == ("charged_back", TOTAL_MINOR)
    assert app.get_order(TENANT_A, order_id).status is OrderStatus.CHARGED_BACK


def test_another_tenant_cannot_charge_back_an_order(app: Ledger) -> None:
    _customer_id, _method_id, order = paid_order(app)
    with pytest.raises(OrderNotFound):
        app.open_chargeback(
            tenant_id=TENANT_B, order_id=UUID(order["id"]), amount_minor=1, reason_code="10.4"
        )


def test_an_upsell_purchases_with_the_card_that_paid_the_parent(
    app: Ledger, gateway: CountingGateway
) -> None:
    customer_id, method_id, parent = paid_order(app)

    upsell = app.place_upsell(
        tenant_id=TENANT_A, parent_order_id=UUID(parent["id"]), lines=UPSELL_LINES
    ).body

    assert (upsell["status"], upsell["total_minor"], upsell["currency"]) == ("paid", 900, "GBP")
    assert (upsell["parent_order_id"], upsell["customer_id"]) == (parent["id"], str(customer_id))
    tokens = [purchase["token"] for purchase in gateway.purchases]
    assert len(tokens) == 2 and tokens[0] == tokens[1]
    order = app.get_order(TENANT_A, UUID(upsell["id"]))
    assert (order.parent_order_id, order.source) == (UUID(parent["id"]), "upsell")
    assert app.attempts(order)[0].payment_method_id == method_id


def test_an_upsell_may_name_another_card_of_the_customer_but_not_anothers(app: Ledger) -> None:
    customer_id, _method_id, parent = paid_order(app)
    declining = attach_card(app, customer_id, GENERIC_DECLINE)
    _other_customer, stranger_card, _order = paid_order(app)

    declined = app.place_upsell(
        tenant_id=TENANT_A,
        parent_order_id=UUID(parent["id"]),
        lines=UPSELL_LINES,
        payment_method_id=declining,
    ).body

    assert declined["status"] == "declined"
    with pytest.raises(PaymentMethodNotFound):
        app.place_upsell(
            tenant_id=TENANT_A,
            parent_order_id=UUID(parent["id"]),
            lines=UPSELL_LINES,
            payment_method_id=stranger_card,
        )


def test_an_upsell_of_an_unpaid_parent_raises_and_charges_nothing(
    app: Ledger, gateway: CountingGateway
) -> None:
    customer_id = register(app)
    unpaid = app.place_order(
        tenant_id=TENANT_A, customer_id=customer_id, currency="GBP", lines=LINES
    ).body

    with pytest.raises(ParentOrderNotPaid):
        app.place_upsell(tenant_id=TENANT_A, parent_order_id=UUID(unpaid["id"]), lines=UPSELL_LINES)
    with pytest.raises(OrderNotFound):
        app.place_upsell(tenant_id=TENANT_A, parent_order_id=uuid4(), lines=UPSELL_LINES)
    assert gateway.purchases == []


def open_chargeback(app: Ledger, order_id: UUID) -> Any:
    return app.open_chargeback(
        tenant_id=TENANT_A, order_id=order_id, amount_minor=TOTAL_MINOR, reason_code="4837"
    )


def test_an_upsell_is_recorded_on_its_parent_in_its_intent(app: Ledger) -> None:
    _customer_id, _method_id, parent = paid_order(app)
    parent_id = UUID(parent["id"])

    upsell = app.place_upsell(tenant_id=TENANT_A, parent_order_id=parent_id, lines=UPSELL_LINES)

    held = app.get_order(TENANT_A, parent_id)
    assert held.upsell_order_ids == [UUID(upsell.body["id"])]
    assert held.status is OrderStatus.PAID
    assert [type(e).__name__ for e in app.repository.event_store.get(parent_id)][-1] == (
        "UpsellPlaced"
    )


def test_a_chargeback_saved_while_an_upsell_reads_its_parent_stops_the_upsell(
    app: Ledger, gateway: CountingGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chargeback is saved after the upsell checked the parent, before its intent is saved:
    the intent conflicts on the parent's version and the card is not charged again."""
    _customer_id, _method_id, parent = paid_order(app)
    parent_id = UUID(parent["id"])
    get_customer = app.get_customer

    def chargeback_meanwhile(tenant_id: str, customer_id: UUID) -> Any:
        monkeypatch.setattr(app, "get_customer", get_customer)
        open_chargeback(app, parent_id)
        return get_customer(tenant_id, customer_id)

    monkeypatch.setattr(app, "get_customer", chargeback_meanwhile)

    with pytest.raises(ConcurrentModification):
        app.place_upsell(tenant_id=TENANT_A, parent_order_id=parent_id, lines=UPSELL_LINES)
    assert len(gateway.purchases) == 1  # the parent's only
    assert app.get_order(TENANT_A, parent_id).status is OrderStatus.DISPUTED
    with pytest.raises(ParentOrderNotPaid):  # a retry finds the parent disputed
        app.place_upsell(tenant_id=TENANT_A, parent_order_id=parent_id, lines=UPSELL_LINES)
    assert len(gateway.purchases) == 1


def test_a_chargeback_waits_while_an_upsell_of_its_order_is_at_the_gateway(
    app: Ledger, gateway: CountingGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    _customer_id, _method_id, parent = paid_order(app)
    parent_id = UUID(parent["id"])
    refused: list[Exception] = []
    purchase = gateway.purchase

    def chargeback_during_the_charge(**request: Any) -> Any:
        try:
            open_chargeback(app, parent_id)
        except PaymentInProgress as error:
            refused.append(error)
        return purchase(**request)

    monkeypatch.setattr(gateway, "purchase", chargeback_during_the_charge)
    upsell = app.place_upsell(tenant_id=TENANT_A, parent_order_id=parent_id, lines=UPSELL_LINES)
    monkeypatch.setattr(gateway, "purchase", purchase)

    assert upsell.body["status"] == "paid"
    assert len(refused) == 1 and not app.get_order(TENANT_A, parent_id).chargebacks
    # Once the upsell has its outcome, the chargeback is opened.
    assert open_chargeback(app, parent_id).body["status"] == "disputed"


def test_a_version_1_placed_loads_as_an_order_without_a_parent() -> None:
    app = build_ledger()
    order = Order.place(tenant_id="t", customer_id=uuid4(), currency="USD", lines=LINES)
    app.save(order)
    stored = stored_events_of(app, order.id)[0]

    event = app.mapper.to_domain_event(as_version_1(stored, ("parent_order_id",)))

    assert isinstance(event, Order.Placed)
    assert (event.parent_order_id, event.total_minor) == (None, TOTAL_MINOR)
    assert event.mutate(None).parent_order_id is None
