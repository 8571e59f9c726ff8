"""Two processes, one idempotency key, real PostgreSQL: one charge, recorded, whatever happens."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from adapters.bootstrap import Services, bootstrap
from adapters.settings import Settings
from application.commands import CLAIM_LEASE_S
from application.idempotency import IdempotencyKeyInProgress
from tests.integration.payment_fakes import (
    charges,
    install_faulty_gateway,
    killed,
    purchase_request,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def second_process(test_settings: Settings, services: Services) -> Iterator[Services]:
    """Another process on the same database (its own pools and objects)."""
    other = bootstrap(test_settings)
    yield other
    other.close()


def test_a_second_process_with_the_same_key_is_told_in_progress_and_never_charges(
    services: Services, second_process: Services
) -> None:
    request = purchase_request(services, key="checkout-1")
    hooked = install_faulty_gateway(services)
    other_answer: list[BaseException] = []

    def the_other_process_tries() -> None:
        try:
            second_process.ledger.place_order(**request)
        except IdempotencyKeyInProgress as error:
            other_answer.append(error)

    hooked.before = the_other_process_tries
    first = services.ledger.place_order(**request)

    assert len(other_answer) == 1
    assert first.body["status"] == "paid"
    assert len(charges(services)) == 1
    assert second_process.ledger.place_order(**request).body == first.body


def test_a_process_killed_between_the_charge_and_the_save_is_finished_by_a_retry(
    services: Services, second_process: Services
) -> None:
    request = purchase_request(services, key="checkout-1")
    hooked = install_faulty_gateway(services)

    hooked.after = killed
    with pytest.raises(SystemExit):
        services.ledger.place_order(**request)
    assert len(charges(services)) == 1  # the processor charged; our outcome was never saved

    with pytest.raises(IdempotencyKeyInProgress):  # within the lease it may still be running
        second_process.ledger.place_order(**request)
    later = datetime.now(UTC) + timedelta(seconds=CLAIM_LEASE_S + 1)
    second_process.ledger.now = lambda: later
    retry = second_process.ledger.place_order(**request)

    assert retry.body["status"] == "paid"
    assert retry.body["captured_minor"] == 4200
    assert len(charges(services)) == 1
