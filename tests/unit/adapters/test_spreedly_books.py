"""The Spreedly client as the processor's books: a day of the gateway's transaction list, in
reconciliation's words, read from a fake Spreedly on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from adapters.gateways.spreedly import GatewayUnavailable, SpreedlyGateway
from application.ports import ProcessorBooks
from tests.fakes.spreedly_server import FakeSpreedly

TODAY = datetime.now(UTC).date()


@pytest.fixture
def fake() -> Iterator[FakeSpreedly]:
    with FakeSpreedly() as server:
        yield server


def connect(fake: FakeSpreedly, **options: object) -> SpreedlyGateway:
    return SpreedlyGateway(
        fake.base_url, fake.environment_key, fake.access_secret, fake.gateway_token, **options
    )


def test_a_day_lists_every_money_transaction_oldest_first_in_our_words(
    fake: FakeSpreedly,
) -> None:
    gateway = connect(fake, timeout_s=5)
    card, declining = fake.add_card(), fake.add_card("insufficient_funds")
    keys = [uuid4() for _ in range(7)]
    money = {"account_id": "acme", "currency": "EUR", "reference": "order-1"}
    charge = gateway.purchase(token=card, amount_minor=1999, idempotency_key=keys[0], **money)
    held = gateway.authorize(token=card, amount_minor=500, idempotency_key=keys[1], **money)
    gateway.capture(
        transaction_id=held.transaction_id or "", amount_minor=400, idempotency_key=keys[2], **money
    )
    gateway.refund(
        transaction_id=charge.transaction_id or "",
        amount_minor=999,
        idempotency_key=keys[3],
        **money,
    )
    gateway.purchase(token=declining, amount_minor=300, idempotency_key=keys[4], **money)
    fake.fail_next("result_unknown")
    with pytest.raises(GatewayUnavailable):
        gateway.purchase(token=card, amount_minor=200, idempotency_key=keys[5], **money)
    yesterday = datetime.now(UTC) - timedelta(days=1)
    fake.add_purchase(amount_minor=700, description=str(keys[6]), created_at=yesterday)

    assert isinstance(gateway, ProcessorBooks)
    listed = gateway.transactions_on(TODAY, "acme")
    earlier = gateway.transactions_on(yesterday.date())

    assert [(t.idempotency_key, t.kind, t.amount_minor, t.state) for t in listed] == [
        (keys[0], "purchase", 1999, "succeeded"),
        (keys[1], "authorize", 500, "succeeded"),
        (keys[2], "capture", 400, "succeeded"),
        (keys[3], "refund", 999, "succeeded"),
        (keys[4], "purchase", 300, "declined"),
        (keys[5], "purchase", 200, "pending"),
    ]
    assert {(t.currency, t.reference, t.account_id) for t in listed} == {("EUR", "order-1", "acme")}
    assert listed[0].transaction_id == charge.transaction_id
    assert [(t.idempotency_key, t.account_id) for t in earlier] == [(keys[6], fake.gateway_token)]
    gateway.close()


def test_a_day_beyond_the_listing_budget_cannot_be_told(fake: FakeSpreedly) -> None:
    gateway = connect(fake, timeout_s=5, lookup_page_count=2, listing_pages_max=2)
    card = fake.add_card()
    for amount_minor in (100, 200, 300, 400, 500):
        gateway.purchase(
            account_id="acme",
            token=card,
            amount_minor=amount_minor,
            currency="USD",
            idempotency_key=uuid4(),
            reference="order-2",
        )

    with pytest.raises(GatewayUnavailable):
        gateway.transactions_on(TODAY - timedelta(days=1))
    assert len(connect(fake, timeout_s=5).transactions_on(TODAY)) == 5
    gateway.close()
