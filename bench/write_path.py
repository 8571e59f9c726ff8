"""Command write path: ``Ledger.place_order`` with a sandbox purchase, against raw psycopg.

The ledger's figure is commands per second (and per-command latency) of ``place_order`` for one
customer with a card on file, in PostgreSQL. The baseline, measured in the same run, is one plain
psycopg connection (autocommit off) that writes, in one transaction per command, the same rows the
ledger wrote for one command (same count, topics, versions and state bytes, fresh originator ids)
into a table shaped like the ledger's events table. Runs are interleaved in blocks so both sides
see the same server state (table size, checkpoints, autovacuum).

A second pass repeats both with an ``Idempotency-Key`` per command (one more row each).
``--callers N`` (N > 1) adds a pass with N threads calling ``place_order`` at once (each for a
customer of its own), beside the raw floor at one caller, interleaved the same way: group commit
lets concurrent commands share a commit. Budget (ARCHITECTURE §9, issue 6): >= 3x the raw floor
at 16 callers. ``--breakdown`` also times the pieces of the ledger's command on their own.

    python -m bench.write_path [--n 2000] [--warmup 100] [--block 100] [--callers 16]
                               [--breakdown]
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import StoredEvent
from psycopg.sql import SQL, Identifier

from application.ledger import Ledger
from bench.common import (
    Latencies,
    bench_services,
    comparison,
    database_url,
    positive_int,
    server_summary,
    verdict,
)
from domain.card_usage import SCHEME_LIMITS

TENANT_ID = "bench"
LINES = [
    {"sku": "SKU-MUG-RED", "quantity": 2, "unit_price_minor": 1250},
    {"sku": "SKU-TEE-L", "quantity": 1, "unit_price_minor": 2400},
]


@dataclass(frozen=True)
class Template:
    """The rows one command wrote: (originator index, version, topic, state)."""

    rows: tuple[tuple[int, int, str, bytes], ...]
    originator_count: int

    def describe(self) -> str:
        sizes = ", ".join(
            f"{topic.rsplit(':', 1)[-1]} {len(state)} B" for _, _, topic, state in self.rows
        )
        return f"{len(self.rows)} rows ({sizes})"

    def fresh(self) -> list[tuple[UUID, int, str, bytes]]:
        """The same rows for new aggregates (a fresh uuid4 per originator)."""
        ids = [uuid.uuid4() for _ in range(self.originator_count)]
        return [(ids[index], version, topic, state) for index, version, topic, state in self.rows]


def sample_template(ledger: Ledger, command: Callable[[], Any]) -> Template:
    """Run one command and read back exactly what it appended to the log."""
    before = ledger.recorder.max_notification_id() or 0
    command()
    notifications = ledger.recorder.select_notifications(
        start=before, limit=100, inclusive_of_start=False
    )
    index_of: dict[Any, int] = {}
    rows = tuple(
        (
            index_of.setdefault(n.originator_id, len(index_of)),
            n.originator_version,
            n.topic,
            n.state,
        )
        for n in notifications
    )
    return Template(rows=rows, originator_count=len(index_of))


class RawWriter:
    """Plain psycopg: one connection, autocommit off, one INSERT of all rows per transaction."""

    def __init__(self, db_url: str, schema: str, table: str, *, lock_and_notify: bool = False):
        self.conn = psycopg.connect(db_url, autocommit=False)
        self.table = SQL("{}.{}").format(Identifier(schema), Identifier(table))
        self.lock_and_notify = lock_and_notify
        self.lock = SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(self.table)
        self.notify = SQL("NOTIFY {}").format(Identifier(table))
        with self.conn.transaction():
            # The ledger's events table: same columns, primary key and notification_id index.
            self.conn.execute(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} (originator_id uuid NOT NULL,"
                    " originator_version bigint NOT NULL, topic text, state bytea,"
                    " notification_id bigserial,"
                    " PRIMARY KEY (originator_id, originator_version))"
                ).format(self.table)
            )
            self.conn.execute(
                SQL("CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} (notification_id)").format(
                    Identifier(f"{table}_notification_id_idx"), self.table
                )
            )
        self._statements: dict[int, SQL] = {}

    def statement(self, row_count: int) -> Any:
        if row_count not in self._statements:
            values = ", ".join(["(%s, %s, %s, %s)"] * row_count)
            self._statements[row_count] = SQL(
                "INSERT INTO {} (originator_id, originator_version, topic, state) VALUES "
                + values
                + " RETURNING notification_id"
            ).format(self.table)
        return self._statements[row_count]

    def write(self, rows: Sequence[tuple[UUID, int, str, bytes]]) -> list[int]:
        params = [value for row in rows for value in row]
        with self.conn.cursor() as curs:
            if self.lock_and_notify:
                curs.execute(self.lock)
                curs.execute(self.notify)
            curs.execute(self.statement(len(rows)), params)
            ids = [row[0] for row in curs.fetchall()]
        self.conn.commit()
        return ids

    def close(self) -> None:
        self.conn.close()


def timed(latencies: Latencies, operation: Callable[[], Any], times: int) -> None:
    for _ in range(times):
        started = time.perf_counter()
        operation()
        latencies.add(time.perf_counter() - started)


def interleaved(
    sides: Sequence[Callable[[], Any]], *, n: int, warmup: int, block: int
) -> list[Latencies]:
    """Warm each side up, then alternate blocks of ``block`` operations until each did ``n``."""
    for operation in sides:
        for _ in range(warmup):
            operation()
    results = [Latencies() for _ in sides]
    done = 0
    while done < n:
        size = min(block, n - done)
        for operation, latencies in zip(sides, results, strict=True):
            timed(latencies, operation, size)
        done += size
    return results


def report(title: str, ledger: Latencies, raw: Latencies, template: Template) -> None:
    print(
        comparison(
            f"write path{title}",
            project=ledger.rate_per_s,
            baseline=raw.rate_per_s,
            unit="cmd/s",
            baseline_label="raw psycopg",
            goal="goal >= 1.0x",
        )
        + f"  [{verdict(ledger.rate_per_s >= raw.rate_per_s)}]"
    )
    print(f"    ledger      {ledger.summary()}")
    print(f"    raw psycopg {raw.summary()}")
    print(f"    rows per command: {template.describe()}")


# The most attempts any card may take (the strictest card scheme's retry limit, counted for
# every tenant): benches spread their orders so that no card takes more.
ORDERS_PER_CARD = min(allowed for allowed, _ in SCHEME_LIMITS.values())


class PlaceOrder:
    """The measured command, for customers with a card on file.

    Each card is charged at most ``PER_CARD`` times (the card schemes' retry limit, counted for
    every tenant): the command moves to the next customer after that. ``orders``: how many
    commands to make the customers for up front (more are registered as needed).
    """

    PER_CARD = ORDERS_PER_CARD

    def __init__(self, ledger: Ledger, orders: int = 0) -> None:
        self.ledger = ledger
        self.cards: list[tuple[UUID, dict[str, Any]]] = []
        self.placed = 0
        self.lock = threading.Lock()
        for _ in range(max(1, -(-orders // self.PER_CARD))):
            self.cards.append(self._card())
        self.customer_id = self.cards[0][0]
        self.keys = iter(range(10**12))

    def _card(self) -> tuple[UUID, dict[str, Any]]:
        customer = self.ledger.register_customer(
            tenant_id=TENANT_ID,
            email="bench@example.com",
            name="Bench",
            country="US",
            currency="USD",
        )
        customer_id = UUID(customer.body["id"])
        method = self.ledger.attach_payment_method(
            tenant_id=TENANT_ID,
            customer_id=customer_id,
            card_number="4242424242424242",
            exp_month=12,
            exp_year=2030,
        )
        return customer_id, {"payment_method_id": method.body["id"], "mode": "purchase"}

    def _next_card(self) -> tuple[UUID, dict[str, Any]]:
        with self.lock:
            index = self.placed // self.PER_CARD
            self.placed += 1
            while index >= len(self.cards):
                self.cards.append(self._card())
            return self.cards[index]

    def __call__(self, idempotency_key: str | None = None) -> Any:
        customer_id, payment = self._next_card()
        result = self.ledger.place_order(
            tenant_id=TENANT_ID,
            customer_id=customer_id,
            currency="USD",
            lines=LINES,
            payment=payment,
            idempotency_key=idempotency_key,
        )
        if result.body["status"] != "paid":
            raise RuntimeError(f"the sandbox purchase was not captured: {result.body}")
        return result

    def keyed(self) -> Any:
        """The same command with a new Idempotency-Key."""
        return self(f"bench-{next(self.keys)}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=positive_int, default=2000, help="commands measured per side")
    parser.add_argument("--warmup", type=int, default=100, help="unmeasured commands per side")
    parser.add_argument("--block", type=positive_int, default=100, help="interleaving block size")
    parser.add_argument(
        "--callers",
        type=positive_int,
        default=1,
        help="also measure this many concurrent callers against the raw floor at one caller",
    )
    parser.add_argument(
        "--breakdown", action="store_true", help="also time the pieces of one command"
    )
    args = parser.parse_args(argv)

    db_url = database_url()
    print(f"# write path, n={args.n} per side; {server_summary(db_url)}")
    with bench_services() as services:
        ledger = services.ledger
        schema = services.settings.db_schema
        # Both sides' warmup and measured commands, the templates, and the breakdown's.
        place_order = PlaceOrder(
            ledger, orders=2 * (args.n + args.warmup + 1) + args.n + args.warmup
        )
        place_order()  # the card's usage exists: the templates sample a typical command
        plain = sample_template(ledger, place_order)
        keyed = sample_template(ledger, place_order.keyed)
        raw = RawWriter(db_url, schema, "raw_events")
        try:
            for title, command, template in (
                ("", place_order, plain),
                (" with Idempotency-Key", place_order.keyed, keyed),
            ):
                ledger_side, raw_side = interleaved(
                    [command, lambda template=template: raw.write(template.fresh())],
                    n=args.n,
                    warmup=args.warmup,
                    block=args.block,
                )
                report(title, ledger_side, raw_side, template)
        finally:
            raw.close()
        if args.callers > 1:
            concurrent_callers(ledger, db_url, schema, plain, args)
        if args.breakdown:
            breakdown(ledger, db_url, schema, place_order, plain, args)


CALLERS_GOAL = 3.0  # times the raw floor at one caller


def concurrent_callers(
    ledger: Ledger, db_url: str, schema: str, template: Template, args: argparse.Namespace
) -> None:
    """``args.callers`` threads placing orders at once, beside the raw floor at one caller.

    Alternates rounds of ``args.block`` commands per caller (the ledger side, timed by the wall
    clock from the first call to the last return) with the same number of raw commands.
    """
    per_caller_total = (args.warmup + args.n) // args.callers + args.block
    callers = [PlaceOrder(ledger, orders=per_caller_total) for _ in range(args.callers)]
    raw = RawWriter(db_url, schema, "raw_floor_events")
    executor = ThreadPoolExecutor(len(callers), thread_name_prefix="caller")
    ours, floor = Latencies(), Latencies()
    wall_s = 0.0

    def run(place_order: PlaceOrder, times: int) -> list[float]:
        durations = []
        for _ in range(times):
            started = time.perf_counter()
            place_order()
            durations.append(time.perf_counter() - started)
        return durations

    def ledger_round(per_caller: int) -> float:
        started = time.perf_counter()
        futures = [executor.submit(run, caller, per_caller) for caller in callers]
        durations = [d for future in futures for d in future.result()]
        elapsed_s = time.perf_counter() - started
        for duration in durations:
            ours.add(duration)
        return elapsed_s

    try:
        warmup_per_caller = max(1, args.warmup // len(callers))
        ledger_round(warmup_per_caller)
        ours.durations_s.clear()
        for _ in range(args.warmup):
            raw.write(template.fresh())
        per_caller = max(1, args.block // len(callers))
        while ours.count < args.n:
            wall_s += ledger_round(per_caller)
            timed(floor, lambda: raw.write(template.fresh()), per_caller * len(callers))
    finally:
        executor.shutdown()
        raw.close()
    rate = ours.count / wall_s
    print(
        comparison(
            f"write path, {len(callers)} concurrent callers",
            project=rate,
            baseline=floor.rate_per_s,
            unit="cmd/s",
            baseline_label="raw psycopg at 1 caller",
            goal=f"goal >= {CALLERS_GOAL:g}x",
        )
        + f"  [{verdict(rate >= CALLERS_GOAL * floor.rate_per_s)}]"
    )
    print(f"    ledger      {ours.summary()} (per command, {len(callers)} at once)")
    print(f"    raw psycopg {floor.summary()}")


def breakdown(
    ledger: Ledger,
    db_url: str,
    schema: str,
    place_order: PlaceOrder,
    template: Template,
    args: argparse.Namespace,
) -> None:
    """Time the parts of a command alone: what the gap to raw psycopg is made of."""
    locked = RawWriter(db_url, schema, "raw_locked_events", lock_and_notify=True)
    plain = RawWriter(db_url, schema, "raw_plain_events")

    def library_insert() -> Any:
        stored = [
            StoredEvent(originator_id=i, originator_version=v, topic=t, state=s)
            for i, v, t, s in template.fresh()
        ]
        return ledger.recorder.insert_events(stored)

    sides: dict[str, Callable[[], Any]] = {
        "place_order (the ledger's command)": place_order,
        "repository.get(customer) alone": lambda: ledger.repository.get(place_order.customer_id),
        "recorder.insert_events of the same rows": library_insert,
        "raw psycopg + LOCK TABLE + NOTIFY": lambda: locked.write(template.fresh()),
        "raw psycopg (the baseline)": lambda: plain.write(template.fresh()),
    }
    try:
        results = interleaved(
            list(sides.values()), n=args.n // 2, warmup=args.warmup, block=args.block
        )
    finally:
        locked.close()
        plain.close()
    print("  breakdown (interleaved, same rows):")
    for name, latencies in zip(sides, results, strict=True):
        print(
            f"    {name:<42} {latencies.rate_per_s:>8,.0f} op/s  "
            f"mean {latencies.total_s / latencies.count * 1000:.3f} ms  "
            f"p50 {latencies.percentile_ms(50):.3f} ms  p99 {latencies.percentile_ms(99):.3f} ms"
        )


if __name__ == "__main__":
    main()
