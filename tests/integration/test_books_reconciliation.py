"""Reconciliation with the sandbox processor's books on PostgreSQL: the daily job settles
yesterday's unknown outcomes once a day for every tenant, and a call sent across midnight is
matched on both days."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from uuid import UUID, uuid4

import pytest
from psycopg.sql import SQL

from adapters.books_reconciliation import DailyBooksReconciliation
from adapters.bootstrap import Services
from adapters.gateways.sandbox_book import PgSandboxBook, SandboxTransaction
from application.commands import GatewayOutcomeUnknown
from application.reconciliation import BooksReconciliation
from domain.payment_attempt import AttemptStatus
from tests.integration.conftest import Shop
from tests.integration.payment_fakes import install_faulty_gateway, timeout

pytestmark = pytest.mark.integration

TODAY = datetime.now(UTC).date()


def book_of(services: Services) -> PgSandboxBook:
    assert isinstance(services.sandbox_book, PgSandboxBook)
    return services.sandbox_book


def lost_purchase(services: Services, shop: Shop) -> UUID:
    """A purchase the sandbox charged whose answer was lost: its attempt id."""
    gateway = install_faulty_gateway(services)
    customer_id, method_id = shop.customer()
    gateway.after = timeout
    with pytest.raises(GatewayOutcomeUnknown):
        shop.paid_order(customer_id, method_id)
    [charge] = [t for _, t in book_of(services).transactions("acme")]
    attempt = services.ledger.repository.get(charge.idempotency_key)
    assert attempt.status is AttemptStatus.OUTCOME_UNKNOWN
    return charge.idempotency_key


def test_the_daily_job_settles_yesterday_for_every_tenant_once_a_day(
    services: Services, shop: Shop
) -> None:
    attempt_id = lost_purchase(services, shop)
    # Another tenant with nothing of ours that day, only a charge at the processor.
    book_of(services).add_charge(
        SandboxTransaction(
            id="ch_dashboard_2",
            account_id="globex",
            kind="charge",
            status="succeeded",
            idempotency_key=uuid4(),
            amount_minor=1200,
            currency="EUR",
            reference="dashboard",
            decline_code=None,
            charge_id=None,
            created_at=datetime.now(UTC),
        )
    )
    tomorrow_morning = datetime.combine(TODAY + timedelta(days=1), time(2), tzinfo=UTC)
    job = DailyBooksReconciliation(
        BooksReconciliation(services.ledger, book_of(services)),
        interval_s=3600,
        delay_s=3600,
        now=lambda: tomorrow_morning,
    )

    counts = job.run_if_due()
    again = job.run_if_due()

    assert counts["acme"]["missing_ours"] == 1 and counts["globex"]["missing_ours"] == 1
    assert services.ledger.repository.get(attempt_id).status is AttemptStatus.SUCCEEDED
    assert again == {}  # once a day
    assert job.run(TODAY)["acme"] == {
        "matched": 1,
        "missing_ours": 0,
        "missing_processor": 0,
        "amount_mismatch": 0,
        "state_mismatch": 0,
    }


def test_a_call_sent_just_before_midnight_is_matched_on_both_days(
    services: Services, shop: Shop
) -> None:
    customer_id, method_id = shop.customer()
    shop.paid_order(customer_id, method_id)
    book = book_of(services)
    [charge] = [t for _, t in book.transactions("acme")]
    # The processor booked it a little after midnight, on its next day.
    next_day = TODAY + timedelta(days=1)
    with book.datastore.transaction(commit=True) as curs:
        curs.execute(
            SQL("UPDATE {} SET created_at = %s WHERE id = %s").format(book.table),
            (datetime.combine(next_day, time(0, 0, 5), tzinfo=UTC), charge.id),
        )
    reconciliation = BooksReconciliation(services.ledger, book)

    today = reconciliation.report("acme", TODAY).result
    tomorrow = reconciliation.report("acme", next_day).result

    assert today.counts["matched"] == 1 and sum(today.counts.values()) == 1
    assert tomorrow.counts["matched"] == 1 and sum(tomorrow.counts.values()) == 1
    assert reconciliation.report("globex", TODAY).result.items == []


def test_the_worker_schedules_the_daily_job(services: Services) -> None:
    services.start_worker(threads=1)

    job = services._books_reconciler
    assert isinstance(job, DailyBooksReconciliation)
    assert job.reconciliation.books is services.sandbox_book
