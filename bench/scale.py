"""Scale: the "cross-border e-commerce CRM" seed system, read by 1,000 keep-alive connections.

Loads ``--customers`` customers (each registered and given a card on file) and ``--orders`` orders
paid by a sandbox purchase, spread over them, through the write path: ``Ledger`` commands called
by ``--threads`` threads at once in the bench process, so group commit batches their saves. Then
starts ``ledger serve`` on that schema (its read models catch up from zero and its worker sends
the order confirmations; both are timed) and drives it with wrk, ``--connections`` keep-alive
connections on ``--wrk-threads`` threads, each request either ``GET /v1/customers/{id}`` or
``GET /v1/orders?customer_id={id}`` (a page of 20) of a random customer. Beside it, in the same
run, the bare ASGI app (``bench.bare_asgi``) doing the same SELECTs on the same tables with the
same connections. Prints the service's resident memory. Budget (ARCHITECTURE §9): p95 < 200 ms.

The defaults are the budget's size (100,000 customers, 1,000,000 orders); see bench/README.md for
how long that takes. ``--customers 10000 --orders 100000`` runs in a few minutes.

    python -m bench.scale [--customers 100000] [--orders 1000000] [--threads 16]
                          [--connections 1000] [--wrk-threads 2] [--duration 30] [--rounds 1]
                          [--workers N]
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from collections.abc import Callable, Sequence
from uuid import UUID

import redis

from adapters.settings import Settings
from application.ledger import Ledger
from bench.common import bench_services, database_url, positive_int, server_summary, thousands
from bench.http_load import alternate
from bench.loadgen import (
    TENANT_ID,
    BareAppProcess,
    ServiceProcess,
    Wrk,
    WrkResult,
    bootstrap_api_key,
    get_script,
    serve_supports_workers,
    serving_table,
    wait_for_projections,
)
from bench.write_path import LINES, ORDERS_PER_CARD

P95_GOAL_MS = 200
PATHS_MAX = 200_000  # random customers the wrk script picks from (each gives two paths)
COUNTRIES = ("US", "GB", "DE", "FR", "JP", "BR", "AU", "CA", "IN", "MX")
CURRENCIES = ("USD", "GBP", "EUR", "EUR", "JPY", "BRL", "AUD", "CAD", "INR", "MXN")


def in_parallel(threads: int, total: int, work: Callable[[int], None], label: str) -> float:
    """Call ``work(i)`` for i in range(total) on ``threads`` threads; return commands/s."""
    counter = iter(range(total))
    lock = threading.Lock()
    done = [0]
    started = time.perf_counter()
    step = max(1, total // 10)

    def run() -> None:
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                return
            work(index)
            with lock:
                done[0] += 1
                if done[0] % step == 0:
                    elapsed_s = time.perf_counter() - started
                    print(
                        f"    {label}: {thousands(done[0])} of {thousands(total)} "
                        f"({thousands(done[0] / elapsed_s)}/s)",
                        flush=True,
                    )

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if done[0] != total:
        raise RuntimeError(f"{label}: {done[0]} of {total} done (a thread failed)")
    return total / (time.perf_counter() - started)


def load(ledger: Ledger, customers: int, orders: int, threads: int) -> list[str]:
    """Customers with a card, then paid orders spread over them; returns the customer ids."""
    pairs: list[tuple[UUID, str, str]] = [None] * customers  # type: ignore[list-item]

    def customer(index: int) -> None:
        country = COUNTRIES[index % len(COUNTRIES)]
        currency = CURRENCIES[index % len(CURRENCIES)]
        result = ledger.register_customer(
            tenant_id=TENANT_ID,
            email=f"buyer{index}@example.com",
            name=f"Buyer {index}",
            country=country,
            currency=currency,
        )
        customer_id = UUID(result.body["id"])
        method = ledger.attach_payment_method(
            tenant_id=TENANT_ID,
            customer_id=customer_id,
            card_number="4242424242424242",
            exp_month=12,
            exp_year=2031,
        )
        pairs[index] = (customer_id, method.body["id"], currency)

    def order(index: int) -> None:
        customer_id, method_id, currency = pairs[index % customers]
        ledger.place_order(
            tenant_id=TENANT_ID,
            customer_id=customer_id,
            currency=currency,
            lines=LINES,
            payment={"payment_method_id": method_id, "mode": "purchase"},
        )

    rate = in_parallel(threads, customers, customer, "customers")
    print(f"  customers: {thousands(rate)} customers/s (2 commands each)", flush=True)
    rate = in_parallel(threads, orders, order, "orders")
    print(f"  orders: {thousands(rate)} paid orders/s", flush=True)
    return [str(customer_id) for customer_id, _, _ in pairs]


def wait_for_jobs(namespace: str, redis_url: str) -> float:
    """Seconds until the worker has no message left (the order confirmations)."""
    client = redis.Redis.from_url(redis_url)
    started = time.monotonic()
    try:
        while any(client.hlen(key) for key in client.scan_iter(f"{namespace}:*.msgs")):
            time.sleep(1)
    finally:
        client.close()
    return time.monotonic() - started


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=positive_int, default=100_000)
    parser.add_argument("--orders", type=positive_int, default=1_000_000)
    parser.add_argument("--threads", type=positive_int, default=16, help="loading callers")
    parser.add_argument("--connections", type=positive_int, default=1000)
    parser.add_argument("--wrk-threads", type=positive_int, default=2)
    parser.add_argument("--duration", type=positive_int, default=30, help="seconds per round")
    parser.add_argument("--rounds", type=positive_int, default=1)
    parser.add_argument("--workers", type=positive_int, default=None)
    args = parser.parse_args(argv)
    if args.workers is not None and not serve_supports_workers():
        parser.error("this tree's `ledger serve` has no --workers option")
    if args.orders > args.customers * ORDERS_PER_CARD:
        parser.error(f"at most {ORDERS_PER_CARD} orders per customer (the card schemes' limit)")
    print(
        f"# scale: {thousands(args.customers)} customers, {thousands(args.orders)} orders, "
        f"{args.connections} connections; {server_summary(database_url())}",
        flush=True,
    )
    wrk = Wrk()
    with bench_services(pool_size=args.threads, pool_max_overflow=4) as services:
        schema = services.settings.db_schema
        started = time.perf_counter()
        customer_ids = load(services.ledger, args.customers, args.orders, args.threads)
        print(f"  loaded in {time.perf_counter() - started:.0f} s", flush=True)
        service = bare = None
        try:
            service = ServiceProcess(
                database_url=services.database_url,
                redis_url=services.redis_url,
                schema=schema,
                api_key=bootstrap_api_key(),
                workers=args.workers,
            )
            caught_up_s = wait_for_projections(service, timeout_s=4 * 3600)
            jobs_s = wait_for_jobs(schema, services.redis_url)
            print(
                f"  service: read models caught up from zero in {caught_up_s:.0f} s, "
                f"confirmations sent {jobs_s:.0f} s later; {service.rss()}",
                flush=True,
            )
            pool = Settings()  # the pool sizes the service reads from the same environment
            bare = BareAppProcess(
                database_url=services.database_url,
                schema=schema,
                orders_table=serving_table(
                    services.database_url, schema, "order_summaries", "orders"
                ),
                customers_table=serving_table(
                    services.database_url, schema, "customer_summaries", "customers"
                ),
                pool_min=pool.pool_size,
                pool_max=pool.pool_size + pool.pool_max_overflow,
                workers=args.workers or 1,
            )
            sample = random.Random(7).sample(customer_ids, min(len(customer_ids), PATHS_MAX // 2))
            paths = wrk.write(
                path
                for id_ in sample
                for path in (f"/v1/customers/{id_}", f"/v1/orders?customer_id={id_}")
            )
            scripts = {
                "ledger": (service.base_url, get_script(paths, service.api_key)),
                "bare ASGI": (bare.base_url, get_script(paths, None)),
            }

            def side(name: str, duration_s: float) -> WrkResult:
                url, script = scripts[name]
                return wrk.run(
                    url,
                    script,
                    connections=args.connections,
                    threads=args.wrk_threads,
                    duration_s=duration_s,
                    timeout_s=30,
                )

            for name in scripts:
                side(name, 5)
            results = alternate(
                {name: (lambda name=name: side(name, args.duration)) for name in scripts},
                args.rounds,
            )
            ours, baseline = results["ledger"], results["bare ASGI"]
            clean = ours.non_2xx == 0 and ours.socket_errors == 0
            meets = ours.p95_ms < P95_GOAL_MS and clean
            print(
                f"reads at {args.connections} connections (customer or order list): ledger p95 "
                f"{ours.p95_ms:.0f} ms | bare ASGI p95 {baseline.p95_ms:.0f} ms | ledger "
                f"{ours.rate_per_s:,.0f} req/s, bare {baseline.rate_per_s:,.0f} req/s, ratio "
                f"{ours.rate_per_s / baseline.rate_per_s:.2f}x (goal p95 < {P95_GOAL_MS} ms)  "
                f"[{'MEETS' if meets else 'MISSES'}]"
            )
            print(f"    ledger      {ours.summary()}")
            print(f"    bare ASGI   {baseline.summary()}")
            print(f"  service at the end: {service.rss()}", flush=True)
        finally:
            for process in (bare, service):
                if process is not None:
                    process.stop()
            wrk.close()


if __name__ == "__main__":
    main()
