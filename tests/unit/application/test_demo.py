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


def test_loading_the_demo_twice_records_nothing_the_second_time():
    ledger = _ledger()
    load_demo(ledger, customers=15, seed=3)
    head = ledger.recorder.max_notification_id()
    load_demo(ledger, customers=15, seed=3)
    assert ledger.recorder.max_notification_id() == head
