"""What the benches share: server addresses, a throw-away schema, timing and printing.

Every bench builds the real system through ``adapters.bootstrap.bootstrap`` in a fresh PostgreSQL
schema (and Redis namespace) of its own, and removes both afterwards, so a bench never depends on
or disturbs what else lives on the servers.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
import redis
from psycopg.sql import SQL, Identifier

from adapters.bootstrap import Services, bootstrap
from adapters.settings import Settings

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def database_url() -> str:
    return (
        os.environ.get("LEDGER_BENCH_DATABASE_URL")
        or os.environ.get("LEDGER_TEST_DATABASE_URL")
        or DEFAULT_DATABASE_URL
    )


def redis_url() -> str:
    return (
        os.environ.get("LEDGER_BENCH_REDIS_URL")
        or os.environ.get("LEDGER_TEST_REDIS_URL")
        or DEFAULT_REDIS_URL
    )


def new_schema_name() -> str:
    return "bench_" + uuid.uuid4().hex[:12]


def drop_schema(db_url: str, schema: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(Identifier(schema)))


def drop_redis_namespace(url: str, namespace: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(f"{namespace}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@contextmanager
def bench_services(**settings: Any) -> Iterator[Services]:
    """The bootstrapped system in a fresh schema and namespace, both dropped on the way out.

    No runner, listener or worker is started: each bench starts what it measures.
    """
    db_url, r_url, schema = database_url(), redis_url(), new_schema_name()
    services: Services | None = None
    try:
        services = bootstrap(
            Settings(
                database_url=db_url,
                redis_url=r_url,
                db_schema=schema,
                redis_namespace=schema,
                **settings,
            )
        )
        yield services
    finally:
        try:
            if services is not None:
                services.close()
        finally:
            drop_schema(db_url, schema)
            drop_redis_namespace(r_url, schema)


def server_summary(db_url: str) -> str:
    """The PostgreSQL version and the durability settings that dominate commit latency."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        sync = conn.execute("SHOW synchronous_commit").fetchone()[0]
        fsync = conn.execute("SHOW fsync").fetchone()[0]
    return f"PostgreSQL {version} (synchronous_commit={sync}, fsync={fsync}), {os.cpu_count()} CPUs"


# Timing ------------------------------------------------------------------------------------------


@dataclass
class Latencies:
    """Per-operation durations, in seconds, of one measured run."""

    durations_s: list[float] = field(default_factory=list)

    def add(self, duration_s: float) -> None:
        self.durations_s.append(duration_s)

    @property
    def count(self) -> int:
        return len(self.durations_s)

    @property
    def total_s(self) -> float:
        return sum(self.durations_s)

    @property
    def rate_per_s(self) -> float:
        return self.count / self.total_s if self.total_s else 0.0

    def percentile_ms(self, percent: float) -> float:
        return percentile(self.durations_s, percent) * 1000

    def summary(self) -> str:
        return (
            f"p50 {self.percentile_ms(50):.2f} ms, p99 {self.percentile_ms(99):.2f} ms, "
            f"mean {statistics.fmean(self.durations_s) * 1000:.2f} ms"
        )


def percentile(values: Sequence[float], percent: float) -> float:
    """Nearest-rank percentile (no interpolation: always a value that was measured)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


class Stopwatch:
    """``with Stopwatch() as watch: ...`` then ``watch.elapsed_s``."""

    def __enter__(self) -> Stopwatch:
        self.started = time.perf_counter()
        self.elapsed_s = 0.0
        return self

    def __exit__(self, *_: object) -> None:
        self.elapsed_s = time.perf_counter() - self.started


# Printing ----------------------------------------------------------------------------------------


def thousands(value: float) -> str:
    return f"{value:,.0f}"


def comparison(
    figure: str,
    *,
    project: float,
    baseline: float,
    unit: str,
    project_label: str = "ledger",
    baseline_label: str,
    goal: str,
) -> str:
    """One line: the project's figure beside the baseline, their ratio, and the budget."""
    ratio = project / baseline if baseline else float("nan")
    return (
        f"{figure}: {project_label} {thousands(project)} {unit} | "
        f"{baseline_label} {thousands(baseline)} {unit} | ratio {ratio:.2f}x ({goal})"
    )


def verdict(passed: bool) -> str:
    return "MEETS" if passed else "MISSES"


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value
