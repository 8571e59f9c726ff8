"""Routed purchases: ``Ledger.place_order`` for a tenant with three gateways, against raw psycopg.

The ledger's figure is commands per second (and per-command latency) of ``place_order`` with a
purchase for a tenant with three sandbox gateways (weights 60, 30 and 10; the third's
``processor_account`` ends in ``+decline_insufficient_funds``, so about a tenth of the purchases
start there, are declined softly and cascade to another gateway: two attempts, two gateway
calls, two outcome saves). Each command routes (loads the tenant's gateways, reads their figures),
counts the card's scheme attempts, calls the gateway and records the outcome in the figures.

Beside it, measured in the same run and interleaved in blocks like ``bench.write_path``: the
foundation's command (``place_order`` for a tenant without gateways: the default sandbox) and the
foundation's raw baseline (plain psycopg writing, in one transaction per command, the rows the
foundation's command wrote). A second pass runs the routed command from ``--callers`` threads at
once, beside the raw baseline at one caller.

Two things keep the measured path the steady one: the approval-rate breaker is switched off for
the bench's ledger (otherwise the declining gateway trips after 20 declines and nothing cascades
any more), and every card is used for at most ``PURCHASES_PER_CARD`` purchases (Visa allows 15
attempts per card in 30 days, counted per card: brand, BIN, last 4 and expiry; a cascade is two),
so each caller rotates through cards of its own, all different, created before the timing.

    python -m bench.routed_purchases [--n 2000] [--warmup 100] [--block 100] [--callers 16]
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any
from uuid import UUID

from adapters.gateways.sandbox import luhn_valid
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
from bench.write_path import LINES, PlaceOrder, RawWriter, interleaved, sample_template, timed

TENANT_ID = "bench-routed"
GATEWAYS = (
    {"name": "primary", "weight": 60, "processor_account": "primary"},
    {"name": "secondary", "weight": 30, "processor_account": "secondary"},
    {"name": "declining", "weight": 10, "processor_account": "legacy+decline_insufficient_funds"},
)
# Visa allows 15 attempts per card in 30 days, and a cascaded purchase makes two.
PURCHASES_PER_CARD = 7
_cards_made = itertools.count()


def new_card() -> tuple[str, int]:
    """A Visa number the sandbox charges, and an expiry year, different for every call (the
    schemes' limits count per brand, BIN, last 4 and expiry)."""
    index = next(_cards_made)
    body = f"424242{index % 1_000_000_000:09d}"
    check = next(d for d in "0123456789" if luhn_valid(body + d))
    return body + check, 2030 + index // 1000 % 20


def register_gateways(ledger: Ledger) -> None:
    for gateway in GATEWAYS:
        ledger.register_gateway(
            tenant_id=TENANT_ID,
            config={
                "processor": "sandbox",
                "currencies": ["USD"],
                "card_brands": ["visa", "mastercard"],
                "monthly_cap_minor": 10**14,
                **gateway,
            },
        )


class RoutedPurchase:
    """The measured command for one caller, rotating through cards of its own."""

    def __init__(self, ledger: Ledger, purchases: int) -> None:
        self.ledger = ledger
        self.cascaded = 0
        self.count = 0
        cards = []
        for index in range(-(-purchases // PURCHASES_PER_CARD)):
            customer = ledger.register_customer(
                tenant_id=TENANT_ID,
                email=f"routed-{index}@example.com",
                name="Routed Bench",
                country="US",
                currency="USD",
            )
            customer_id = UUID(customer.body["id"])
            card_number, exp_year = new_card()
            method = ledger.attach_payment_method(
                tenant_id=TENANT_ID,
                customer_id=customer_id,
                card_number=card_number,
                exp_month=12,
                exp_year=exp_year,
            )
            payment = {"payment_method_id": method.body["id"], "mode": "purchase"}
            cards += [(customer_id, payment)] * PURCHASES_PER_CARD
        self.cards = iter(cards)

    def __call__(self) -> Any:
        customer_id, payment = next(self.cards)
        result = self.ledger.place_order(
            tenant_id=TENANT_ID,
            customer_id=customer_id,
            currency="USD",
            lines=LINES,
            payment=payment,
        )
        if result.body["status"] != "paid":
            raise RuntimeError(f"the routed purchase was not captured: {result.body}")
        self.count += 1
        self.cascaded += result.body["payment"]["attempts"] > 1
        return result


def print_side(label: str, latencies: Latencies, note: str = "") -> None:
    print(f"    {label:<24} {latencies.rate_per_s:>7,.0f} cmd/s  {latencies.summary()}{note}")


def cascade_note(purchases: Sequence[RoutedPurchase]) -> str:
    count = sum(p.count for p in purchases)
    cascaded = sum(p.cascaded for p in purchases)
    return f"  ({cascaded} of {count} cascaded)"


def one_caller(ledger: Ledger, raw: RawWriter, args: argparse.Namespace) -> None:
    foundation = PlaceOrder(ledger, orders=args.n + args.warmup + 1)
    template = sample_template(ledger, foundation)
    routed = RoutedPurchase(ledger, args.n + args.warmup + 1)
    routed_template = sample_template(ledger, routed)
    routed_side, foundation_side, raw_side = interleaved(
        [routed, foundation, lambda: raw.write(template.fresh())],
        n=args.n,
        warmup=args.warmup,
        block=args.block,
    )
    print(
        comparison(
            "routed purchases, 1 caller",
            project=routed_side.rate_per_s,
            baseline=raw_side.rate_per_s,
            unit="cmd/s",
            baseline_label="raw psycopg",
            goal="for the record",
        )
    )
    print_side("routed place_order", routed_side, cascade_note([routed]))
    print_side("foundation place_order", foundation_side, "  (no gateways: default sandbox)")
    print_side("raw psycopg", raw_side)
    print(f"    rows per foundation command: {template.describe()}")
    print(f"    rows per routed command (first, sampled): {routed_template.describe()}")


def concurrent_callers(ledger: Ledger, raw: RawWriter, args: argparse.Namespace) -> None:
    """``args.callers`` threads placing routed orders at once, in rounds of ``args.block``
    commands, alternating with as many raw commands (timed by the wall clock per round)."""
    per_caller = max(1, args.block // args.callers)
    warmup_per_caller = max(1, args.warmup // args.callers)
    rounds = -(-args.n // (per_caller * args.callers))
    callers = [
        RoutedPurchase(ledger, warmup_per_caller + rounds * per_caller) for _ in range(args.callers)
    ]
    template = sample_template(ledger, PlaceOrder(ledger))
    ours, floor = Latencies(), Latencies()
    wall_s = 0.0

    def run(purchase: RoutedPurchase, times: int) -> list[float]:
        durations = []
        for _ in range(times):
            started = time.perf_counter()
            purchase()
            durations.append(time.perf_counter() - started)
        return durations

    with ThreadPoolExecutor(len(callers), thread_name_prefix="caller") as executor:

        def ledger_round(times: int) -> float:
            started = time.perf_counter()
            futures = [executor.submit(run, caller, times) for caller in callers]
            durations = [d for future in futures for d in future.result()]
            elapsed_s = time.perf_counter() - started
            ours.durations_s.extend(durations)
            return elapsed_s

        ledger_round(warmup_per_caller)
        ours.durations_s.clear()
        for caller in callers:
            caller.count = caller.cascaded = 0
        for _ in range(rounds):
            wall_s += ledger_round(per_caller)
            timed(floor, lambda: raw.write(template.fresh()), per_caller * len(callers))
    rate = ours.count / wall_s
    print(
        comparison(
            f"routed purchases, {len(callers)} concurrent callers",
            project=rate,
            baseline=floor.rate_per_s,
            unit="cmd/s",
            baseline_label="raw psycopg at 1 caller",
            goal="for the record",
        )
        + f"  [{verdict(rate >= floor.rate_per_s)} the raw floor]"
    )
    print(
        f"    routed place_order       {ours.summary()} (per command, {len(callers)} at once)"
        + cascade_note(callers)
    )
    print_side("raw psycopg", floor)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=positive_int, default=2000, help="commands measured per side")
    parser.add_argument("--warmup", type=int, default=100, help="unmeasured commands per side")
    parser.add_argument("--block", type=positive_int, default=100, help="interleaving block size")
    parser.add_argument(
        "--callers", type=positive_int, default=16, help="concurrent callers of the second pass"
    )
    args = parser.parse_args(argv)

    db_url = database_url()
    print(f"# routed purchases, n={args.n} per side; {server_summary(db_url)}")
    with bench_services() as services:
        ledger = services.ledger
        # The steady path: the declining gateway keeps taking its share and cascading.
        ledger.routing = replace(ledger.routing, breaker_approval_rate_bps_min=0)
        register_gateways(ledger)
        raw = RawWriter(db_url, services.settings.db_schema, "raw_events")
        try:
            one_caller(ledger, raw, args)
            if args.callers > 1:
                concurrent_callers(ledger, raw, args)
        finally:
            raw.close()


if __name__ == "__main__":
    main()
