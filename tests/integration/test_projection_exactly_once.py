"""Exactly once with many runners: the advisory lock, the tracking compare-and-set, take-over.

The checks use ``customer_summaries``, whose lifetime value and order count are *accumulated*
from event amounts: an event applied twice doubles them, so these tests fail if a runner ever
applies a batch another runner applied.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from uuid import UUID

import psycopg
import pytest
from psycopg.sql import SQL

from adapters.bootstrap import bootstrap
from adapters.projection_lock import ProjectionLock
from adapters.projection_runner import ProjectionRunner
from projections.customer_summaries import CustomerSummariesProjection, CustomerSummariesView
from tests.integration.conftest import Shop

pytestmark = pytest.mark.integration

WRITERS = 4
ORDERS_PER_WRITER = 12
FOLD_DELAY_S = 0.003


@pytest.fixture(autouse=True)
def slow_fold(monkeypatch):
    """Widen the window between reading a batch and reading the rows it changes.

    Not a synchronisation: it makes the race these tests guard against likely, so that without
    the lock and the compare-and-set a runner does fold a batch onto rows another runner already
    advanced (checked by running these tests against the previous runner).
    """
    fold = CustomerSummariesProjection.fold

    def slow(self, events):
        time.sleep(FOLD_DELAY_S)
        return fold(self, events)

    monkeypatch.setattr(CustomerSummariesProjection, "fold", slow)


def _runner(services, view, *, batch_size: int, lock: bool) -> ProjectionRunner:
    return ProjectionRunner(
        application_name=services.ledger.name,
        recorder=services.ledger.recorder,
        mapper=services.ledger.mapper,
        projection=CustomerSummariesProjection(view),
        batch_size=batch_size,
        poll_interval_s=0.02,
        on_commit=services.waiter.advance,
        lock=ProjectionLock(
            services.database_url, services.settings.db_schema, "customer_summaries"
        )
        if lock
        else None,
    )


def _table_rows(view, suffix: str) -> list[tuple]:
    with view.datastore.transaction(commit=False) as curs:
        curs.execute(SQL("SELECT * FROM {} ORDER BY 1").format(view.table(suffix)))
        return [tuple(row.values()) for row in curs.fetchall()]


def _write_concurrently(services_list, expected: Counter) -> int:
    """Paid orders and refunds from several threads (and processes' ledgers); the head."""
    shops = [Shop(services_list[i % len(services_list)], tenant_id=f"t{i}") for i in range(WRITERS)]
    customers = [shop.customer() for shop in shops]
    errors: list[BaseException] = []
    lock = threading.Lock()

    def write(index: int) -> None:
        shop, (customer_id, method_id) = shops[index], customers[index]
        try:
            for n in range(ORDERS_PER_WRITER):
                amount = 100 + 7 * n + index
                order = shop.paid_order(customer_id, method_id, amount)
                refund = amount // 3 if n % 4 == 0 else 0
                if refund:
                    shop.ledger.refund_order(
                        tenant_id=shop.tenant_id,
                        order_id=UUID(order.body["id"]),
                        amount_minor=refund,
                    )
                with lock:
                    expected[customer_id] += amount - refund
                    expected[(customer_id, "orders")] += 1
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return services_list[0].ledger.recorder.max_notification_id()


def _assert_values(view, expected: Counter) -> None:
    for key, value in expected.items():
        if isinstance(key, tuple):
            continue
        tenant = None
        with view.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT tenant_id FROM {} WHERE customer_id = %s").format(
                    view.table("customers")
                ),
                (key,),
            )
            tenant = curs.fetchone()["tenant_id"]
        row = view.get(tenant, key)
        assert row["lifetime_value_minor"] == value
        assert row["order_count"] == expected[(key, "orders")]


def _assert_equals_a_clean_rebuild(services, view) -> None:
    clean = CustomerSummariesView(services.ledger.factory.datastore, version=99)
    clean.create_table()
    _runner(services, clean, batch_size=1000, lock=False).catch_up()
    for suffix in view.table_suffixes:
        assert _table_rows(view, suffix) == _table_rows(clean, suffix)
    clean.drop()


@pytest.mark.parametrize("with_lock", [True, False], ids=["lock+cas", "cas-only"])
def test_two_runners_of_one_projection_under_concurrent_writes_equal_a_clean_rebuild(
    services, with_lock
):
    """Without the lock both runners race batch for batch; the compare-and-set alone must
    still refuse every batch the other committed first."""
    view = services.customers
    runners = [
        _runner(services, view, batch_size=3, lock=with_lock),
        _runner(services, view, batch_size=7, lock=with_lock),
    ]
    for runner in runners:
        runner.start()
    try:
        expected: Counter = Counter()
        head = _write_concurrently([services], expected)
        assert services.waiter.wait(view, head, timeout_s=20)
    finally:
        for runner in runners:
            runner.stop()
    assert view.position(services.ledger.name) == head
    _assert_values(view, expected)
    _assert_equals_a_clean_rebuild(services, view)


