"""The MRR read model on PostgreSQL: subscriptions built through the real aggregate, recorded in
the log, folded by the runner; the report read back per month, in other currencies with rates
from the FX store; a rebuild in other batches writes identical rows."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import Tracking
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.sql import SQL
from typer.testing import CliRunner

from adapters.bootstrap import Services, bootstrap
from adapters.fx_rates import PgFxRates, parse_ecb_csv
from adapters.rebuild import rebuild
from api.cli import app
from domain.fx import FxRate, FxRateMissing
from domain.mrr import COUNTERS
from domain.plan import Terms
from domain.subscription import DunningPolicy, Subscription
from projections.mrr import mrr_report

pytestmark = pytest.mark.integration

GOLD_YEARLY, SILVER, GOLD_MONTHLY = str(uuid4()), str(uuid4()), str(uuid4())


def on(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, 12, tzinfo=UTC)


class Book:
    """Subscriptions driven through the aggregate's own commands, recorded in log order."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def start(
        self,
        customer_id: UUID,
        terms: Terms,
        when: datetime,
        quantity: int = 1,
        tenant_id: str = "acme",
    ) -> Subscription:
        # An import: periods that began before ``now`` were billed elsewhere, so it is active.
        subscription = Subscription.start(
            tenant_id=tenant_id,
            customer_id=customer_id,
            terms=terms,
            quantity=quantity,
            payment_method_id="pm",
            trial_days=0,
            effective_at=when,
            now=when + timedelta(hours=1),
            imported=True,
        )
        self.save(subscription)
        return subscription

    def save(self, *subscriptions: Subscription) -> None:
        for subscription in subscriptions:
            self.events += subscription.collect_events()

    def record(self, services: Services) -> None:
        mapper = services.ledger.mapper
        services.ledger.recorder.insert_events([mapper.to_stored_event(e) for e in self.events])
        self.events = []


def terms(plan_id: str, amount_minor: int, interval: str, currency: str = "USD") -> Terms:
    return Terms(plan_id, amount_minor, currency, interval, 1)


def report(services: Services, first: str, last: str, currency: str = "USD", **kwargs: Any):
    return mrr_report(
        services.mrr,
        services.fx_rates,
        "acme",
        currency=currency,
        first=date.fromisoformat(first + "-01"),
        last=date.fromisoformat(last + "-01"),
        **kwargs,
    )


def movements(month: dict[str, Any]) -> tuple[int, ...]:
    return (
        month["mrr_minor"],
        month["new_minor"],
        month["expansion_minor"],
        month["contraction_minor"],
        month["churn_minor"],
        month["reactivation_minor"],
        month["fx_adjustment_minor"],
        month["customers"],
    )


def golden_story(book: Book) -> UUID:
    """The published example: yearly Gold, 4 seats, $2,000; monthly Silver $60 added, then
    cancelled; Gold cancelled at the end of its paid year; back on 3 seats of monthly Gold."""
    customer = uuid4()
    gold = book.start(customer, terms(GOLD_YEARLY, 50_000, "year"), on(2025, 1, 10), quantity=4)
    silver = book.start(customer, terms(SILVER, 6_000, "month"), on(2025, 2, 10))
    silver.cancel(at_period_end=False, effective_at=on(2025, 4, 5), policy=DunningPolicy())
    gold.cancel(at_period_end=True, effective_at=on(2025, 5, 1), policy=DunningPolicy())
    book.save(silver, gold)
    book.start(customer, terms(GOLD_MONTHLY, 5_000, "month"), on(2026, 3, 5), quantity=3)
    return customer


