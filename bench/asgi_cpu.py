"""CPU per request of the service's ASGI app beside the bare ASGI app, in one process, no sockets.

``bench.http_load`` measures throughput over loopback, which on a shared 2-core machine moves
±30 % with whatever else runs. This bench measures what the request path itself costs, which
moves much less: the CPU time (``time.process_time``) this process spends per request when
``--concurrency`` coroutines call the app directly on one event loop (a minimal ASGI driver, no
HTTP parsing, no socket), for

- the service: ``api.app.create_app(services)`` with its lifespan (the async read pool open),
  authenticated with an admin key, on read models filled through the ledger's commands;
- the bare app: ``bench.bare_asgi.app`` on the same serving tables and pool sizes (the same
  baseline as ``bench.http_load``).

The two sides alternate in rounds of ``--n`` requests; each figure is the median round. Both
include the SELECT's client side (psycopg) and its wait; PostgreSQL's CPU is not counted.

    python -m bench.asgi_cpu [--n 2000] [--rounds 5] [--concurrency 32] [--orders 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from uuid import UUID

from bench.common import bench_services, positive_int, server_summary
from bench.write_path import ORDERS_PER_CARD

TENANT_ID = "default"
CARD = "4242424242424242"
Asgi = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def load(services: Any, customers: int, orders: int) -> tuple[list[UUID], list[UUID]]:
    """Customers with a card and paid orders, through the ledger's commands."""
    ledger = services.ledger
    customer_ids, methods, order_ids = [], [], []
    for number in range(customers):
        customer = ledger.register_customer(
            tenant_id=TENANT_ID,
            email=f"c{number}@example.com",
            name=f"C {number}",
            country="US",
            currency="USD",
        )
        customer_id = UUID(customer.body["id"])
        method = ledger.attach_payment_method(
            tenant_id=TENANT_ID,
            customer_id=customer_id,
            card_number=CARD,
            exp_month=12,
            exp_year=2031,
        )
        customer_ids.append(customer_id)
        methods.append(method.body["id"])
    for number in range(orders):
        index = number % customers
        placed = ledger.place_order(
            tenant_id=TENANT_ID,
            customer_id=customer_ids[index],
            currency="USD",
            lines=[{"sku": "SKU-1", "quantity": 2, "unit_price_minor": 1250}],
            payment={"payment_method_id": methods[index], "mode": "purchase"},
        )
        order_ids.append(UUID(placed.body["id"]))
    return customer_ids, order_ids


async def call(app: Asgi, path: str, headers: list[tuple[bytes, bytes]]) -> int:
    """One GET through ``app``; returns the status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def lifespan(app: Asgi) -> tuple[asyncio.Task[None], asyncio.Queue[dict[str, Any]]]:
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    started = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()

    task = asyncio.create_task(app({"type": "lifespan", "state": {}}, inbox.get, send))
    await inbox.put({"type": "lifespan.startup"})
    await asyncio.wait_for(started.wait(), 30)
    return task, inbox


async def cpu_per_request_us(
    app: Asgi, paths: Sequence[str], headers: list[tuple[bytes, bytes]], concurrency: int
) -> float:
    queue = list(paths)

    async def client() -> None:
        while queue:
            status = await call(app, queue.pop(), headers)
            if status != 200:
                raise RuntimeError(f"status {status}")

    started = time.process_time()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return (time.process_time() - started) / len(paths) * 1e6


async def measure(args: argparse.Namespace, services: Any, serving: dict[str, str]) -> None:
    customer_ids, order_ids = await asyncio.to_thread(load, services, args.customers, args.orders)
    services.start_listener()
    services.start_runners(["order_summaries", "customer_summaries"])
    head = services.ledger.recorder.max_notification_id()
    for view in (services.orders, services.customers):
        assert services.waiter.wait(view, head, timeout_s=60)
    settings = services.settings
    os.environ.update(
        {
            "BENCH_BARE_DATABASE_URL": services.database_url,
            "BENCH_BARE_SCHEMA": settings.db_schema,
            "BENCH_BARE_ORDERS_TABLE": serving["orders"],
            "BENCH_BARE_CUSTOMERS_TABLE": serving["customers"],
            "BENCH_BARE_TENANT_ID": TENANT_ID,
            "BENCH_BARE_POOL_MIN": str(settings.pool_size),
            "BENCH_BARE_POOL_MAX": str(settings.pool_size + settings.pool_max_overflow),
        }
    )
    from api.app import create_app
    from bench import bare_asgi  # reads the environment above at import

    key = services.access.create_key(TENANT_ID, "admin")
    apps: dict[str, tuple[Asgi, list[tuple[bytes, bytes]]]] = {
        "service": (create_app(services), [(b"authorization", f"Bearer {key}".encode())]),
        "bare ASGI": (bare_asgi.app, []),
    }
    lifespans = [await lifespan(app) for app, _ in apps.values()]
    kinds = {
        "GET /v1/orders/{id}": [f"/v1/orders/{order_id}" for order_id in order_ids],
        "GET /v1/customers/{id}": [f"/v1/customers/{c}" for c in customer_ids],
    }
    for kind, ids in kinds.items():
        rounds: dict[str, list[float]] = {name: [] for name in apps}
        for _ in range(args.rounds + 1):  # the first round warms up (pools, prepared statements)
            paths = [random.choice(ids) for _ in range(args.n)]
            for name, (app, headers) in apps.items():
                rounds[name].append(await cpu_per_request_us(app, paths, headers, args.concurrency))
        ours, bare = (statistics.median(rounds[name][1:]) for name in apps)
        print(
            f"{kind}, {args.concurrency} concurrent: service {ours:,.0f} us CPU/request | "
            f"bare ASGI {bare:,.0f} us | ratio {bare / ours:.2f}x of the bare app's rate"
        )
        for name in apps:
            print(f"    {name:9} rounds: " + ", ".join(f"{r:,.0f}" for r in rounds[name][1:]))
    for task, inbox in lifespans:
        await inbox.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(task, 10)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=positive_int, default=2000, help="requests per round")
    parser.add_argument("--rounds", type=positive_int, default=5)
    parser.add_argument("--concurrency", type=positive_int, default=32)
    parser.add_argument("--customers", type=positive_int, default=50)
    parser.add_argument("--orders", type=positive_int, default=200)
    args = parser.parse_args(argv)
    if args.orders > args.customers * ORDERS_PER_CARD:
        parser.error(f"at most {ORDERS_PER_CARD} orders per customer (the card schemes' limit)")
    with bench_services() as services:
        print(f"# ASGI CPU per request; {server_summary(services.database_url)}")
        serving = {
            "orders": services.orders.table("orders"),
            "customers": services.customers.table("customers"),
        }
        names = {
            suffix: table.as_string().split(".")[-1].strip('"') for suffix, table in serving.items()
        }
        asyncio.run(measure(args, services, names))


if __name__ == "__main__":
    main()