def _until(condition, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_stale_runner_cannot_commit_a_batch_another_runner_committed_first(services):
    """The interleaving that doubles values without the compare-and-set, forced step by step:
    a runner reads a long batch from position p; another commits a short batch from p; the
    first then folds its batch onto the rows the second already advanced."""
    shop = Shop(services)
    customer_id, method_id = shop.customer()
    view = services.customers
    _runner(services, view, batch_size=1000, lock=False).catch_up()
    start = view.position(services.ledger.name)
    first = shop.paid_order(customer_id, method_id, 100)
    for amount in (200, 400):
        shop.paid_order(customer_id, method_id, amount)
    folding, go_on = threading.Event(), threading.Event()

    class PausedAfterReading(CustomerSummariesProjection):
        def fold(self, events):
            folding.set()
            go_on.wait(10)
            return super().fold(events)

    long_runner = _runner(services, view, batch_size=1000, lock=False)
    long_runner.projection = PausedAfterReading(view)
    # The short batch is exactly the first order's events, its capture included.
    short_runner = _runner(services, view, batch_size=first.position - start, lock=False)
    outcomes: dict[str, object] = {}

    def run(name: str, runner: ProjectionRunner) -> None:
        try:
            outcomes[name] = runner.process_next_batch()
        except Exception as error:  # recorded for the assertions
            outcomes[name] = error

    long_thread = threading.Thread(target=run, args=("long", long_runner))
    long_thread.start()
    assert folding.wait(10)
    short_thread = threading.Thread(target=run, args=("short", short_runner))
    short_thread.start()

    def short_is_done_or_blocked() -> bool:
        with psycopg.connect(services.database_url, autocommit=True) as admin:
            waiting = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            ).fetchone()[0]
        return not short_thread.is_alive() or waiting > 0

    assert _until(short_is_done_or_blocked)
    go_on.set()
    long_thread.join(10)
    short_thread.join(10)

    row = view.get("acme", customer_id)
    assert (row["lifetime_value_minor"], row["order_count"]) == (700, 3)
    assert sorted(type(outcome).__name__ for outcome in outcomes.values()) == [
        "StaleRunner",
        "int",
    ]
    _assert_equals_a_clean_rebuild(services, view)


def _backend_pid(lock: ProjectionLock) -> int:
    return lock._conn.info.backend_pid  # the session whose end releases the lock


def test_when_the_lock_holder_dies_the_standby_takes_over(services):
    view = services.customers
    holder = _runner(services, view, batch_size=5, lock=True)
    standby = _runner(services, view, batch_size=5, lock=True)
    holder.start()
    standby_started = False
    try:
        shop = Shop(services)
        customer_id, method_id = shop.customer()
        first = shop.paid_order(customer_id, method_id, 1000)
        assert services.waiter.wait(view, first.position, timeout_s=10)
        assert holder.lock.held
        standby.start()
        standby_started = True

        # The holder's process freezes and dies: its thread stops without releasing anything,
        # then PostgreSQL ends its session (as it does when a client's connection goes away).
        holder._stopping.set()
        holder.wakeup.set()
        holder._thread.join(timeout=10)
        second = shop.paid_order(customer_id, method_id, 2000)
        assert not services.waiter.wait(view, second.position, timeout_s=0.5)  # no one active
        with psycopg.connect(services.database_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (_backend_pid(holder.lock),))

        assert services.waiter.wait(view, second.position, timeout_s=10)
        assert standby.lock.held
        third = shop.paid_order(customer_id, method_id, 4000)
        assert services.waiter.wait(view, third.position, timeout_s=10)
    finally:
        holder.stop()
        if standby_started:
            standby.stop()
    row = view.get("acme", customer_id)
    assert (row["lifetime_value_minor"], row["order_count"]) == (7000, 3)


def test_two_bootstrapped_processes_on_one_schema_count_every_order_once(test_settings):
    """Like two ``ledger serve`` processes: both run every projection's runner."""
    first, second = bootstrap(test_settings), bootstrap(test_settings)
    try:
        for services in (first, second):
            services.start_listener()
            services.listener.connected.wait(5)
            services.start_runners()
        expected: Counter = Counter()
        head = _write_concurrently([first, second], expected)
        for services in (first, second):
            assert services.waiter.wait(services.customers, head, timeout_s=20)
            assert services.waiter.wait(services.orders, head, timeout_s=20)
        active = [
            name
            for services in (first, second)
            for name, runner in services.runners.items()
            if runner.lock.held
        ]
        assert sorted(active) == sorted(first.runners)  # each projection runs exactly once
        _assert_values(first.customers, expected)
        _assert_equals_a_clean_rebuild(first, first.customers)
    finally:
        second.close()
        first.close()
