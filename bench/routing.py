"""Routing decision time for 50 gateways (budget: < 1 ms per decision).

``domain.routing.route`` is pure, so the bench needs no server: 50 gateways of mixed currencies,
brands, BIN ranges, countries and caps, each with a full window of recent outcomes, routed for
payments of varied segments, in static and adaptive mode. Printed beside a baseline measured in
the same run: a bare filter-and-sort of the same 50 gateways by weight (what any router does
at least), so the figure reads on any machine.

    .venv/bin/python -m bench.routing [--decisions 5000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

from domain.routing import (
    GatewayHealth,
    GatewaySnapshot,
    PaymentFacts,
    RoutingConfig,
    route,
)

GATEWAYS = 50
BUDGET_MS = 1.0
CURRENCIES = ("USD", "EUR", "GBP", "CAD", "AUD")
BRANDS = ("visa", "mastercard", "amex")


def fixtures(seed: int = 7) -> tuple[list[GatewaySnapshot], dict[str, GatewayHealth]]:
    rng = random.Random(seed)
    gateways = []
    health = {}
    for index in range(GATEWAYS):
        gateway_id = f"00000000-0000-0000-0000-{index:012d}"
        gateways.append(
            GatewaySnapshot(
                gateway_id=gateway_id,
                name=f"gateway {index}",
                processor="sandbox",
                currencies=tuple(rng.sample(CURRENCIES, rng.randint(1, len(CURRENCIES)))),
                card_brands=tuple(rng.sample(BRANDS, rng.randint(1, len(BRANDS)))),
                monthly_cap_minor=rng.randint(10**6, 10**9),
                weight=rng.randint(0, 100),
                bin_ranges=(("400000", "499999"), ("510000", "559999")) if index % 3 == 0 else (),
                countries=("US", "CA", "GB") if index % 4 == 0 else (),
                enabled=index % 10 != 0,
                tripped=index % 17 == 0,
            )
        )
        health[gateway_id] = GatewayHealth(
            approved_minor_by_currency={c: rng.randint(0, 10**9) for c in CURRENCIES},
            outcomes=tuple(
                (f"{rng.choice(CURRENCIES)}:{rng.choice(BRANDS)}", rng.random() < 0.8)
                for _ in range(50)
            ),
        )
    return gateways, health


def payments(count: int, seed: int = 11) -> list[PaymentFacts]:
    rng = random.Random(seed)
    return [
        PaymentFacts(
            currency=rng.choice(CURRENCIES),
            brand=rng.choice(BRANDS),
            bin=rng.choice(("424242", "555555", "378282")),
            country=rng.choice(("US", "DE", "GB")),
            amount_minor=rng.randint(100, 100_000),
        )
        for _ in range(count)
    ]


def timed_ms(
    decide: Callable[[int, PaymentFacts], object], cases: list[PaymentFacts]
) -> list[float]:
    times = []
    for seed, payment in enumerate(cases):
        started = time.perf_counter()
        decide(seed, payment)
        times.append((time.perf_counter() - started) * 1000)
    return times


def summary(times: list[float]) -> str:
    ordered = sorted(times)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    return f"median {statistics.median(ordered):.3f} ms, p99 {p99:.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=5000)
    args = parser.parse_args()
    gateways, health = fixtures()
    cases = payments(args.decisions)

    def baseline(seed: int, payment: PaymentFacts) -> object:
        eligible = [
            g
            for g in gateways
            if g.enabled
            and not g.tripped
            and payment.currency in g.currencies
            and payment.brand in g.card_brands
        ]
        return sorted(eligible, key=lambda g: -g.weight)

    results = {"baseline filter+sort": timed_ms(baseline, cases)}
    for mode in ("static", "adaptive"):
        config = RoutingConfig(mode=mode)
        results[f"route() {mode}"] = timed_ms(
            lambda seed, payment, config=config: route(
                gateways, payment, health, seed=seed, config=config
            ),
            cases,
        )
    print(f"routing decision for {GATEWAYS} gateways, {args.decisions} decisions each")
    for name, times in results.items():
        print(f"  {name:22} {summary(times)}")
    worst_median = max(
        statistics.median(times) for name, times in results.items() if name.startswith("route")
    )
    verdict = "within" if worst_median < BUDGET_MS else "OVER"
    print(f"budget {BUDGET_MS} ms per decision: {verdict} (worst median {worst_median:.3f} ms)")


if __name__ == "__main__":
    main()
