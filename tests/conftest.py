"""Shared fixtures: real PostgreSQL and Redis for integration and e2e tests.

``LEDGER_TEST_DATABASE_URL`` / ``LEDGER_TEST_REDIS_URL`` name external servers (CI sets them);
otherwise embedded ones are started under ``var/test``. Every test gets its own PostgreSQL
schema and Redis namespace, dropped afterwards, so tests never rely on a clean server. With
``CI=true`` a missing server fails the run instead of skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from adapters.bootstrap import Services, bootstrap
from adapters.settings import Settings

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TEST_DATA_DIR = Path(__file__).resolve().parent.parent / "var" / "test"


def _unavailable(what: str, error: BaseException) -> None:
    message = f"{what} is not available: {error}"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def database_url() -> str:
    url = os.environ.get("LEDGER_TEST_DATABASE_URL")
    try:
        if url is None:
            from adapters.embedded import EmbeddedPostgres

            url = EmbeddedPostgres(TEST_DATA_DIR).url
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except Exception as error:
        _unavailable("PostgreSQL", error)
    return url


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("LEDGER_TEST_REDIS_URL")
    try:
        if url is None:
            from adapters.embedded import EmbeddedRedis

            url = EmbeddedRedis(TEST_DATA_DIR).url
        redis.Redis.from_url(url, socket_connect_timeout=5).ping()
    except Exception as error:
        _unavailable("Redis", error)
    return url


@pytest.fixture
def test_settings(database_url: str, redis_url: str) -> Iterator[Settings]:
    """Settings with a fresh schema and Redis namespace, both removed after the test."""
    name = "test_" + uuid.uuid4().hex[:12]
    yield Settings(
        database_url=database_url,
        redis_url=redis_url,
        db_schema=name,
        redis_namespace=name,
        projection_poll_interval_s=0.5,
        pool_size=4,
        pool_max_overflow=8,
    )
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{name}*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def services(test_settings: Settings) -> Iterator[Services]:
    """A bootstrapped system on its own schema; runners and worker are not started."""
    built = bootstrap(test_settings)
    yield built
    built.close()


@pytest.fixture
def running_services(services: Services) -> Services:
    """The system with its LISTEN connection and projection runners running."""
    services.start_listener()
    services.listener.connected.wait(5)
    services.start_runners()
    return services
