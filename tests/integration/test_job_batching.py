"""The paid-order dispatcher enqueues a projection batch's confirmations in one Redis round trip."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import dramatiq
import pytest

from adapters.jobs import NOTIFICATIONS_QUEUE, enqueue_many, redis_broker

pytestmark = pytest.mark.integration


@pytest.fixture
def broker(redis_url: str) -> Any:
    namespace = "test_batching_" + uuid4().hex[:8]
    redis_broker_ = redis_broker(redis_url, namespace)
    yield redis_broker_
    client = redis_broker_.client
    for key in client.scan_iter(f"{namespace}*"):
        client.delete(key)
    redis_broker_.close()


def test_many_messages_go_to_redis_in_one_round_trip_and_arrive_in_order(broker, monkeypatch):
    actor = dramatiq.Actor(
        lambda order_id: None,
        broker=broker,
        actor_name="send_order_confirmation",
        queue_name=NOTIFICATIONS_QUEUE,
        priority=0,
        options={},
    )
    broker._max_unpack_size()  # read from Redis once per process, then cached
    single_commands: list[Any] = []
    execute_command = broker.client.execute_command
    monkeypatch.setattr(
        broker.client,
        "execute_command",
        lambda *args, **kwargs: single_commands.append(args) or execute_command(*args, **kwargs),
    )

    enqueue_many(broker, [actor.message(str(number)) for number in range(50)])

    assert single_commands == [], "no message was sent on a round trip of its own"
    consumer = broker.consume(NOTIFICATIONS_QUEUE, prefetch=100, timeout=100)
    received = []
    for message in consumer:
        if message is None:
            break
        received.append(message.args[0])
        consumer.ack(message)
    consumer.close()
    assert received == [str(number) for number in range(50)]


def test_nothing_to_enqueue_sends_nothing(broker, monkeypatch):
    monkeypatch.setattr(broker.client, "pipeline", lambda **_: pytest.fail("a round trip"))

    enqueue_many(broker, [])
