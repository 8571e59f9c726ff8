"""Reconciliation of routed Spreedly payments on PostgreSQL: a gateway of processor ``spreedly``
is reconciled with that Spreedly gateway's own transaction list (the fake Spreedly on loopback),
not with the sandbox's books, both by the report and by the daily job the bootstrap wires."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from adapters.books_reconciliation import DailyBooksReconciliation
from adapters.bootstrap import Services, bootstrap
from adapters.settings import Settings
from application.commands import GatewayOutcomeUnknown
from application.reconciliation import books_reconciliation
from domain.payment_attempt import AttemptStatus, PaymentAttempt
from tests.fakes.spreedly_server import FakeSpreedly
from tests.unit.application.test_routed_spreedly_payments import (
    TENANT,
    SpreedlyCardsVault,
    place,
    register_spreedly_gateway,
)

pytestmark = pytest.mark.integration

TODAY = datetime.now(UTC).date()


@pytest.fixture
def fake() -> Iterator[FakeSpreedly]:
    with FakeSpreedly() as server:
        yield server


@pytest.fixture
def spreedly_services(test_settings: Settings, fake: FakeSpreedly) -> Iterator[Services]:
    settings = test_settings.model_copy(
        update={
            "spreedly_url": fake.base_url,
            "spreedly_environment_key": fake.environment_key,
            "spreedly_access_secret": fake.access_secret,
        }
    )
    built = bootstrap(settings, vault=SpreedlyCardsVault(fake))
    yield built
    built.close()


def test_spreedly_accounts_are_reconciled_with_spreedly_and_lost_answers_settled(
    spreedly_services: Services, fake: FakeSpreedly
) -> None:
    ledger = spreedly_services.ledger
    register_spreedly_gateway(ledger, fake)
    # A purchase answered: matched.
    paid = place(ledger, "k1")().body
    assert paid["status"] == "paid"
    matched_attempt = UUID(paid["payment"]["history"][0]["attempt_id"])
    # A purchase Spreedly made whose answer never came: settled by the run.
    fake.fail_next("drop")
    with pytest.raises(GatewayOutcomeUnknown):
        place(ledger, "k2")()
    lost_attempt = UUID(fake.transactions[-1]["description"])
    assert ledger.repository.get(lost_attempt).status is AttemptStatus.OUTCOME_UNKNOWN
    # A charge made at Spreedly alone (its dashboard): none of ours.
    dashboard_key = uuid4()
    fake.add_purchase(
        amount_minor=700, description=str(dashboard_key), created_at=datetime.now(UTC)
    )

    reconciliation = books_reconciliation(ledger, spreedly_services.sandbox_book)
    assert reconciliation is not None
    report = reconciliation.report(TENANT, TODAY)

    by_key = {item.key: item for item in report.result.items}
    assert by_key[matched_attempt].classification == "matched"
    # Our outcome unknown, Spreedly's final: reported as missing on our side, settleable.
    assert by_key[lost_attempt].classification == "missing_ours"
    assert by_key[lost_attempt].settleable
    assert by_key[lost_attempt].theirs is not None
    assert by_key[lost_attempt].theirs.account_id == fake.gateway_token
    assert by_key[dashboard_key].classification == "missing_ours"
    assert not by_key[dashboard_key].settleable
    assert report.result.counts["missing_processor"] == 0

    job = DailyBooksReconciliation.of(
        ledger, spreedly_services.sandbox_book, interval_s=3600, delay_s=3600
    )
    assert job is not None
    counts = job.run(TODAY)

    assert counts[TENANT]["missing_ours"] == 2  # what the run found, before settling
    attempt = ledger.repository.get(lost_attempt)
    assert isinstance(attempt, PaymentAttempt)
    assert attempt.status is AttemptStatus.SUCCEEDED
    assert len(fake.charges_for(lost_attempt)) == 1
    after = reconciliation.report(TENANT, TODAY).result
    assert after.counts == {
        "matched": 2,
        "missing_ours": 1,
        "missing_processor": 0,
        "amount_mismatch": 0,
        "state_mismatch": 0,
    }
