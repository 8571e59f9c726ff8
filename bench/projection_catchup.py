"""Projection catch-up: how fast a read model replays the log, against the bare library.

The log is filled quickly with N events of realistic shape: customers registering and keeping a
card on file, orders placed and purchased at once (most captured, some declined), later refunds
and cancellations, and the payment attempts' own events, interleaved as commands would write
them. The aggregates are made with the domain classes in memory and their stored events inserted
in bulk with ``recorder.insert_events`` (the tracking is by notification id, so that is all a
projection sees).

Baseline: eventsourcing's ``ApplicationSubscription(app, gt=0)`` iterated until it yielded every
event (select + deserialise, no projection work). Figure: a ``ProjectionRunner`` over a fresh
version of a view, ``catch_up()`` from position 0, notifications per second; for the orders and
the customers read models. ``--profile`` adds a cProfile of each runner over 50k notifications.

    python -m bench.projection_catchup [--n 200000] [--batch-size 1000] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate
from eventsourcing.projection import ApplicationSubscription
from eventsourcing.utils import get_topic
from psycopg.sql import SQL, Identifier

from adapters.bootstrap import Services
from adapters.projection_runner import ProjectionRunner
from application.ledger import Ledger
from bench.common import (
    Stopwatch,
    bench_services,
    comparison,
    database_url,
    positive_int,
    server_summary,
    thousands,
    verdict,
)
from domain.customer import CardDetails, Customer
from domain.order import Order, OrderStatus
from domain.payment_attempt import PaymentAttempt
from projections.base import BatchProjection, BatchView
from projections.customer_summaries import CustomerSummariesProjection, CustomerSummariesView
from projections.order_summaries import OrderSummariesProjection, OrderSummariesView

EVENTS_PER_S_GOAL = 20_000
SHARE_OF_BASELINE_GOAL = 0.30
PROFILE_NOTIFICATIONS = 50_000
INSERT_CHUNK = 1000
DECLINE_CODES = ("generic_decline", "insufficient_funds", "expired_card", "incorrect_cvc")
SKUS = tuple(f"SKU-{n:04d}" for n in range(200))

# Shares of the commands that make up the log (the rest are purchases that succeed).
NEW_CUSTOMER = 0.12
UNPAID_ORDER = 0.03
DECLINED_PURCHASE = 0.08
REFUND = 0.06
CANCEL = 0.04


@dataclass
class LogShape:
    """What was written, to check the read models against after their catch-up."""

    events: int = 0
    by_topic: dict[str, int] = field(default_factory=dict)

    @property
    def customers(self) -> int:
        return self.by_topic.get(get_topic(Customer.Registered), 0)

    @property
    def orders(self) -> int:
        return self.by_topic.get(get_topic(Order.Placed), 0)


class LogWriter:
    """Makes aggregates with the domain classes and appends their events in bulk."""

    def __init__(self, ledger: Ledger, seed: int) -> None:
        self.ledger = ledger
        self.random = random.Random(seed)
        self.tenants = [f"tenant-{n}" for n in range(8)]
        self.customers: list[tuple[Customer, UUID]] = []
        self.paid: list[Order] = []  # still refundable
        self.unpaid: list[Order] = []  # pending or declined: cancellable
        self.buffer: list[Any] = []
        self.shape = LogShape()

    def write(self, n: int) -> LogShape:
        """Append exactly ``n`` events (the last command may be cut short, as a crash would)."""
        while self.shape.events + len(self.buffer) < n:
            self.command()
        del self.buffer[n - self.shape.events :]
        self.flush()
        return self.shape

    def save(self, *aggregates: Aggregate) -> None:
        """What ``Ledger.save`` would append, in the same order."""
        to_stored_event = self.ledger.mapper.to_stored_event
        for aggregate in aggregates:
            self.buffer.extend(to_stored_event(e) for e in aggregate.collect_events())
        if len(self.buffer) >= INSERT_CHUNK:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        self.ledger.recorder.insert_events(self.buffer)
        for stored in self.buffer:
            self.shape.by_topic[stored.topic] = self.shape.by_topic.get(stored.topic, 0) + 1
        self.shape.events += len(self.buffer)
        self.buffer = []

    def command(self) -> None:
        draw = self.random.random()
        if not self.customers or draw < NEW_CUSTOMER:
            self.register_customer()
        elif (draw := draw - NEW_CUSTOMER) < REFUND and self.paid:
            self.refund()
        elif (draw := draw - REFUND) < CANCEL and self.unpaid:
            self.cancel()
        elif (draw := draw - CANCEL) < UNPAID_ORDER:
            self.place_order(payment=None)
        else:
            draw -= UNPAID_ORDER
            self.place_order(payment="declined" if draw < DECLINED_PURCHASE else "succeeded")

    def register_customer(self) -> None:
        number = len(self.customers)
        customer = Customer.register(
            tenant_id=self.random.choice(self.tenants),
            email=f"customer{number}@example.com",
            name=f"Customer {number}",
            country=self.random.choice(("US", "GB", "DE", "FR", "CA")),
            currency="USD",
        )
        self.save(customer)  # registering and attaching a card are two commands
        method_id = uuid4()
        card = CardDetails(
            token=f"tok_sandbox_succeeds_{method_id.hex[:16]}",
            brand="visa",
            last4="4242",
            bin="424242",
            exp_month=12,
            exp_year=2030,
        )
        customer.attach_payment_method(method_id, card)
        self.save(customer)
        self.customers.append((customer, method_id))

    def place_order(self, payment: str | None) -> None:
        customer, method_id = self.random.choice(self.customers)
        lines = [
            {
                "sku": self.random.choice(SKUS),
                "quantity": self.random.randint(1, 3),
                "unit_price_minor": self.random.randint(100, 20_000),
            }
            for _ in range(self.random.randint(1, 3))
        ]
        order = Order.place(
            tenant_id=customer.tenant_id,
            customer_id=customer.id,
            currency="USD",
            lines=lines,
            source=self.random.choice(("api", "api", "checkout", "import")),
        )
        if payment is None:
            self.save(order)
            self.remember(self.unpaid, order)
            return
        attempt = PaymentAttempt(
            tenant_id=order.tenant_id,
            order_id=order.id,
            payment_method_id=method_id,
            kind="purchase",
            gateway="sandbox",
            amount_minor=order.total_minor,
            currency="USD",
        )
        transaction_id = f"ch_sandbox_{attempt.id.hex[:24]}"
        order.request_payment(attempt_id=attempt.id)  # the intent, saved before the call
        if payment == "succeeded":
            attempt.succeed(transaction_id=transaction_id)
            order.record_capture(attempt_id=attempt.id, amount_minor=order.total_minor)
            self.remember(self.paid, order)
        else:
            code = self.random.choice(DECLINE_CODES)
            attempt.decline(decline_code=code, message="declined", transaction_id=transaction_id)
            order.record_decline(attempt_id=attempt.id, decline_code=code)
            self.remember(self.unpaid, order)
        self.save(order, attempt)

    def refund(self) -> None:
        order = self.paid.pop(self.random.randrange(len(self.paid)))
        remaining = order.captured_minor - order.refunded_minor
        amount = remaining if self.random.random() < 0.5 else max(1, remaining // 2)
        refund_id = str(uuid4())
        order.request_refund(refund_id=refund_id, amount_minor=amount, reason="customer request")
        order.complete_refund(refund_id=refund_id)  # intent and outcome, as the command saves
        self.save(order)
        if order.status is OrderStatus.PARTIALLY_REFUNDED:
            self.remember(self.paid, order)

    def cancel(self) -> None:
        order = self.unpaid.pop(self.random.randrange(len(self.unpaid)))
        order.cancel(reason="abandoned")
        self.save(order)

    def remember(self, orders: list[Order], order: Order) -> None:
        """Keep a bounded pool, so later commands reach back a realistic distance."""
        orders.append(order)
        if len(orders) > 5000:
            orders.pop(self.random.randrange(len(orders)))


# Measurements ------------------------------------------------------------------------------------


def prepare_log(services: Services, schema: str) -> None:
    """After the bulk load: vacuum (hint bits, visibility map) and read the table once, so the
    baseline and the runners all read a warm, settled table."""
    table = SQL("{}.{}").format(
        Identifier(schema), Identifier(services.ledger.recorder.events_table_name)
    )
    datastore = services.ledger.factory.datastore  # type: ignore[attr-defined]
    with datastore.get_connection() as conn:
        conn.execute(SQL("VACUUM (ANALYZE) {}").format(table))
        conn.execute(SQL("SELECT count(*), sum(length(state)) FROM {}").format(table))


def subscription_rate(ledger: Ledger, total: int) -> float:
    """The bare library: subscribe from the start and deserialise every event."""
    yielded = 0
    elapsed_s = 0.0
    started = time.perf_counter()
    # The clock stops at the last event, not after stopping the subscription's threads.
    with ApplicationSubscription(app=ledger, gt=0) as subscription:
        for _domain_event, _tracking in subscription:
            yielded += 1
            if yielded == total:
                elapsed_s = time.perf_counter() - started
                break
    if yielded != total:
        raise RuntimeError(f"the subscription yielded {yielded} of {total} events")
    return total / elapsed_s


def new_runner(
    services: Services,
    view_class: type[BatchView],
    projection_class: type[BatchProjection[Any]],
    version: int,
) -> ProjectionRunner:
    """A runner over a fresh version of a view, wired as ``bootstrap`` wires the live ones."""
    view = view_class(services.ledger.factory.datastore, version=version)  # type: ignore[attr-defined]
    view.create_table()
    return ProjectionRunner(
        application_name=services.ledger.name,
        recorder=services.ledger.recorder,  # type: ignore[arg-type]
        mapper=services.ledger.mapper,
        projection=projection_class(view),
        batch_size=services.settings.projection_batch_size,
        poll_interval_s=services.settings.projection_poll_interval_s,
        on_commit=services.waiter.advance,
    )


def count_rows(runner: ProjectionRunner, suffix: str) -> int:
    with runner.view.datastore.transaction(commit=False) as curs:
        curs.execute(SQL("SELECT count(*) AS n FROM {}").format(runner.view.table(suffix)))
        return curs.fetchone()["n"]


PROJECTIONS: dict[
    str, tuple[type[BatchView], type[BatchProjection[Any]], str, Callable[[LogShape], int]]
] = {
    "orders": (OrderSummariesView, OrderSummariesProjection, "orders", lambda s: s.orders),
    "customers": (
        CustomerSummariesView,
        CustomerSummariesProjection,
        "customers",
        lambda s: s.customers,
    ),
}


def catch_up_rate(services: Services, name: str, version: int, shape: LogShape) -> float:
    """A fresh view version caught up from position 0, checked, then dropped."""
    view_class, projection_class, suffix, expected = PROJECTIONS[name]
    runner = new_runner(services, view_class, projection_class, version)
    with Stopwatch() as watch:
        read = runner.catch_up()
    rows = count_rows(runner, suffix)
    runner.view.drop()
    if read != shape.events or rows != expected(shape):
        raise RuntimeError(
            f"{name}: read {read} of {shape.events} notifications, {rows} rows for "
            f"{expected(shape)} aggregates"
        )
    return read / watch.elapsed_s


def profile(services: Services, name: str, version: int, limit: int) -> None:
    """cProfile of one runner over the first ``limit`` notifications."""
    view_class, projection_class, _suffix, _expected = PROJECTIONS[name]
    runner = new_runner(services, view_class, projection_class, version)
    profiler = cProfile.Profile()
    with Stopwatch() as watch:
        profiler.enable()
        while runner.position < limit and runner.process_next_batch():
            pass
        profiler.disable()
    print(
        f"\n## cProfile: {name} runner over {thousands(runner.position)} notifications "
        f"({thousands(runner.position / watch.elapsed_s)} events/s under the profiler)"
    )
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(15)
    print_stages(stats)


def print_stages(stats: pstats.Stats) -> None:
    """The runner's batch split into its stages, from the profile's cumulative times."""
    stages = {
        "select_notifications (read + Notification objects)": "select_notifications",
        "mapper.to_domain_event (deserialise)": "to_domain_event",
        "projection.fold (load rows + apply)": "fold",
        "view.commit_batch (upsert + tracking + notify)": "commit_batch",
    }
    cumulative = {name: 0.0 for name in stages.values()}
    total = 0.0
    for (_file, _line, function), row in stats.stats.items():  # type: ignore[attr-defined]
        if function in cumulative:
            cumulative[function] += row[3]
        if function == "process_next_batch":
            total += row[3]
    print(f"  stages of process_next_batch ({total:.2f} s under the profiler):")
    for label, function in stages.items():
        share = cumulative[function] / total if total else 0.0
        print(f"    {label:<52} {cumulative[function]:6.2f} s  {share:5.1%}")


def print_results(baselines: list[float], rates: dict[str, list[float]]) -> None:
    """Medians of the rounds, beside each other, with the spread of the rounds."""
    baseline = statistics.median(baselines)
    print(f"  baseline rounds: {spread(baselines)}")
    for name, measured in rates.items():
        rate = statistics.median(measured)
        passed = rate >= EVENTS_PER_S_GOAL and rate >= SHARE_OF_BASELINE_GOAL * baseline
        print(
            comparison(
                f"catch-up {name}",
                project=rate,
                baseline=baseline,
                unit="events/s",
                project_label="runner",
                baseline_label="ApplicationSubscription",
                goal=f"goal >= {thousands(EVENTS_PER_S_GOAL)} events/s "
                f"and >= {SHARE_OF_BASELINE_GOAL:.2f}x",
            )
            + f"  [{verdict(passed)}]"
        )
        print(f"    runner rounds: {spread(measured)}")


def spread(values: list[float]) -> str:
    return ", ".join(thousands(value) for value in values) + " events/s"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=positive_int, default=200_000, help="events in the log")
    parser.add_argument("--batch-size", type=positive_int, default=None, help="runner batch size")
    parser.add_argument("--rounds", type=positive_int, default=3, help="measurements per side")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="cProfile each runner over 50k")
    args = parser.parse_args(argv)

    settings: dict[str, Any] = {}
    if args.batch_size:
        settings["projection_batch_size"] = args.batch_size
    print(f"# projection catch-up, n={thousands(args.n)}; {server_summary(database_url())}")
    with bench_services(**settings) as services:
        with Stopwatch() as watch:
            shape = LogWriter(services.ledger, args.seed).write(args.n)
        prepare_log(services, services.settings.db_schema)
        print(
            f"  log: {thousands(shape.events)} events, {thousands(shape.customers)} customers, "
            f"{thousands(shape.orders)} orders, written in {watch.elapsed_s:.1f} s "
            f"({thousands(shape.events / watch.elapsed_s)} events/s); batch size "
            f"{services.settings.projection_batch_size}"
        )
        for topic, count in sorted(shape.by_topic.items()):
            print(f"    {count / shape.events:6.1%}  {topic}")
        baselines: list[float] = []
        rates: dict[str, list[float]] = {name: [] for name in PROJECTIONS}
        version = 1
        for _round in range(args.rounds):
            # Alternating the sides spreads the machine's drift over both.
            baselines.append(subscription_rate(services.ledger, shape.events))
            for name in PROJECTIONS:
                version += 1
                rates[name].append(catch_up_rate(services, name, version, shape))
        print_results(baselines, rates)
        if args.profile:
            limit = min(PROFILE_NOTIFICATIONS, shape.events)
            for name in PROJECTIONS:
                version += 1
                profile(services, name, version, limit)


if __name__ == "__main__":
    main()
