"""The MRR report from its read model: 100,000 subscriptions over 24 months.

Setup: ``--subscriptions`` subscriptions of ~0.7 as many customers (USD 70 %, EUR 20 %, JPY 10 %,
8 plans, monthly and yearly) imported through the real ``Subscription`` aggregate over 24
months, a fifth of them cancelled later, a tenth changing plan, some reactivated; their events
folded by ``MrrProjection`` and committed through its view in batches of ``--batch`` events (the
runner's path, without the log). Euro rates for every month.

Measured (``--rounds`` times, after one warm-up): ``projections.mrr.mrr_report`` in USD over the
24 months (one query of the monthly sums, one of the rates, the conversion), and the same with
``breakdown=plan``. Baselines in the same run: a bare ``SELECT count(*)`` over the movement
table, and the raw ``GROUP BY`` of movements per currency, month and kind (what a report without
monthly sums would start from). Budget: < 200 ms.

    python -m bench.mrr_report [--subscriptions 100000] [--rounds 20] [--batch 5000]
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import uuid4

from eventsourcing.persistence import Tracking
from psycopg.sql import SQL

from adapters.bootstrap import Services
from bench.common import (
    Latencies,
    Stopwatch,
    bench_services,
    database_url,
    positive_int,
    server_summary,
    verdict,
)
from domain.fx import FxRate
from domain.mrr import add_months, months_between
from domain.plan import Terms
from domain.subscription import DunningPolicy, Subscription
from projections.mrr import mrr_report

TENANT_ID = "bench"
FIRST_MONTH = date(2024, 1, 1)
LAST_MONTH = date(2025, 12, 1)
BUDGET_MS = 200
CURRENCIES = (("USD", 70), ("EUR", 20), ("JPY", 10))


def plans(rng: random.Random) -> dict[str, list[Terms]]:
    by_currency: dict[str, list[Terms]] = {}
    for currency, _ in CURRENCIES:
        scale = 100 if currency == "JPY" else 1
        by_currency[currency] = [
            Terms(str(uuid4()), amount * scale, currency, interval, 1)
            for amount, interval in (
                (900, "month"),
                (2_900, "month"),
                (9_900, "month"),
                (29_900, "month"),
                (9_000, "year"),
                (29_000, "year"),
                (99_000, "year"),
                (299_000, "year"),
            )
        ]
    return by_currency


def instant(rng: random.Random, after: datetime | None = None) -> datetime:
    start = after or datetime(2024, 1, 1, tzinfo=UTC)
    end = datetime(2025, 12, 31, tzinfo=UTC)
    return start + timedelta(seconds=rng.randrange(max(1, int((end - start).total_seconds()))))


def history(count: int, rng: random.Random) -> list[Any]:
    """The events of ``count`` imported subscriptions, in an order a log could have."""
    terms = plans(rng)
    weights = [w for _, w in CURRENCIES]
    customers = [
        (uuid4(), rng.choices([c for c, _ in CURRENCIES], weights)[0])
        for _ in range(int(count * 0.7))
    ]
    policy, events = DunningPolicy(), []
    for _ in range(count):
        customer_id, currency = rng.choice(customers)
        plan = rng.choice(terms[currency])
        started = instant(rng)
        subscription = Subscription.start(
            tenant_id=TENANT_ID,
            customer_id=customer_id,
            terms=plan,
            quantity=rng.choice((1, 1, 1, 2, 5)),
            payment_method_id="pm",
            trial_days=0,
            effective_at=started,
            now=started + timedelta(hours=1),
            imported=True,
        )
        draw = rng.random()
        if draw < 0.1:
            other = [t for t in terms[currency] if t.interval == plan.interval]
            subscription.change_plan_now(
                terms=rng.choice(other), quantity=1, effective_at=instant(rng, started)
            )
        elif draw < 0.3:
            ended = instant(rng, started)
            subscription.cancel(at_period_end=False, effective_at=ended, policy=policy)
            if draw < 0.13:
                subscription.reactivate_imported(
                    effective_at=ended + timedelta(days=20), now=ended + timedelta(days=20, hours=1)
                )
        events += subscription.collect_events()
    return events


def load(services: Services, events: list[Any], batch: int) -> float:
    """Fold and commit the events through the projection's own path; returns seconds."""
    projection = services.runners["mrr"].projection
    view = services.mrr
    with Stopwatch() as watch:
        for position, start in enumerate(range(0, len(events), batch), start=1):
            with view.batch("bench", position - 1, position):
                projection.process_batch(events[start : start + batch], Tracking("bench", position))
    return watch.elapsed_s


