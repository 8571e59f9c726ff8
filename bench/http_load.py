"""Performance over HTTP: the real service under wrk, each figure beside a same-run baseline.

Starts ``ledger serve`` (the real entrypoint; ``--workers N`` if asked) on the bench's PostgreSQL
and Redis in a fresh schema and namespace, loads ``--customers`` customers with a card on file and
``--orders`` paid orders through the HTTP API, waits for the read models to apply them, then
drives the service with wrk on loopback (``--connections`` connections, ``--duration`` seconds per
round, sides alternating round by round; the round with the median rate is reported):

- ``GET /v1/orders/{id}`` and ``GET /v1/customers/{id}`` (random ids, admin bearer key) beside a
  bare ASGI app (``bench.bare_asgi``: no framework, no auth, the same pool sizes, the same SELECT
  on the same tables) run by uvicorn in another process, with as many processes as the service.
  Budget (ARCHITECTURE §9): >= 0.5x the bare app, p99 < 10 ms.
- ``POST /v1/orders`` with a sandbox purchase and a fresh ``Idempotency-Key`` per request, beside
  raw psycopg at the same concurrency: as many threads, each with its own connection, each
  command one transaction with one INSERT of the very rows one HTTP command appended to the log
  (``bench.write_path.RawWriter``). Budget: >= 1x raw, p99 < 50 ms.
- The resident memory of the service's processes after start, after the load and at the end.

    python -m bench.http_load [--customers 200] [--orders 2000] [--duration 10] [--rounds 2]
                              [--connections 32] [--workers N]
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis
from psycopg.sql import SQL, Identifier

from adapters.settings import Settings
from bench.common import (
    Latencies,
    database_url,
    drop_redis_namespace,
    drop_schema,
    new_schema_name,
    percentile,
    positive_int,
    redis_url,
    server_summary,
    verdict,
)
from bench.loadgen import (
    BareAppProcess,
    ServiceProcess,
    Wrk,
    WrkResult,
    bootstrap_api_key,
    connect,
    events_table,
    get_script,
    median_result,
    post_order_script,
    serve_supports_workers,
    serving_table,
    wait_for_projections,
)
from bench.write_path import LINES, ORDERS_PER_CARD, RawWriter, Template

CARD = {"card_number": "4242424242424242", "exp_month": 12, "exp_year": 2031}
WARMUP_S = 3


@dataclass
class LoadedData:
    customer_ids: list[str]
    payment_method_ids: list[str]
    order_ids: list[str]
    elapsed_s: float


class Client:
    """One keep-alive HTTP client per loading thread."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.local = threading.local()
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {api_key}"}

    def post(self, path: str, body: dict[str, Any], **headers: str) -> httpx.Response:
        client = getattr(self.local, "client", None)
        if client is None:
            client = self.local.client = httpx.Client(
                base_url=self.base_url, headers=self.headers, timeout=30
            )
        response = client.post(path, json=body, headers=headers)
        if response.status_code != 201:
            raise RuntimeError(f"POST {path}: {response.status_code} {response.text}")
        return response


def load_through_api(
    service: ServiceProcess, *, customers: int, orders: int, concurrency: int
) -> LoadedData:
    """Customers with a card on file, then paid orders spread over them, through the HTTP API."""
    client = Client(service.base_url, service.api_key)
    started = time.perf_counter()

    def customer(number: int) -> tuple[str, str]:
        body = {
            "email": f"customer{number}@example.com",
            "name": f"Customer {number}",
            "country": "US",
            "currency": "USD",
        }
        customer_id = client.post("/v1/customers", body).json()["id"]
        method = client.post(f"/v1/customers/{customer_id}/payment-methods", CARD).json()
        return customer_id, method["id"]

    with ThreadPoolExecutor(concurrency) as executor:
        pairs = list(executor.map(customer, range(customers)))

        def order(number: int) -> str:
            customer_id, method_id = pairs[number % len(pairs)]
            body = {
                "customer_id": customer_id,
                "currency": "USD",
                "lines": LINES,
                "payment": {"payment_method_id": method_id, "mode": "purchase"},
            }
            return str(client.post("/v1/orders", body).json()["id"])

        order_ids = list(executor.map(order, range(orders)))
    return LoadedData(
        customer_ids=[c for c, _ in pairs],
        payment_method_ids=[m for _, m in pairs],
        order_ids=order_ids,
        elapsed_s=time.perf_counter() - started,
    )