def test_the_golden_story_reads_back_month_by_month(services: Services) -> None:
    book = Book()
    customer = golden_story(book)
    book.record(services)
    services.runners["mrr"].catch_up()

    months = report(services, "2025-01", "2026-03")["months"]
    by_month = {m["month"]: movements(m) for m in months}
    # (MRR, new, expansion, contraction, churn, reactivation, fx, customers)
    assert by_month["2025-01"] == (16_667, 16_667, 0, 0, 0, 0, 0, 1)
    assert by_month["2025-02"] == (22_667, 0, 6_000, 0, 0, 0, 0, 1)
    assert by_month["2025-03"] == (22_667, 0, 0, 0, 0, 0, 0, 1)
    assert by_month["2025-04"] == (16_667, 0, 0, 6_000, 0, 0, 0, 1)
    # Churn at the end of the paid year, not when the cancellation was asked for.
    assert by_month["2025-05"] == by_month["2025-12"] == (16_667, 0, 0, 0, 0, 0, 0, 1)
    assert by_month["2026-01"] == (0, 0, 0, 0, 16_667, 0, 0, 0)
    assert by_month["2026-03"] == (15_000, 0, 0, 0, 0, 15_000, 0, 1)
    assert months[-1]["arr_minor"] == 180_000
    assert months[0]["quick_ratio"] is None and by_month["2025-04"][3] == 6_000
    audit = services.mrr.movements("acme", customer)
    assert [(m["kind"], m["amount_minor"], m["plan_id"]) for m in audit] == [
        ("new", 16_667, GOLD_YEARLY),
        ("expansion", 6_000, SILVER),
        ("contraction", 6_000, SILVER),
        ("churn", 16_667, GOLD_YEARLY),
        ("reactivation", 15_000, GOLD_MONTHLY),
    ]
    assert services.mrr.parked() == []


def test_a_later_first_month_opens_with_the_mrr_before_it(services: Services) -> None:
    book = Book()
    golden_story(book)
    book.record(services)
    services.runners["mrr"].catch_up()

    late = report(services, "2025-03", "2025-05")
    assert late["opening_mrr_minor"] == 22_667 and late["opening_customers"] == 1
    full = report(services, "2025-01", "2025-05")
    assert late["months"] == full["months"][2:]


def test_an_import_recorded_after_live_data_is_classified_in_effective_time(
    services: Services,
) -> None:
    customer = uuid4()
    live = Book()
    live.start(customer, terms(SILVER, 3_000, "month"), on(2026, 2, 1))
    live.record(services)
    services.runners["mrr"].catch_up()
    assert report(services, "2026-02", "2026-02")["months"][0]["new_minor"] == 3_000

    imported = Book()
    old = imported.start(customer, terms(GOLD_MONTHLY, 5_000, "month"), on(2025, 6, 1))
    old.cancel(at_period_end=False, effective_at=on(2025, 9, 15), policy=DunningPolicy())
    imported.save(old)
    imported.record(services)
    services.runners["mrr"].catch_up()

    by_month = {m["month"]: movements(m) for m in report(services, "2025-06", "2026-02")["months"]}
    assert by_month["2025-06"] == (5_000, 5_000, 0, 0, 0, 0, 0, 1)
    assert by_month["2025-09"] == (0, 0, 0, 0, 5_000, 0, 0, 0)
    # Once new, the customer's return in February is a reactivation, no longer new.
    assert by_month["2026-02"] == (3_000, 0, 0, 0, 0, 3_000, 0, 1)


def test_other_currencies_convert_at_the_first_day_of_each_month(services: Services) -> None:
    book = Book()
    book.start(uuid4(), terms(SILVER, 10_000, "month", "EUR"), on(2026, 1, 10))
    book.start(uuid4(), terms(GOLD_MONTHLY, 1_500, "month", "JPY"), on(2026, 2, 10))
    book.record(services)
    services.runners["mrr"].catch_up()
    rates = services.fx_rates
    assert rates is not None
    # ECB euro rates: published on 31 December and 30 January (weekdays), read on the 1st.
    rates.record(
        parse_ecb_csv(
            "Date,USD,JPY,\n2025-12-31,1.1000,160.00,\n2026-01-30,1.2000,150.00,\n"
            "2026-02-27,1.2000,150.00,\n"
        )
    )

    months = report(services, "2026-01", "2026-03")["months"]
    # January: €100 at 1.10; February: at 1.20 (+$10 of FX), plus ¥1,500 = €10 = $12.
    assert [movements(m) for m in months] == [
        (11_000, 11_000, 0, 0, 0, 0, 0, 1),
        (13_200, 1_200, 0, 0, 0, 0, 1_000, 2),
        (13_200, 0, 0, 0, 0, 0, 0, 2),
    ]
    in_yen = report(services, "2026-02", "2026-02", currency="JPY")["months"][0]
    assert in_yen["mrr_minor"] == 10_000 * 150 // 100 + 1_500