def record_rates(services: Services) -> None:
    rates = []
    for index, month in enumerate(
        [add_months(FIRST_MONTH, -1), *months_between(FIRST_MONTH, LAST_MONTH)]
    ):
        rates.append(FxRate(month, "EUR", "USD", Decimal("1.08") + Decimal(index) / 1000))
        rates.append(FxRate(month, "EUR", "JPY", Decimal("158.5") + Decimal(index) / 10))
    assert services.fx_rates is not None
    services.fx_rates.record(rates)


def timed(rounds: int, call: Any) -> Latencies:
    call()  # warm-up: plans, connections
    latencies = Latencies()
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        latencies.add(time.perf_counter() - started)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=positive_int, default=100_000)
    parser.add_argument("--rounds", type=positive_int, default=20)
    parser.add_argument("--batch", type=positive_int, default=5_000, help="events per fold")
    args = parser.parse_args()
    print(
        f"# MRR report, {args.subscriptions} subscriptions, 24 months; "
        f"{server_summary(database_url())}"
    )
    rng = random.Random(20_260_801)
    with Stopwatch() as built:
        events = history(args.subscriptions, rng)
    print(f"setup: {len(events):,} events built in {built.elapsed_s:.1f} s", flush=True)
    with bench_services() as services:
        folded_s = load(services, events, args.batch)
        print(
            f"setup: folded and committed in {folded_s:.1f} s "
            f"({len(events) / folded_s:,.0f} events/s)"
        )
        record_rates(services)
        view = services.mrr
        with view.datastore.cursor() as curs:
            curs.execute("ANALYZE")
            curs.execute(SQL("SELECT count(*) AS n FROM {}").format(view.table("figures")))
            figure_rows = curs.fetchone()["n"]
            curs.execute(SQL("SELECT count(*) AS n FROM {}").format(view.table("movements")))
            movement_rows = curs.fetchone()["n"]
        print(f"read model: {movement_rows:,} movements, {figure_rows:,} monthly figure rows")

        def report(by_plan: bool = False) -> dict[str, Any]:
            return mrr_report(
                view,
                services.fx_rates,
                TENANT_ID,
                currency="USD",
                first=FIRST_MONTH,
                last=LAST_MONTH,
                by_plan=by_plan,
            )

        def count_movements() -> None:
            with view.datastore.cursor() as curs:
                curs.execute(SQL("SELECT count(*) FROM {}").format(view.table("movements")))
                curs.fetchall()

        def group_movements() -> None:
            with view.datastore.cursor() as curs:
                curs.execute(
                    SQL(
                        "SELECT currency, month, kind, sum(amount_minor), count(*) FROM {}"
                        " WHERE tenant_id = %s GROUP BY currency, month, kind"
                    ).format(view.table("movements")),
                    (TENANT_ID,),
                )
                curs.fetchall()

        last = report()["months"][-1]
        print(
            f"check: MRR of {LAST_MONTH:%Y-%m} {last['mrr_minor'] / 100:,.2f} USD, "
            f"{last['customers']:,} customers"
        )
        results = {
            "report (USD, 24 months)": timed(args.rounds, report),
            "report with breakdown=plan": timed(args.rounds, lambda: report(by_plan=True)),
            "baseline: SELECT count(*) over movements": timed(args.rounds, count_movements),
            "baseline: raw GROUP BY over movements": timed(args.rounds, group_movements),
        }
    for name, latencies in results.items():
        print(f"{name}: {latencies.summary()}")
    p99 = results["report (USD, 24 months)"].percentile_ms(99)
    baseline = results["baseline: raw GROUP BY over movements"].percentile_ms(50)
    print(
        f"report p99 {p99:.1f} ms vs raw GROUP BY p50 {baseline:.1f} ms "
        f"(ratio {p99 / baseline:.2f}x); budget < {BUDGET_MS} ms: {verdict(p99 < BUDGET_MS)}"
    )


if __name__ == "__main__":
    main()