def wait_until_quiet(service: ServiceProcess, r_url: str, namespace: str) -> None:
    """Read models caught up and the job queue drained, so a baseline round never shares the CPU
    with the service's background work left over from the round before."""
    wait_for_projections(service)
    client = redis.Redis.from_url(r_url)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pending = sum(client.hlen(key) for key in client.scan_iter(f"{namespace}:*.msgs"))
            if pending == 0:
                return
            time.sleep(0.25)
    finally:
        client.close()


# The POST baseline -------------------------------------------------------------------------------


def http_template(
    service: ServiceProcess, db_url: str, schema: str, customer_id: str, method_id: str
) -> Template:
    """The rows one ``POST /v1/orders`` (with purchase and key) appended to the log."""
    table = SQL("{}.{}").format(Identifier(schema), Identifier(events_table(db_url, schema)))
    with connect(db_url) as conn:
        before = conn.execute(SQL("SELECT coalesce(max(notification_id), 0) FROM {}").format(table))
        before_id = before.fetchone()[0]
        response = Client(service.base_url, service.api_key).post(
            "/v1/orders",
            {
                "customer_id": customer_id,
                "currency": "USD",
                "lines": LINES,
                "payment": {"payment_method_id": method_id, "mode": "purchase"},
            },
            **{"Idempotency-Key": "bench-template"},
        )
        position = int(response.headers["X-Ledger-Position"])
        rows = conn.execute(
            SQL(
                "SELECT originator_id, originator_version, topic, state FROM {}"
                " WHERE notification_id > %s AND notification_id <= %s ORDER BY notification_id"
            ).format(table),
            (before_id, position),
        ).fetchall()
    index_of: dict[Any, int] = {}
    return Template(
        rows=tuple(
            (index_of.setdefault(originator, len(index_of)), version, topic, bytes(state))
            for originator, version, topic, state in rows
        ),
        originator_count=len(index_of),
    )


def raw_concurrent(
    writers: Sequence[RawWriter], template: Template, duration_s: float
) -> WrkResult:
    """Each writer in a thread of its own (its own connection), one INSERT transaction per
    command, for ``duration_s``."""
    results = [Latencies() for _ in writers]
    start = threading.Barrier(len(writers) + 1)
    deadline = [0.0]

    def run(writer: RawWriter, latencies: Latencies) -> None:
        start.wait()
        while (now := time.perf_counter()) < deadline[0]:
            writer.write(template.fresh())
            latencies.add(time.perf_counter() - now)

    threads = [
        threading.Thread(target=run, args=pair) for pair in zip(writers, results, strict=True)
    ]
    for thread in threads:
        thread.start()
    deadline[0] = time.perf_counter() + duration_s
    started = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join()
    elapsed_s = time.perf_counter() - started
    return from_latencies([d for latencies in results for d in latencies.durations_s], elapsed_s)


def connect_writers(db_url: str, schema: str, count: int) -> list[RawWriter]:
    """``count`` connections, held for all rounds. The server is shared (max_connections), so
    wait a little for free slots, and say so if the baseline has to run with fewer."""
    writers: list[RawWriter] = []
    deadline = time.monotonic() + 60
    while len(writers) < count:
        try:
            writers.append(RawWriter(db_url, schema, "raw_events"))
        except psycopg.OperationalError:
            if time.monotonic() > deadline and writers:
                print(f"    (raw psycopg: only {len(writers)} of {count} connections available)")
                break
            time.sleep(0.5)
    return writers


def from_latencies(durations_s: Sequence[float], elapsed_s: float) -> WrkResult:
    def ms(percent: float) -> float:
        return percentile(durations_s, percent) * 1000

    return WrkResult(
        requests=len(durations_s),
        duration_s=elapsed_s,
        non_2xx=0,
        socket_errors=0,
        p50_ms=ms(50),
        p95_ms=ms(95),
        p99_ms=ms(99),
        mean_ms=sum(durations_s) / max(1, len(durations_s)) * 1000,
        max_ms=max(durations_s, default=0.0) * 1000,
    )


# Rounds and reporting ----------------------------------------------------------------------------


