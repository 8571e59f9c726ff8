"""Routed purchases on a gateway of processor ``spreedly``, through the application layer, against
the fake Spreedly on loopback: the settings wire the processor, the gateway's ``processor_account``
is the Spreedly gateway token, and a lost answer is learnt without charging twice."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest

from adapters.bootstrap import bootstrap_ledger, processors_from
from adapters.gateways.sandbox import SandboxVault
from adapters.gateways.spreedly_accounts import SpreedlyAccounts
from adapters.settings import Settings
from application.commands import GatewayOutcomeUnknown
from application.ledger import Ledger
from application.payments import NoEligibleGateway
from domain.customer import CardDetails
from domain.payment_attempt import PaymentAttempt
from tests.fakes.spreedly_server import FakeSpreedly

TENANT = "acme"
LINES = [{"sku": "MUG", "quantity": 2, "unit_price_minor": 1250}]


class SpreedlyCardsVault(SandboxVault):
    """The sandbox's checks, with the card retained at the fake Spreedly: its token is
    Spreedly's payment method token, charging as ``behaviour`` says."""

    def __init__(self, fake: FakeSpreedly) -> None:
        super().__init__()
        self.fake = fake
        self.behaviour = "succeeds"

    def tokenize(self, **card: Any) -> CardDetails:
        details = super().tokenize(**card)
        return dataclasses.replace(details, token=self.fake.add_card(self.behaviour))


@pytest.fixture
def fake() -> Iterator[FakeSpreedly]:
    with FakeSpreedly(slow_s=2.0) as server:
        yield server


def spreedly_settings(fake: FakeSpreedly) -> Settings:
    return Settings(
        spreedly_url=fake.base_url,
        spreedly_environment_key=fake.environment_key,
        spreedly_access_secret=fake.access_secret,
    )


@pytest.fixture
def vault(fake: FakeSpreedly) -> SpreedlyCardsVault:
    return SpreedlyCardsVault(fake)


@pytest.fixture
def app(fake: FakeSpreedly, vault: SpreedlyCardsVault) -> Iterator[Ledger]:
    processors = processors_from(spreedly_settings(fake))
    ledger = bootstrap_ledger(vault=vault, processors=processors, fingerprint_secret=b"test")
    yield ledger
    for processor in processors.values():
        processor.close()  # type: ignore[attr-defined]


def register_spreedly_gateway(app: Ledger, fake: FakeSpreedly) -> dict[str, Any]:
    config = {
        "name": "spreedly-main",
        "processor": "spreedly",
        "processor_account": fake.gateway_token,
        "currencies": ["EUR"],
        "card_brands": ["visa"],
        "monthly_cap_minor": 1_000_000,
    }
    return app.register_gateway(tenant_id=TENANT, config=config).body


def place(app: Ledger, key: str = "k1") -> Any:
    customer = app.register_customer(
        tenant_id=TENANT, email="a@example.com", name="Ada", country="DE", currency="EUR"
    ).body
    method = app.attach_payment_method(
        tenant_id=TENANT,
        customer_id=UUID(customer["id"]),
        card_number="4242424242424242",
        exp_month=12,
        exp_year=2040,
        cvc="123",
    ).body
    return lambda: app.place_order(
        tenant_id=TENANT,
        customer_id=UUID(customer["id"]),
        currency="EUR",
        lines=LINES,
        payment={"payment_method_id": method["id"], "mode": "purchase"},
        idempotency_key=key,
    )


def test_the_settings_configure_spreedly_only_with_its_url_key_and_secret(
    fake: FakeSpreedly,
) -> None:
    configured = processors_from(spreedly_settings(fake))
    without_secret = processors_from(
        Settings(spreedly_url=fake.base_url, spreedly_environment_key="key")
    )

    assert isinstance(configured["spreedly"], SpreedlyAccounts)
    assert without_secret == {}
    configured["spreedly"].close()  # type: ignore[attr-defined]


def test_a_routed_purchase_on_a_spreedly_gateway_is_charged_there_once(
    app: Ledger, fake: FakeSpreedly
) -> None:
    gateway = register_spreedly_gateway(app, fake)
    order_once = place(app)

    order = order_once().body
    replay = order_once()

    assert order["status"] == "paid"
    [entry] = order["payment"]["history"]
    assert (entry["gateway_id"], entry["outcome"]) == (gateway["id"], "succeeded")
    attempt = app.repository.get(UUID(entry["attempt_id"]))
    assert isinstance(attempt, PaymentAttempt)
    assert (attempt.processor, attempt.account_id) == ("spreedly", fake.gateway_token)
    [charge] = fake.charges_for(attempt.id)
    assert (charge["amount"], charge["currency_code"], charge["gateway_token"]) == (
        2500,
        "EUR",
        fake.gateway_token,
    )
    assert charge["token"] == attempt.transaction_id
    assert replay.replayed and len(fake.charges_for(attempt.id)) == 1


def test_a_decline_at_spreedly_is_recorded_with_its_code(
    app: Ledger, fake: FakeSpreedly, vault: SpreedlyCardsVault
) -> None:
    register_spreedly_gateway(app, fake)
    vault.behaviour = "insufficient_funds"

    order = place(app)().body

    assert order["status"] == "declined"
    assert order["payment"]["history"][0]["decline_code"] == "insufficient_funds"


def test_a_lost_answer_from_spreedly_is_learnt_by_the_reconciler_without_a_second_charge(
    app: Ledger, fake: FakeSpreedly
) -> None:
    register_spreedly_gateway(app, fake)
    fake.fail_next("drop")  # Spreedly charges, the answer never comes

    with pytest.raises(GatewayOutcomeUnknown):
        place(app)()
    [charge] = fake.transactions
    attempt_id = UUID(charge["description"])

    assert app.reconcile_attempt(attempt_id) == "succeeded"
    assert len(fake.charges_for(attempt_id)) == 1


def test_a_spreedly_gateway_without_spreedly_configured_is_skipped(fake: FakeSpreedly) -> None:
    app = bootstrap_ledger(vault=SpreedlyCardsVault(fake), fingerprint_secret=b"test")
    register_spreedly_gateway(app, fake)

    with pytest.raises(NoEligibleGateway, match="processor_not_configured"):
        place(app)()
