"""The demo data set loads through the commands and is idempotent."""

from __future__ import annotations

from adapters.bootstrap import bootstrap_ledger
from adapters.gateways.sandbox import SandboxGateway, SandboxVault
from application.demo import load_demo
from application.ledger import Ledger


def _ledger() -> Ledger:
    return bootstrap_ledger(
        vault=SandboxVault(),
        gateway=SandboxGateway(),
        fingerprint_secret=b"demo",
    )


def test_the_demo_loads_customers_orders_refunds_and_cancellations():
    ledger = _ledger()
    counts = load_demo(ledger, customers=40, seed=7)
    assert counts["customers"] == 40
    assert counts["orders"] > 20
    assert counts["refunds"] > 0
    assert counts["cancellations"] > 0


def test_the_demo_shows_gateways_cascades_captures_chargebacks_and_upsells():
    ledger = _ledger()
    counts = load_demo(ledger, customers=150, seed=11)
    assert counts["gateways"] == 3
    assert counts["captures"] + counts["voids"] > 0
    assert counts["chargebacks"] > 0
    assert counts["upsells"] > 0
    assert counts["plans"] == 12 and counts["subscriptions"] > 20
    gateways = {gateway["name"]: gateway for gateway in ledger.list_gateways("default")}
    assert set(gateways) == {"Northwind Merchant Services", "Harbor Payments", "Legacy Acquirer"}
    # Every card the legacy account tried was declined, then cascaded to another gateway.
    cascaded = [
        order
        for order in _orders(ledger)
        if len({entry["gateway_id"] for entry in order.payment_history}) > 1
    ]
    assert cascaded


def _orders(ledger: Ledger) -> list:
    return [
        ledger.repository.get(item.originator_id)
        for item in ledger.recorder.select_notifications(start=1, limit=100_000)
        if item.topic.endswith("Order.Placed")
    ]


def test_loading_the_demo_twice_records_nothing_the_second_time():
    ledger = _ledger()
    load_demo(ledger, customers=15, seed=3)
    head = ledger.recorder.max_notification_id()
    load_demo(ledger, customers=15, seed=3)
    assert ledger.recorder.max_notification_id() == head