def alternate(
    sides: dict[str, Callable[[], WrkResult]],
    rounds: int,
    between: Callable[[], None] = lambda: None,
) -> dict[str, WrkResult]:
    """Run each side once per round, in turn (the machine's speed drifts); the median round."""
    results: dict[str, list[WrkResult]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, side in sides.items():
            results[name].append(side())
            between()
    for name, side_results in results.items():
        rates = ", ".join(f"{r.rate_per_s:,.0f}" for r in side_results)
        print(f"    {name} rounds: {rates} req/s", flush=True)
    return {name: median_result(side_results) for name, side_results in results.items()}


def report(
    figure: str,
    ours: WrkResult,
    baseline: WrkResult,
    baseline_label: str,
    *,
    ratio_goal: float,
    p99_goal_ms: float,
    unit: str = "req/s",
) -> None:
    ratio = ours.rate_per_s / baseline.rate_per_s if baseline.rate_per_s else float("nan")
    clean = ours.non_2xx == 0 and ours.socket_errors == 0
    meets = ratio >= ratio_goal and ours.p99_ms < p99_goal_ms and clean
    print(
        f"{figure}: ledger {ours.rate_per_s:,.0f} {unit} | {baseline_label} "
        f"{baseline.rate_per_s:,.0f} {unit} | ratio {ratio:.2f}x "
        f"(goal >= {ratio_goal:g}x and p99 < {p99_goal_ms:g} ms)  [{verdict(meets)}]"
    )
    print(f"    ledger      {ours.summary()}")
    print(f"    {baseline_label:<11} {baseline.summary()}", flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=positive_int, default=200)
    parser.add_argument("--orders", type=positive_int, default=2000)
    parser.add_argument("--duration", type=positive_int, default=10, help="seconds per round")
    parser.add_argument("--rounds", type=positive_int, default=2, help="rounds per side")
    parser.add_argument("--connections", type=positive_int, default=32)
    parser.add_argument("--wrk-threads", type=positive_int, default=1)
    parser.add_argument(
        "--workers", type=positive_int, default=None, help="`ledger serve --workers N`"
    )
    parser.add_argument("--load-concurrency", type=positive_int, default=16)
    parser.add_argument("--skip-post", action="store_true", help="only the GET figures")
    parser.add_argument(
        "--post-customers",
        type=positive_int,
        default=4000,
        help="customers (a card each) the POST rounds pick from at random; each card takes at "
        f"most {ORDERS_PER_CARD} attempts, so enough for the rounds' orders",
    )
    args = parser.parse_args(argv)
    if args.workers is not None and not serve_supports_workers():
        parser.error("this tree's `ledger serve` has no --workers option")
    if args.orders > args.customers * ORDERS_PER_CARD:
        parser.error(f"at most {ORDERS_PER_CARD} orders per customer (the card schemes' limit)")

    db_url, r_url, schema = database_url(), redis_url(), new_schema_name()
    processes = args.workers or 1
    print(
        f"# HTTP load: {args.connections} connections, {args.rounds} x {args.duration} s per "
        f"side, ledger serve with {processes} API process(es); {server_summary(db_url)}",
        flush=True,
    )
    wrk = Wrk()
    service: ServiceProcess | None = None
    bare: BareAppProcess | None = None
    try:
        service = ServiceProcess(
            database_url=db_url,
            redis_url=r_url,
            schema=schema,
            api_key=bootstrap_api_key(),
            workers=args.workers,
        )
        print(f"  service started: {service.rss()}", flush=True)
        data = load_through_api(
            service,
            customers=args.customers,
            orders=args.orders,
            concurrency=args.load_concurrency,
        )
        caught_up_s = wait_for_projections(service)
        print(
            f"  loaded {args.customers:,} customers with a card and {args.orders:,} paid orders "
            f"through the API in {data.elapsed_s:.1f} s (read models caught up "
            f"{caught_up_s:.1f} s later); service {service.rss()}",
            flush=True,
        )
        settings = Settings()  # the pool sizes the service reads from the same environment
        bare = BareAppProcess(
            database_url=db_url,
            schema=schema,
            orders_table=serving_table(db_url, schema, "order_summaries", "orders"),
            customers_table=serving_table(db_url, schema, "customer_summaries", "customers"),
            pool_min=settings.pool_size,
            pool_max=settings.pool_size + settings.pool_max_overflow,
            workers=processes,
        )
        measure_reads(wrk, service, bare, data, args)
        bare.stop()
        bare = None
        if not args.skip_post:
            measure_post(wrk, service, data, args, db_url, r_url, schema)
        print(f"  service at the end: {service.rss()}", flush=True)
    finally:
        try:
            for process in (bare, service):
                if process is not None:
                    process.stop()
        finally:
            wrk.close()
            drop_schema(db_url, schema)
            drop_redis_namespace(r_url, schema)


def measure_reads(
    wrk: Wrk,
    service: ServiceProcess,
    bare: BareAppProcess,
    data: LoadedData,
    args: argparse.Namespace,
) -> None:
    for resource, ids in (("orders", data.order_ids), ("customers", data.customer_ids)):
        paths = wrk.write(f"/v1/{resource}/{id_}" for id_ in ids)
        scripts = {
            "ledger": (service.base_url, get_script(paths, service.api_key)),
            "bare ASGI": (bare.base_url, get_script(paths, None)),
        }

        def side(
            name: str, duration_s: float, scripts: dict[str, tuple[str, str]] = scripts
        ) -> WrkResult:
            url, script = scripts[name]
            return wrk.run(
                url,
                script,
                connections=args.connections,
                threads=args.wrk_threads,
                duration_s=duration_s,
            )

        for name in scripts:
            side(name, WARMUP_S)
        results = alternate(
            {name: (lambda name=name: side(name, args.duration)) for name in scripts},
            args.rounds,
        )
        report(
            f"GET /v1/{resource}/{{id}}, {args.connections} connections",
            results["ledger"],
            results["bare ASGI"],
            "bare ASGI",
            ratio_goal=0.5,
            p99_goal_ms=10,
        )


def measure_post(
    wrk: Wrk,
    service: ServiceProcess,
    data: LoadedData,
    args: argparse.Namespace,
    db_url: str,
    r_url: str,
    schema: str,
) -> None:
    # Fresh customers of their own: the loaded ones already took orders, and no card may take
    # more than ORDERS_PER_CARD attempts (random picks over many cards stay well below it).
    fresh = load_through_api(
        service, customers=args.post_customers, orders=0, concurrency=args.load_concurrency
    )
    pairs = wrk.write(
        f"{c} {m}" for c, m in zip(fresh.customer_ids, fresh.payment_method_ids, strict=True)
    )
    template = http_template(
        service, db_url, schema, fresh.customer_ids[0], fresh.payment_method_ids[0]
    )
    writers = connect_writers(db_url, schema, args.connections)
    try:
        measure_post_rounds(wrk, service, pairs, template, writers, args, r_url, schema)
    finally:
        for writer in writers:
            writer.close()


def measure_post_rounds(
    wrk: Wrk,
    service: ServiceProcess,
    pairs: Path,
    template: Template,
    writers: Sequence[RawWriter],
    args: argparse.Namespace,
    r_url: str,
    schema: str,
) -> None:
    rounds = iter(range(10**6))

    def ledger(duration_s: float) -> WrkResult:
        script = post_order_script(pairs, service.api_key, key_prefix=f"bench-{next(rounds)}-")
        return wrk.run(
            service.base_url,
            script,
            connections=args.connections,
            threads=args.wrk_threads,
            duration_s=duration_s,
        )

    def raw(duration_s: float) -> WrkResult:
        return raw_concurrent(writers, template, duration_s)

    quiet = lambda: wait_until_quiet(service, r_url, schema)  # noqa: E731
    ledger(WARMUP_S)
    quiet()
    raw(WARMUP_S)
    results = alternate(
        {"ledger": lambda: ledger(args.duration), "raw psycopg": lambda: raw(args.duration)},
        args.rounds,
        between=quiet,
    )
    report(
        f"POST /v1/orders with purchase, {args.connections} connections"
        f" (raw: {len(writers)} threads)",
        results["ledger"],
        results["raw psycopg"],
        "raw psycopg",
        ratio_goal=1.0,
        p99_goal_ms=50,
        unit="cmd/s",
    )
    print(f"    rows per command: {template.describe()}")


if __name__ == "__main__":
    main()
