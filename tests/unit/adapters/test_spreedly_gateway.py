"""The Spreedly client against a fake Spreedly on loopback: outcomes, idempotency, faults."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from adapters.gateways.spreedly import (
    GatewayUnavailable,
    IdempotencyKeyReused,
    SpreedlyGateway,
    outcome_of,
)
from domain.payment_attempt import is_hard_decline
from tests.fakes.spreedly_server import FakeSpreedly

FIXTURES = Path(__file__).resolve().parents[4] / "shared" / "fixtures" / "gateways" / "spreedly"


@pytest.fixture
def fake() -> Iterator[FakeSpreedly]:
    with FakeSpreedly(slow_s=2.0) as server:
        yield server


def connect(fake: FakeSpreedly, **options: object) -> SpreedlyGateway:
    options.setdefault("timeout_s", 5)
    return SpreedlyGateway(
        fake.base_url, fake.environment_key, fake.access_secret, fake.gateway_token, **options
    )


@pytest.fixture
def gateway(fake: FakeSpreedly) -> Iterator[SpreedlyGateway]:
    client = connect(fake)
    yield client
    client.close()


def purchase(gateway: SpreedlyGateway, token: str, **overrides: object):
    fields = {
        "account_id": "acme",
        "token": token,
        "amount_minor": 1999,
        "currency": "EUR",
        "idempotency_key": uuid4(),
        "reference": "order-1",
        **overrides,
    }
    return gateway.purchase(**fields)


def follow_up(call, transaction_id: str, **overrides: object):
    fields = {
        "account_id": "acme",
        "transaction_id": transaction_id,
        "idempotency_key": uuid4(),
        "reference": "order-1",
        **overrides,
    }
    return call(**fields)


# Outcomes ------------------------------------------------------------------------------------


def test_a_purchase_sends_cents_currency_reference_and_key_and_succeeds(
    fake: FakeSpreedly, gateway: SpreedlyGateway
) -> None:
    card = fake.add_card()
    key = uuid4()

    outcome = purchase(gateway, card, amount_minor=1999, currency="EUR", idempotency_key=key)

    assert outcome.succeeded and outcome.decline_code is None
    [charge] = fake.charges_for(key)
    assert outcome.transaction_id == charge["token"]
    [(method, path, body)] = [r for r in fake.requests if r[0] == "POST"]
    assert (method, path) == ("POST", f"/v1/gateways/{fake.gateway_token}/purchase.json")
    assert body == {
        "transaction": {
            "payment_method_token": card,
            "amount": 1999,
            "currency_code": "EUR",
            "order_id": "order-1",
            "description": str(key),
        }
    }


@pytest.mark.parametrize(
    ("behaviour", "decline_code", "hard"),
    [
        ("generic_decline", "generic_decline", False),
        ("insufficient_funds", "insufficient_funds", False),
        ("expired_card", "expired_card", True),
        ("stolen_card", "stolen_card", True),
    ],
)
def test_a_declined_purchase_maps_the_processors_code_and_keeps_hard_declines_hard(
    fake: FakeSpreedly, gateway: SpreedlyGateway, behaviour: str, decline_code: str, hard: bool
) -> None:
    outcome = purchase(gateway, fake.add_card(behaviour))

    assert not outcome.succeeded
    assert outcome.transaction_id is not None
    assert outcome.decline_code == decline_code
    assert is_hard_decline(outcome.decline_code) is hard
    assert outcome.message


def test_a_purchase_declined_by_amount_is_a_decline_whatever_the_card(
    fake: FakeSpreedly, gateway: SpreedlyGateway
) -> None:
    fake.decline_amounts[5100] = "insufficient_funds"
    card = fake.add_card()

    assert purchase(gateway, card, amount_minor=5100).decline_code == "insufficient_funds"
    assert purchase(gateway, card, amount_minor=5000).succeeded


def test_the_real_spreedly_failed_transaction_sample_reads_as_a_generic_decline() -> None:
    sample = FIXTURES / "failed_verification.json"
    if not sample.exists():
        pytest.skip(f"{sample} is not here")
    transaction = json.loads(sample.read_text())["transaction"]

    outcome = outcome_of(transaction)

    assert not outcome.succeeded
    assert outcome.transaction_id == "8A8vvB2RbbL41CRz7YYUbAQW5Yw"
    assert outcome.decline_code == "generic_decline"
    assert outcome.message == "Unable to process the verify transaction."


def test_an_unknown_card_is_a_hard_refusal_without_a_transaction(
    fake: FakeSpreedly, gateway: SpreedlyGateway
) -> None:
    outcome = purchase(gateway, "NoSuchPaymentMethod")

    assert not outcome.succeeded and outcome.transaction_id is None
    assert outcome.decline_code == "invalid_account" and is_hard_decline(outcome.decline_code)
    assert fake.transactions == []


# Authorize, capture, refund, void --------------------------------------------------------------


def test_authorize_then_partial_capture_then_partial_refunds_up_to_what_was_captured(
    fake: FakeSpreedly, gateway: SpreedlyGateway
) -> None:
    card = fake.add_card()
    authorization = gateway.authorize(
        account_id="acme",
        token=card,
        amount_minor=5000,
        currency="USD",
        idempotency_key=uuid4(),
        reference="order-1",
    )
    assert authorization.succeeded

    capture = follow_up(
        gateway.capture, authorization.transaction_id, amount_minor=3000, currency="USD"
    )
    assert capture.succeeded
    refund = follow_up(gateway.refund, capture.transaction_id, amount_minor=1000, currency="USD")
    assert refund.succeeded
    too_much = follow_up(gateway.refund, capture.transaction_id, amount_minor=2001, currency="USD")
    assert not too_much.succeeded and too_much.decline_code == "generic_decline"
    void_after_capture = follow_up(gateway.void, authorization.transaction_id)
    assert not void_after_capture.succeeded

    sent = [
        (path.rsplit("/", 1)[-1], body["transaction"].get("amount"))
        for method, path, body in fake.requests
        if method == "POST"
    ]
    assert sent == [
        ("authorize.json", 5000),
        ("capture.json", 3000),
        ("credit.json", 1000),
        ("credit.json", 2001),
        ("void.json", None),
    ]
    succeeded = [(t["transaction_type"], t["amount"]) for t in fake.transactions if t["succeeded"]]
    assert succeeded == [("Authorization", 5000), ("Capture", 3000), ("Credit", 1000)]


def test_a_void_releases_an_authorization_and_a_capture_after_it_is_declined(
    fake: FakeSpreedly, gateway: SpreedlyGateway
) -> None:
    authorization = gateway.authorize(
        account_id="acme",
        token=fake.add_card(),
        amount_minor=2500,
        currency="GBP",
        idempotency_key=uuid4(),
        reference="order-2",
    )

    assert follow_up(gateway.void, authorization.transaction_id).succeeded
    capture = follow_up(
        gateway.capture, authorization.transaction_id, amount_minor=2500, currency="GBP"
    )
    assert not capture.succeeded


def test_a_follow_up_of_an_unknown_transaction_is_declined_without_a_call(
    fake: FakeSpreedly, gateway: SpreedlyGateway
) -> None:
    outcome = follow_up(gateway.refund, "NoSuchTransaction", amount_minor=100, currency="USD")

    assert not outcome.succeeded and outcome.decline_code == "charge_not_found"
    assert [method for method, _, _ in fake.requests] == ["GET"]


# Idempotency -----------------------------------------------------------------------------------


def test_a_repeated_key_returns_the_first_transaction_and_moves_money_once(
    fake: FakeSpreedly, gateway: SpreedlyGateway
) -> None:
    card, charge_key, refund_key = fake.add_card(), uuid4(), uuid4()

    first = purchase(gateway, card, idempotency_key=charge_key)
    again = purchase(gateway, card, idempotency_key=charge_key)
    refund = follow_up(
        gateway.refund,
        first.transaction_id,
        amount_minor=500,
        currency="EUR",
        idempotency_key=refund_key,
    )
    refund_again = follow_up(
        gateway.refund,
        first.transaction_id,
        amount_minor=500,
        currency="EUR",
        idempotency_key=refund_key,
    )

    assert again == first and first.succeeded
    assert refund_again == refund and refund.succeeded
    assert len(fake.charges_for(charge_key)) == 1
    assert len(fake.charges_for(refund_key)) == 1


def test_a_repeated_key_after_a_decline_returns_the_decline_without_trying_again(
    fake: FakeSpreedly, gateway: SpreedlyGateway
) -> None:
    card, key = fake.add_card("insufficient_funds"), uuid4()

    first = purchase(gateway, card, idempotency_key=key)
    again = purchase(gateway, card, idempotency_key=key)

    assert again == first and first.decline_code == "insufficient_funds"
    assert len([t for t in fake.transactions if t["description"] == str(key)]) == 1


def test_a_key_reused_for_another_amount_is_refused_not_replayed(
    fake: FakeSpreedly, gateway: SpreedlyGateway
) -> None:
    card, key = fake.add_card(), uuid4()
    purchase(gateway, card, amount_minor=1000, idempotency_key=key)

    with pytest.raises(IdempotencyKeyReused):
        purchase(gateway, card, amount_minor=2000, idempotency_key=key)
    assert len(fake.charges_for(key)) == 1


# Faults: every one raises, none reads as a decline ---------------------------------------------


@pytest.mark.parametrize("fault", ["result_unknown", "http_500", "drop"])
def test_a_fault_raises_gateway_unavailable_never_a_decline(
    fake: FakeSpreedly, gateway: SpreedlyGateway, fault: str
) -> None:
    fake.fail_next(fault)

    with pytest.raises(GatewayUnavailable):
        purchase(gateway, fake.add_card())


def test_an_answer_slower_than_the_timeout_raises_in_about_the_timeout(fake: FakeSpreedly) -> None:
    gateway = connect(fake, timeout_s=0.3)
    fake.fail_next("slow")
    started = time.monotonic()

    with pytest.raises(GatewayUnavailable):
        purchase(gateway, fake.add_card())

    assert time.monotonic() - started < fake.slow_s
    gateway.close()


def test_a_processor_that_is_down_raises(fake: FakeSpreedly) -> None:
    gateway = connect(fake)
    fake.stop()

    with pytest.raises(GatewayUnavailable):
        purchase(gateway, "AnyCard")
    with pytest.raises(GatewayUnavailable):
        gateway.status(account_id="acme", idempotency_key=uuid4())


def test_wrong_credentials_raise_rather_than_decline(fake: FakeSpreedly) -> None:
    gateway = SpreedlyGateway(fake.base_url, fake.environment_key, "wrong", fake.gateway_token)

    with pytest.raises(GatewayUnavailable):
        purchase(gateway, fake.add_card())
    assert fake.transactions == []


# Status: finding what a lost answer did ---------------------------------------------------------


@pytest.mark.parametrize("fault", ["drop", "slow"])
def test_status_finds_a_charge_whose_answer_was_lost_and_a_repeat_does_not_charge_again(
    fake: FakeSpreedly, fault: str
) -> None:
    gateway = connect(fake, timeout_s=0.3)
    card, key = fake.add_card(), uuid4()
    fake.fail_next(fault)
    with pytest.raises(GatewayUnavailable):
        purchase(gateway, card, idempotency_key=key)
    [charge] = fake.charges_for(key)

    found = gateway.status(account_id="acme", idempotency_key=key)
    repeated = purchase(gateway, card, idempotency_key=key)

    assert found is not None and found.succeeded and found.transaction_id == charge["token"]
    assert repeated == found
    assert len(fake.charges_for(key)) == 1
    gateway.close()


def test_status_is_none_for_a_key_never_sent(fake: FakeSpreedly, gateway: SpreedlyGateway) -> None:
    purchase(gateway, fake.add_card())

    assert gateway.status(account_id="acme", idempotency_key=uuid4()) is None


def test_status_of_a_transaction_whose_result_is_unknown_raises(
    fake: FakeSpreedly, gateway: SpreedlyGateway
) -> None:
    card, key = fake.add_card(), uuid4()
    fake.fail_next("result_unknown")
    with pytest.raises(GatewayUnavailable):
        purchase(gateway, card, idempotency_key=key)

    with pytest.raises(GatewayUnavailable):
        gateway.status(account_id="acme", idempotency_key=key)
    with pytest.raises(GatewayUnavailable):
        purchase(gateway, card, idempotency_key=key)  # never sent blindly again
    assert len(fake.charges_for(key)) == 1


def test_status_reads_back_through_pages_to_find_an_older_key(fake: FakeSpreedly) -> None:
    gateway = connect(fake, lookup_page_count=2, lookup_pages_max=5)
    now = datetime.now(UTC)
    old_key = uuid4()
    fake.add_purchase(
        amount_minor=700, description=str(old_key), created_at=now - timedelta(hours=1)
    )
    for _ in range(6):
        fake.add_purchase(amount_minor=100, description=str(uuid4()), created_at=now)

    found = gateway.status(account_id="acme", idempotency_key=old_key)

    assert found is not None and found.succeeded
    assert found.transaction_id == fake.transactions[0]["token"]
    gateway.close()


def test_status_stops_at_the_horizon_and_raises_when_its_page_budget_runs_out(
    fake: FakeSpreedly,
) -> None:
    now = datetime.now(UTC)
    for _ in range(6):
        fake.add_purchase(amount_minor=100, description=str(uuid4()), created_at=now)
    budget = {"lookup_page_count": 2, "lookup_pages_max": 2}
    later = connect(fake, now=lambda: now + timedelta(days=9), **budget)
    today = connect(fake, **budget)
    unsent: UUID = uuid4()

    assert later.status(account_id="acme", idempotency_key=unsent) is None
    with pytest.raises(GatewayUnavailable):
        today.status(account_id="acme", idempotency_key=unsent)
    later.close()
    today.close()
