"""The reconciliation service on in-memory persistence: our calls read from the log match the
sandbox's books for every kind of call, and settling goes through the ledger's commands."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest

from adapters.bootstrap import bootstrap_ledger
from adapters.gateways.sandbox import SandboxGateway
from adapters.gateways.sandbox_book import MemorySandboxBook
from application.commands import GatewayOutcomeUnknown
from application.ledger import Ledger
from application.ports import GatewayOutcome
from application.reconciliation import BooksReconciliation, books_reconciliation, processor_books
from domain.payment_attempt import AttemptStatus

TENANT = "acme"
TODAY = datetime.now(UTC).date()


class LosingGateway(SandboxGateway):
    """The sandbox, losing the answer of the next call after acting on it."""

    lose_next = False
    die_next = False

    def _lost(self, outcome: GatewayOutcome) -> GatewayOutcome:
        if self.die_next:
            self.die_next = False
            raise SystemExit("the process died")
        if self.lose_next:
            self.lose_next = False
            raise TimeoutError("the answer was lost")
        return outcome

    def authorize(self, **request: Any) -> GatewayOutcome:
        return self._lost(super().authorize(**request))

    def capture(self, **request: Any) -> GatewayOutcome:
        return self._lost(super().capture(**request))

    def void(self, **request: Any) -> GatewayOutcome:
        return self._lost(super().void(**request))


@pytest.fixture
def gateway() -> LosingGateway:
    return LosingGateway(MemorySandboxBook())


@pytest.fixture
def ledger(gateway: LosingGateway) -> Ledger:
    return bootstrap_ledger(gateway=gateway)


def order(ledger: Ledger, mode: str, card: str = "4242424242424242") -> UUID:
    customer = UUID(
        ledger.register_customer(
            tenant_id=TENANT, email="a@example.com", name="Ada", country="US", currency="USD"
        ).body["id"]
    )
    method = ledger.attach_payment_method(
        tenant_id=TENANT, customer_id=customer, card_number=card, exp_month=12, exp_year=2031
    ).body
    placed = ledger.place_order(
        tenant_id=TENANT,
        customer_id=customer,
        currency="USD",
        lines=[{"sku": "MUG", "quantity": 1, "unit_price_minor": 3000}],
        payment={"payment_method_id": method["id"], "mode": mode},
    )
    return UUID(placed.body["id"])


def test_every_kind_of_call_matches_the_sandbox_books(
    ledger: Ledger, gateway: LosingGateway
) -> None:
    captured = order(ledger, "authorize")
    ledger.capture_order(tenant_id=TENANT, order_id=captured, amount_minor=2000)
    ledger.refund_order(tenant_id=TENANT, order_id=captured, amount_minor=500)
    voided = order(ledger, "authorize")
    ledger.void_order(tenant_id=TENANT, order_id=voided)
    order(ledger, "purchase", card="4000000000000002")  # declined: both sides say so

    result = BooksReconciliation(ledger, gateway.book).report(TENANT, TODAY).result

    assert result.counts["matched"] == 6 and sum(result.counts.values()) == 6
    assert sorted(item.kind for item in result.items) == [
        "authorize",
        "authorize",
        "capture",
        "purchase",
        "refund",
        "void",
    ]


def test_an_unknown_capture_is_settled_by_reconcile_call_and_nothing_moves_twice(
    ledger: Ledger, gateway: LosingGateway
) -> None:
    authorized = order(ledger, "authorize")
    gateway.lose_next = True
    with pytest.raises(GatewayOutcomeUnknown):
        ledger.capture_order(tenant_id=TENANT, order_id=authorized)
    reconciliation = BooksReconciliation(ledger, gateway.book)

    found = reconciliation.report(TENANT, TODAY, settle=True)
    after = reconciliation.report(TENANT, TODAY).result

    [capture] = [item for item in found.result.items if item.kind == "capture"]
    assert (capture.classification.value, capture.settleable) == ("missing_ours", True)
    assert found.resolutions == {capture.key: "resolved"}
    assert after.counts["matched"] == 2 and sum(after.counts.values()) == 2
    assert ledger.repository.get(authorized).captured_minor == 3000
    assert [t.kind for _, t in gateway.book.transactions(TENANT)] == ["authorization", "capture"]


def test_an_unknown_authorization_the_processor_declined_is_settled_as_declined(
    ledger: Ledger, gateway: LosingGateway
) -> None:
    gateway.lose_next = True
    with pytest.raises(GatewayOutcomeUnknown):
        order(ledger, "authorize", card="4000000000009995")
    reconciliation = BooksReconciliation(ledger, gateway.book)

    found = reconciliation.report(TENANT, TODAY, settle=True)

    [item] = found.result.items
    assert (item.classification.value, item.settleable) == ("state_mismatch", True)
    assert found.resolutions == {item.key: "declined"}
    assert ledger.repository.get(item.key).status is AttemptStatus.DECLINED


def test_a_call_still_requested_is_settled_only_once_older_than_the_lease(
    ledger: Ledger, gateway: LosingGateway
) -> None:
    gateway.die_next = True  # the process dies after the processor acted: nothing saved after
    with pytest.raises(SystemExit):
        order(ledger, "authorize")
    young = BooksReconciliation(ledger, gateway.book, lease_s=3600)
    old = BooksReconciliation(ledger, gateway.book, lease_s=0)

    waiting = young.report(TENANT, TODAY, settle=True)
    settled = old.report(TENANT, TODAY, settle=True)

    [item] = waiting.result.items
    assert (item.classification.value, item.ours.state) == ("missing_ours", "requested")
    assert waiting.resolutions == {item.key: "in_flight"}
    assert settled.resolutions == {item.key: "succeeded"}
    assert ledger.repository.get(item.key).status is AttemptStatus.SUCCEEDED


def test_the_books_are_the_sandboxs_or_the_gateways_own_listing(
    gateway: LosingGateway,
) -> None:
    assert processor_books(gateway, gateway.book) is gateway.book
    assert processor_books(object(), None) is None


def test_a_routed_gateways_account_is_read_and_another_tenants_charge_on_it_is_not_ours(
    ledger: Ledger, gateway: LosingGateway
) -> None:
    for tenant_id in (TENANT, "globex"):
        ledger.register_gateway(
            tenant_id=tenant_id,
            config={
                "name": "eu",
                "processor": "sandbox",
                "processor_account": "acct_shared",
                "currencies": ["USD"],
                "card_brands": ["visa", "mastercard"],
                "monthly_cap_minor": 1_000_000,
                "weight": 1,
            },
        )
    order(ledger, "purchase")
    customer = UUID(
        ledger.register_customer(
            tenant_id="globex", email="g@example.com", name="G", country="US", currency="USD"
        ).body["id"]
    )
    method = ledger.attach_payment_method(
        tenant_id="globex",
        customer_id=customer,
        card_number="4242424242424242",
        exp_month=12,
        exp_year=2031,
    ).body
    ledger.place_order(
        tenant_id="globex",
        customer_id=customer,
        currency="USD",
        lines=[{"sku": "MUG", "quantity": 1, "unit_price_minor": 900}],
        payment={"payment_method_id": method["id"], "mode": "purchase"},
    )
    reconciliation = BooksReconciliation(ledger, gateway.book)

    result = reconciliation.report(TENANT, TODAY).result

    # The same processor_account is two accounts: each scoped to its tenant.
    assert {t.account_id for t in gateway.book.transactions_on(TODAY)} == {
        f"{TENANT}/acct_shared",
        "globex/acct_shared",
    }
    assert [(i.classification.value, i.theirs.amount_minor) for i in result.items] == [
        ("matched", 3000)
    ]
    assert reconciliation.tenants_on(TODAY) == {TENANT, "globex"}


def test_without_a_routed_processor_listing_the_configured_books_are_read(
    ledger: Ledger, gateway: LosingGateway
) -> None:
    reconciliation = books_reconciliation(ledger, gateway.book)

    assert reconciliation is not None and reconciliation.books is gateway.book
