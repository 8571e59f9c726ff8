"""Save → visible in the read model: how long a client waits to read its own write.

The ledger side places an order and waits with ``PositionWaiter`` (woken by the runner's commit,
in process, or by ``pg_notify`` across processes). The baseline, in the same run on the same
runner, waits with eventsourcing's ``TrackingRecorder.wait`` (polling the tracking table with a
back-off from 100 ms). Budget (ARCHITECTURE §9): p99 < 50 ms.

    python -m bench.read_your_writes [--n 300]
"""

from __future__ import annotations

import argparse
import itertools
import time
from uuid import UUID

from bench.common import Latencies, bench_services, database_url, positive_int, server_summary
from bench.write_path import ORDERS_PER_CARD

TENANT_ID = "bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=positive_int, default=300, help="orders per side")
    args = parser.parse_args()
    print(f"# save -> visible, n={args.n} per side; {server_summary(database_url())}")
    with bench_services() as services:
        ledger = services.ledger
        services.start_listener()
        services.listener.connected.wait(5)
        services.start_runners(["order_summaries"])

        # No card takes more than ORDERS_PER_CARD attempts (the card schemes' retry limit):
        # the orders move to a new customer after that many.
        def card() -> tuple[UUID, str]:
            customer = ledger.register_customer(
                tenant_id=TENANT_ID, email="b@example.com", name="B", country="US", currency="USD"
            )
            customer_id = UUID(customer.body["id"])
            method = ledger.attach_payment_method(
                tenant_id=TENANT_ID,
                customer_id=customer_id,
                card_number="4242424242424242",
                exp_month=12,
                exp_year=2031,
            )
            return customer_id, method.body["id"]

        orders = 10 + args.n * 2
        cards = [card() for _ in range(-(-orders // ORDERS_PER_CARD))]
        placed = itertools.count()

        def place() -> int:
            customer_id, method_id = cards[next(placed) // ORDERS_PER_CARD]
            return ledger.place_order(
                tenant_id=TENANT_ID,
                customer_id=customer_id,
                currency="USD",
                lines=[{"sku": "S", "quantity": 1, "unit_price_minor": 1000}],
                payment={"payment_method_id": method_id, "mode": "purchase"},
            ).position

        def waiter(position: int) -> None:
            assert services.waiter.wait(services.orders, position, timeout_s=2.0)

        def library(position: int) -> None:
            services.orders.wait(ledger.name, position, timeout=2.0)

        sides = {
            "ledger PositionWaiter": (waiter, Latencies()),
            "library wait()": (library, Latencies()),
        }
        for _ in range(10):
            waiter(place())
        for index in range(args.n * 2):  # alternate the sides: the machine's speed drifts
            name = list(sides)[index % 2]
            wait, latencies = sides[name]
            started = time.perf_counter()
            wait(place())
            latencies.add(time.perf_counter() - started)
        ours, theirs = sides["ledger PositionWaiter"][1], sides["library wait()"][1]
        print(
            f"save -> visible p99: ledger {ours.percentile_ms(99):.1f} ms | "
            f"library wait() {theirs.percentile_ms(99):.1f} ms | "
            f"ratio {theirs.percentile_ms(99) / ours.percentile_ms(99):.1f}x faster "
            f"(goal p99 < 50 ms)  [{'MEETS' if ours.percentile_ms(99) < 50 else 'MISSES'}]"
        )
        print(f"    ledger PositionWaiter  {ours.summary()}")
        print(f"    library wait()         {theirs.summary()}")


if __name__ == "__main__":
    main()
