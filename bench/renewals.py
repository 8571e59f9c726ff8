"""Renewal run: due subscriptions renewed through the sandbox gateway, against raw psycopg.

Setup (not timed): ``--n`` subscriptions to a monthly plan, each for a customer and a card of its
own, imported (nothing is charged) a month before an instant just after the set-up ends, so they
all fall due then, on the real clock; the subscriptions read model catches up.

Timed: the worker's renewal path, end to end. ``BillingScheduler.tick`` lists the due
subscriptions from the read model and enqueues one message each (one round trip to Redis);
``--processes`` ``ledger worker`` processes (one per core, ``--threads`` each) run
``Ledger.advance_subscription`` for each: the renewal
order, its payment intent and the subscription's ``ChargeRequested`` in one transaction, the
sandbox gateway call, the outcome in a second. The clock stops when the sandbox's own books hold
``--n`` approved charges. The figure is renewals per minute; the budget is 10,000 per minute.

Beside it, in the same run: the foundation's raw baseline, plain psycopg writing the rows one
renewal writes (sampled from a renewal), one transaction per command at one caller — the
same floor ``bench.write_path`` measures, in renewals per minute.

    python -m bench.renewals [--n 10000] [--processes 2] [--threads 8]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from bench.common import (
    Latencies,
    bench_services,
    comparison,
    database_url,
    positive_int,
    server_summary,
    verdict,
)
from bench.routed_purchases import new_card
from bench.write_path import RawWriter, sample_template, timed
from domain.plan import add_months

TENANT_ID = "bench-renewals"
BUDGET_PER_MIN = 10_000


def subscribe_all(services: Any, n: int, started: datetime) -> list[UUID]:
    ledger = services.ledger
    plan = ledger.create_plan(
        tenant_id=TENANT_ID,
        code="monthly",
        name="Monthly",
        currency="USD",
        amount_minor=1900,
        interval="month",
    ).body
    ids = []
    for index in range(n):
        customer = ledger.register_customer(
            tenant_id=TENANT_ID,
            email=f"renew-{index}@example.com",
            name="Renewal Bench",
            country="US",
            currency="USD",
        ).body
        card_number, exp_year = new_card()
        method = ledger.attach_payment_method(
            tenant_id=TENANT_ID,
            customer_id=UUID(customer["id"]),
            card_number=card_number,
            exp_month=12,
            exp_year=exp_year,
        ).body
        subscription = ledger.create_subscription(
            tenant_id=TENANT_ID,
            customer_id=UUID(customer["id"]),
            plan_id=UUID(plan["id"]),
            payment_method_id=UUID(method["id"]),
            effective_at=started,
        ).body
        ids.append(UUID(subscription["id"]))
    return ids


def approved_charges(services: Any) -> int:
    with services.ledger.factory.datastore.transaction(commit=False) as curs:
        curs.execute(
            f"SELECT count(*) AS n FROM {services.settings.db_schema}.sandbox_transactions"
            " WHERE status = 'succeeded'"
        )
        row = curs.fetchone()
    return int(row["n"])


def worker_processes(services: Any, count: int, threads: int) -> list[subprocess.Popen[bytes]]:
    """``count`` ``ledger worker`` processes on the bench's schema and namespace (as ``ledger
    serve`` runs its job worker as a child process)."""
    settings = services.settings
    env = {
        **os.environ,
        "LEDGER_DATABASE_URL": services.database_url,
        "LEDGER_REDIS_URL": services.redis_url,
        "LEDGER_DB_SCHEMA": settings.db_schema,
        "LEDGER_REDIS_NAMESPACE": settings.redis_namespace,
        "LEDGER_BILLING_INTERVAL_S": "3600",
        "LEDGER_LOG_LEVEL": "WARNING",
    }
    return [
        subprocess.Popen(
            [sys.executable, "-m", "api.cli", "worker", "--threads", str(threads)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=positive_int, default=10_000)
    parser.add_argument("--threads", type=positive_int, default=8)
    parser.add_argument(
        "--processes", type=positive_int, default=2, help="worker processes (one per core)"
    )
    args = parser.parse_args(argv)
    print(
        f"renewal run: {args.n:,} due subscriptions, {args.processes} worker processes of "
        f"{args.threads} threads"
    )
    print(f"  {server_summary(database_url())}")
    with bench_services(billing_interval_s=3600) as services:
        ledger = services.ledger
        # Every subscription's period ends at ``due``: imported a month before it, with the
        # set-up's time to spare, so the workers (on the real clock) find them all due then.
        due = datetime.now(UTC) + timedelta(seconds=30 + args.n / 80)
        setup = time.perf_counter()
        ids = subscribe_all(services, args.n + 1, add_months(due, -1))
        services.start_runners(["subscriptions"])
        services.start_listener()
        head = ledger.recorder.max_notification_id() or 0
        view = services.subscriptions
        while view.position(ledger.name) < head:
            time.sleep(0.2)
        setup_s = time.perf_counter() - setup
        print(f"  setup: {args.n + 1:,} imported subscriptions in {setup_s:.0f} s")
        workers = worker_processes(services, args.processes, args.threads)
        try:
            while datetime.now(UTC) < due:
                time.sleep(0.1)
            # The rows one renewal writes, for the raw side (this subscription is not in the run).
            template = sample_template(
                ledger,
                lambda: ledger.advance_subscription(tenant_id=TENANT_ID, subscription_id=ids[-1]),
            )
            while view.position(ledger.name) < (ledger.recorder.max_notification_id() or 0):
                time.sleep(0.1)
            base = approved_charges(services)
            began = time.perf_counter()
            sent = services.billing.tick()
            while approved_charges(services) - base < args.n:
                time.sleep(0.05)
                if time.perf_counter() - began > 1800:
                    raise RuntimeError("the renewal run did not finish within 30 minutes")
            elapsed_s = time.perf_counter() - began
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(timeout=30)
        per_min = args.n / elapsed_s * 60

        raw = RawWriter(database_url(), services.settings.db_schema, "raw_events")
        floor = Latencies()
        timed(floor, lambda: raw.write(template.fresh()), min(args.n, 3000))
        raw.close()
        raw_per_min = floor.rate_per_s * 60

        print(
            comparison(
                "renewals through the sandbox gateway",
                project=per_min,
                baseline=raw_per_min,
                unit="renewals/min",
                baseline_label="raw psycopg, 1 caller",
                goal=f"budget >= {BUDGET_PER_MIN:,}/min",
            )
            + f"  [{verdict(per_min >= BUDGET_PER_MIN)}]"
        )
        print(f"    {sent:,} enqueued by one tick; {args.n:,} charged in {elapsed_s:.1f} s")
        print(f"    raw psycopg {floor.summary()}")
        print(f"    rows per renewal: {template.describe()}")


if __name__ == "__main__":
    main()
