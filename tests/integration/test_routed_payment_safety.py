"""A cascade on real PostgreSQL: a crash mid-cascade is finished by a retry with the same key in
another process, at the attempt it reached — nothing charged twice, nothing skipped."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.bootstrap import Services, bootstrap
from adapters.settings import Settings
from application.commands import CLAIM_LEASE_S
from application.idempotency import IdempotencyKeyInProgress
from domain.gateway import tenant_account_id
from tests.integration.payment_fakes import (
    TENANT,
    install_faulty_gateway,
    killed,
    purchase_request,
)

pytestmark = pytest.mark.integration

DECLINING_ACCOUNT = "acct-first+decline_insufficient_funds"


@pytest.fixture
def second_process(test_settings: Settings, services: Services) -> Iterator[Services]:
    """Another process on the same database (its own pools and objects)."""
    other = bootstrap(test_settings)
    yield other
    other.close()


def register(services: Services, name: str, **fields: Any) -> dict[str, Any]:
    config = {
        "name": name,
        "processor": "sandbox",
        "currencies": ["USD"],
        "card_brands": ["visa"],
        "monthly_cap_minor": 1_000_000,
        **fields,
    }
    return services.ledger.register_gateway(tenant_id=TENANT, config=config).body


def charges(services: Services, account_id: str) -> list[Any]:
    assert services.sandbox_book is not None
    account = tenant_account_id(TENANT, "sandbox", account_id)  # the gateway's, in the tenant's
    return [t for _, t in services.sandbox_book.transactions(account) if t.kind == "charge"]


def test_a_process_killed_mid_cascade_is_finished_by_a_retry_at_the_latest_attempt(
    services: Services, second_process: Services
) -> None:
    register(services, "first", weight=100, processor_account=DECLINING_ACCOUNT)
    second = register(services, "second", weight=0)
    request = purchase_request(services, key="checkout-1")
    hooked = install_faulty_gateway(services)

    # The first gateway declines (saved with the next intent); the process dies right after
    # the second gateway charged, before the outcome is saved.
    hooked.after = lambda: setattr(hooked, "after", killed)
    with pytest.raises(SystemExit):
        services.ledger.place_order(**request)
    assert [t.status for t in charges(services, DECLINING_ACCOUNT)] == ["declined"]
    assert [t.status for t in charges(services, second["id"])] == ["succeeded"]

    with pytest.raises(IdempotencyKeyInProgress):  # the second attempt may still be running
        second_process.ledger.place_order(**request)
    later = datetime.now(UTC) + timedelta(seconds=CLAIM_LEASE_S + 1)
    second_process.ledger.now = lambda: later
    retry = second_process.ledger.place_order(**request)

    assert retry.body["status"] == "paid"
    assert [(h["gateway_id"], h["outcome"]) for h in retry.body["payment"]["history"]][1:] == [
        (second["id"], "succeeded")
    ]
    assert retry.body["payment"]["history"][0]["outcome"] == "declined"
    assert len(charges(services, DECLINING_ACCOUNT)) == 1  # the finished attempt: not sent again
    assert len(charges(services, second["id"])) == 1  # the retry learnt the charge: not again
    assert hooked.purchases == 2
    assert second_process.ledger.place_order(**request).body == retry.body
