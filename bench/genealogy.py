"""The genealogy read model: a downline page of a 100,000-node subtree.

Setup: ``--distributors`` distributors enrolled through the real ``Distributor`` aggregate, one
a minute: each sponsored by a random earlier one (a random recursive tree, a few levels deep)
and placed in the binary placement tree in breadth-first order (every leg filled, ~17 levels);
then ``--moves`` approved placement moves of leaves under other leaves. Their events are folded
by ``GenealogyProjection`` and committed through its view in batches of ``--batch`` events (the
runner's path, without the log), so the fold's rate is measured too.

Measured (``--rounds`` times, after one warm-up), through ``GenealogyView``: the first page
(50) of the root's downline — the whole network, 100,000 nodes — in the placement and the
sponsor tree, the same as of a date before the moves, a page deep in the tree (after a cursor at
depth 12), the upline of a leaf, and the per-leg count of the whole downline (downline size, leg
sizes). Baseline in the same run: a bare indexed ``SELECT descendant_id, depth ... ORDER BY
depth, descendant_id LIMIT 51`` on the closure table. Budget: first page < 50 ms.

    python -m bench.genealogy [--distributors 100000] [--moves 100] [--rounds 50] [--batch 5000]
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

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
from domain.distributor import Distributor, Leg

TENANT_ID = "bench"
START = datetime(2024, 1, 1, tzinfo=UTC)
BUDGET_MS = 50
PAGE = 50


def history(count: int, moves: int, rng: random.Random) -> tuple[list[Any], list[Distributor]]:
    """The events of ``count`` enrolments and ``moves`` moves, in an order a log could have."""
    now = START + timedelta(minutes=count + moves + 10)
    distributors: list[Distributor] = []
    events: list[Any] = []
    for index in range(count):
        sponsor = distributors[rng.randrange(index)] if index else None
        placement = distributors[(index - 1) // 2] if index else None
        leg = None if placement is None else (Leg.LEFT if index % 2 else Leg.RIGHT)
        distributor = Distributor.enrol(
            tenant_id=TENANT_ID, customer_id=None, sponsor=sponsor, placement=placement,
            leg=leg, joined_at=START + timedelta(minutes=index), now=now,
        )  # fmt: skip
        distributors.append(distributor)
        events += distributor.collect_events()
    # Leaves (no one placed under them) move under other leaves' left legs, each target once.
    leaves = list(range(count // 2 + 1, count))
    rng.shuffle(leaves)
    movers, targets = leaves[:moves], leaves[moves : 2 * moves]
    for step, (mover, target) in enumerate(zip(movers, targets, strict=False)):
        distributors[mover].move_placement(
            placement=distributors[target], leg=Leg.LEFT, approved_by="compliance",
            reason="bench", effective_at=START + timedelta(minutes=count + step), now=now,
        )  # fmt: skip
        events += distributors[mover].collect_events()
    return events, distributors


def load(services: Services, events: list[Any], batch: int) -> float:
    """Fold and commit the events through the projection's own path; returns seconds."""
    projection = services.runners["genealogy"].projection
    view = services.genealogy
    with Stopwatch() as watch:
        for position, start in enumerate(range(0, len(events), batch), start=1):
            with view.batch("bench", position - 1, position):
                projection.process_batch(events[start : start + batch], Tracking("bench", position))
    return watch.elapsed_s


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
    parser.add_argument("--distributors", type=positive_int, default=100_000)
    parser.add_argument("--moves", type=int, default=100)
    parser.add_argument("--rounds", type=positive_int, default=50)
    parser.add_argument("--batch", type=positive_int, default=5_000, help="events per fold")
    args = parser.parse_args()
    print(f"# Genealogy, {args.distributors:,} distributors; {server_summary(database_url())}")
    rng = random.Random(20_261_122)
    with Stopwatch() as built:
        events, distributors = history(args.distributors, args.moves, rng)
    print(f"setup: {len(events):,} events built in {built.elapsed_s:.1f} s", flush=True)
    with bench_services() as services:
        folded_s = load(services, events, args.batch)
        print(
            f"setup: folded and committed in {folded_s:.1f} s "
            f"({len(events) / folded_s:,.0f} events/s)",
            flush=True,
        )
        view = services.genealogy
        closure = view.table("closure")
        with view.datastore.cursor() as curs:
            curs.execute("ANALYZE")
            curs.execute(SQL("SELECT tree, count(*) AS n FROM {} GROUP BY tree").format(closure))
            sizes = {row["tree"]: row["n"] for row in curs.fetchall()}
        print(f"read model: closure rows {sizes}")
        root, leaf = distributors[0].id, distributors[-1].id
        before_moves = START + timedelta(minutes=args.distributors - 1)

        def page(tree: str, **kwargs: Any) -> list[dict[str, Any]]:
            rows = view.downline(TENANT_ID, root, tree, limit=PAGE + 1, **kwargs)
            assert rows is not None and len(rows) == PAGE + 1
            return rows

        cursor = (12, distributors[len(distributors) // 20].id)
        deep = page("placement", after=cursor)

        def bare() -> None:
            with view.datastore.cursor() as curs:
                curs.execute(
                    SQL(
                        "SELECT descendant_id, depth FROM {} WHERE tree = %s AND ancestor_id = %s"
                        " AND valid_to IS NULL ORDER BY depth, descendant_id LIMIT %s"
                    ).format(closure),
                    ("placement", root, PAGE + 1),
                )
                curs.fetchall()

        legs = view.legs(TENANT_ID, root, "placement")
        assert legs is not None
        per_leg = ", ".join(f"{row['leg']} {row['size']:,}" for row in legs)
        print(
            f"check: downline of the root {sum(row['size'] for row in legs):,} ({per_leg}); "
            f"a deep page starts at depth {deep[0]['depth']}"
        )
        results = {
            "first page, placement tree": timed(args.rounds, lambda: page("placement")),
            "first page, sponsor tree": timed(args.rounds, lambda: page("sponsor")),
            "first page, placement tree as of a date": timed(
                args.rounds, lambda: page("placement", as_of=before_moves)
            ),
            "a page after a cursor at depth 12": timed(
                args.rounds, lambda: page("placement", after=cursor)
            ),
            "upline of a leaf, placement tree": timed(
                args.rounds, lambda: view.upline(TENANT_ID, leaf, "placement")
            ),
            "downline size per leg (100,000 rows counted)": timed(
                max(5, args.rounds // 10), lambda: view.legs(TENANT_ID, root, "placement")
            ),
            "baseline: bare indexed SELECT ... LIMIT 51": timed(args.rounds, bare),
        }
    for name, latencies in results.items():
        print(f"{name}: {latencies.summary()}")
    p99 = max(
        results[name].percentile_ms(99)
        for name in ("first page, placement tree", "first page, sponsor tree")
    )
    baseline = results["baseline: bare indexed SELECT ... LIMIT 51"].percentile_ms(50)
    print(
        f"first page p99 {p99:.2f} ms vs bare SELECT p50 {baseline:.2f} ms "
        f"(ratio {p99 / baseline:.2f}x); budget < {BUDGET_MS} ms: {verdict(p99 < BUDGET_MS)}"
    )


if __name__ == "__main__":
    main()