def test_a_tenants_own_rate_wins_over_the_platforms_on_the_same_day(services: Services) -> None:
    rates = services.fx_rates
    assert isinstance(rates, PgFxRates)
    rates.record([FxRate(date(2026, 1, 1), "EUR", "USD", Decimal("1.1"))])
    rates.record([FxRate(date(2026, 1, 1), "EUR", "USD", Decimal("1.3"))], scope="acme")
    rates.record([FxRate(date(2026, 1, 5), "EUR", "USD", Decimal("1.2"))])

    assert [r.rate for r in rates.on("acme", date(2026, 1, 2))] == [Decimal("1.3")]
    assert [r.rate for r in rates.on("globex", date(2026, 1, 2))] == [Decimal("1.1")]
    assert [r.rate for r in rates.on("acme", date(2026, 1, 31))] == [Decimal("1.2")]
    assert rates.on("acme", date(2025, 12, 31)) == []


def test_a_month_without_a_rate_is_a_named_error(services: Services) -> None:
    book = Book()
    book.start(uuid4(), terms(SILVER, 10_000, "month", "EUR"), on(2026, 1, 10))
    book.record(services)
    services.runners["mrr"].catch_up()

    with pytest.raises(FxRateMissing) as raised:
        report(services, "2026-01", "2026-02")
    assert raised.value.currency == "EUR" and raised.value.month == date(2026, 1, 1)


def _all_rows(view: Any) -> dict[str, list[tuple]]:
    tables = {}
    with view.datastore.transaction(commit=False) as curs:
        for suffix in view.table_suffixes:
            curs.execute(SQL("SELECT * FROM {}").format(view.table(suffix)))
            tables[suffix] = sorted(tuple(map(str, row.values())) for row in curs.fetchall())
    return tables


def test_a_rebuild_in_other_batches_writes_identical_rows(services: Services) -> None:
    book = Book()
    golden_story(book)
    customer = uuid4()
    book.start(customer, terms(SILVER, 3_000, "month", "EUR"), on(2026, 2, 1))
    old = book.start(customer, terms(GOLD_MONTHLY, 5_000, "month", "EUR"), on(2025, 6, 1))
    old.cancel(at_period_end=False, effective_at=on(2025, 9, 15), policy=DunningPolicy())
    book.save(old)
    book.record(services)
    live = services.runners["mrr"]
    live.batch_size = 2
    live.catch_up()
    before = _all_rows(live.view)
    assert len(before["movements"]) == 8 and before["figures"]

    live.batch_size = 1000  # the rebuild folds the whole log in one batch
    assert rebuild(live, services.serving, services.database_url) == 2

    assert services.serving.serving_view("mrr").name == "mrr_v2"
    assert _all_rows(services.serving.serving_view("mrr")) == before


def test_ledger_fx_import_records_an_ecb_file_for_every_tenant(
    test_settings: Any, tmp_path: Any
) -> None:
    env = {
        "LEDGER_DATABASE_URL": test_settings.database_url,
        "LEDGER_REDIS_URL": test_settings.redis_url,
        "LEDGER_DB_SCHEMA": test_settings.db_schema,
        "LEDGER_REDIS_NAMESPACE": test_settings.redis_namespace,
    }
    good = tmp_path / "eurofxref.csv"
    good.write_text("Date, USD, JPY, \n21 November 2025, 1.0412, 161.14, \n")
    result = CliRunner().invoke(app, ["fx", "import", str(good)], env=env)
    assert result.exit_code == 0, result.output
    assert "Recorded 2 FX rates" in result.output

    bad = tmp_path / "broken.csv"
    bad.write_text("Date,USD\nyesterday,1.0\n")
    failed = CliRunner().invoke(app, ["fx", "import", str(bad)], env=env)
    assert failed.exit_code == 2 and "Traceback" not in failed.output

    services = bootstrap(test_settings)
    try:
        assert services.fx_rates is not None
        rates = services.fx_rates.on("any-tenant", date(2025, 11, 24))
    finally:
        services.close()
    assert [(r.quote, r.rate) for r in rates] == [
        ("JPY", Decimal("161.14")),
        ("USD", Decimal("1.0412")),
    ]


def random_history(rng: random.Random) -> list[Any]:
    """Imported subscriptions of a few customers in two currencies, cancelled, changed and
    reactivated at random effective instants; each subscription's events in the log in a random
    interleaving with the others' (imports after live data)."""
    plans = {c: [terms(str(uuid4()), a, "month", c) for a in (900, 2_900, 9_900)] for c in "UE"}
    customers = [(uuid4(), rng.choice(("USD", "EUR"))) for _ in range(3)]
    per_subscription: list[list[Any]] = []
    for _ in range(rng.randint(1, 7)):
        customer, currency = rng.choice(customers)
        catalogue = plans[currency[0]]
        start = on(2025, 1, 1) + timedelta(days=rng.randrange(400))
        book = Book()
        subscription = book.start(customer, rng.choice(catalogue), start)
        moment = start
        for _ in range(rng.randint(0, 3)):
            moment += timedelta(days=rng.randrange(1, 90))
            action = rng.choice(("cancel", "change", "reactivate"))
            if action == "cancel" and subscription.status.value == "active":
                subscription.cancel(
                    at_period_end=rng.random() < 0.5, effective_at=moment, policy=DunningPolicy()
                )
            elif action == "change" and subscription.status.value == "active":
                if not subscription.state["cancel_at_period_end"]:
                    subscription.change_plan_now(
                        terms=rng.choice(catalogue), quantity=rng.randint(1, 3), effective_at=moment
                    )
            elif action == "reactivate" and subscription.status.value == "cancelled":
                subscription.reactivate_imported(
                    effective_at=moment, now=moment + timedelta(hours=1)
                )
        per_subscription.append(book.events + subscription.collect_events())
    log: list[Any] = []
    while any(per_subscription):
        queue = rng.choice([q for q in per_subscription if q])
        log.append(queue.pop(0))
    return log


def _sums(view: Any) -> tuple[dict, dict]:
    """The customers' contributions added up, and the monthly figures, keyed alike."""
    from_customers: dict[tuple, int] = {}
    from_figures: dict[tuple, int] = {}
    with view.datastore.transaction(commit=False) as curs:
        curs.execute(SQL("SELECT currency, contributions FROM {}").format(view.table("customers")))
        for row in curs.fetchall():
            for month, plan_id, counters in row["contributions"]:
                for counter, value in counters.items():
                    key = (row["currency"], month, plan_id, counter)
                    from_customers[key] = from_customers.get(key, 0) + value
        curs.execute(SQL("SELECT * FROM {}").format(view.table("figures")))
        for row in curs.fetchall():
            for counter in COUNTERS:
                if row[counter]:
                    key = (row["currency"], row["month"].isoformat(), row["plan_id"], counter)
                    from_figures[key] = row[counter]
    return {k: v for k, v in from_customers.items() if v}, from_figures


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seed=st.integers(0, 2**32), batch_size=st.integers(1, 4))
def test_any_history_folds_into_identical_tables_in_any_batches(
    services: Services, seed: int, batch_size: int
) -> None:
    events = random_history(random.Random(seed))
    projection = services.runners["mrr"].projection
    tables = []
    for version, size in ((100, len(events)), (101, batch_size)):
        view = services.serving.view("mrr", version)
        view.drop()
        view.create_table()
        try:
            folder = projection.for_view(view)
            for position, start in enumerate(range(0, len(events), size), start=1):
                with view.batch("test", position - 1, position):
                    folder.process_batch(events[start : start + size], Tracking("test", position))
            tables.append(_all_rows(view))
            # The monthly sums are the customers' own contributions added up: the adjustments
            # of earlier batches leave nothing behind.
            from_customers, from_figures = _sums(view)
            assert from_customers == from_figures
        finally:
            view.drop()
    assert tables[0] == tables[1]
