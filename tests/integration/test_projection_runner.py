"""The batched runner on real PostgreSQL: exactly-once, resumable, live, never stalled."""

from __future__ import annotations

import threading
from uuid import UUID

import pytest

from adapters.metrics import PROJECTION_LAG
from adapters.projection_runner import ProjectionRunner
from application.commands import ConcurrentModification
from domain.order import Order
from projections.base import StaleRunner
from projections.order_summaries import OrderSummariesProjection, OrderSummariesView

pytestmark = pytest.mark.integration


def _runner(
    services, view, batch_size: int = 1000, poll_interval_s: float = 1.0
) -> ProjectionRunner:
    return ProjectionRunner(
        application_name=services.ledger.name,
        recorder=services.ledger.recorder,
        mapper=services.ledger.mapper,
        projection=OrderSummariesProjection(view),
        batch_size=batch_size,
        poll_interval_s=poll_interval_s,
    )


def test_a_crash_mid_batch_applies_nothing_and_a_restart_applies_everything_once(services, shop):
    customer_id, method_id = shop.customer()
    order_ids = [
        UUID(shop.paid_order(customer_id, method_id, 1000 + i).body["id"]) for i in range(6)
    ]
    shop.ledger.refund_order(tenant_id="acme", order_id=order_ids[0], amount_minor=400)

    class SimulatedCrash(BaseException):
        """Like the process being killed: not an error any handler would catch."""

    class CrashAfterWritingRows(OrderSummariesView):
        """Writes the batch's rows, then dies before the transaction commits."""

        def write(self, curs, changes):
            super().write(curs, changes)
            raise SimulatedCrash

    crashing_view = CrashAfterWritingRows(services.orders.datastore)
    with pytest.raises(SimulatedCrash):
        _runner(services, crashing_view).catch_up()

    assert services.orders.position(services.ledger.name) == 0
    assert services.orders.list("acme", limit=100) == []

    restarted = _runner(services, services.orders)
    restarted.catch_up()
    rows = {row["order_id"]: row for row in services.orders.list("acme", limit=100)}
    assert set(rows) == set(order_ids)
    assert rows[order_ids[0]]["refunded_minor"] == 400
    assert rows[order_ids[0]]["status"] == "partially_refunded"
    assert sum(row["captured_minor"] for row in rows.values()) == sum(1000 + i for i in range(6))
    # Applying again from a stale position is refused, so nothing is counted twice.
    stale = _runner(services, services.orders)
    stale.position = 0
    with pytest.raises(StaleRunner):
        stale.process_next_batch()
    assert (
        rows[order_ids[0]]["refunded_minor"]
        == services.orders.get("acme", order_ids[0])["refunded_minor"]
    )


def test_a_runner_resumes_from_its_tracked_position_after_a_restart(services, shop):
    customer_id, method_id = shop.customer()
    shop.paid_order(customer_id, method_id)
    first = _runner(services, services.orders, batch_size=2)
    first.catch_up()
    position = services.orders.position(services.ledger.name)
    later = shop.paid_order(customer_id, method_id)
    second = _runner(services, services.orders)
    assert second.position == position
    second.catch_up()
    assert second.position == later.position
    assert len(services.orders.list("acme", limit=10)) == 2


def test_batch_size_does_not_change_the_read_model(services, shop):
    customer_id, method_id = shop.customer()
    for i in range(5):
        result = shop.paid_order(customer_id, method_id, 700 + i)
        if i % 2:
            shop.ledger.refund_order(
                tenant_id="acme", order_id=UUID(result.body["id"]), amount_minor=100
            )
    one_by_one = OrderSummariesView(services.orders.datastore, version=90)
    one_by_one.create_table()
    all_at_once = OrderSummariesView(services.orders.datastore, version=91)
    all_at_once.create_table()
    _runner(services, one_by_one, batch_size=1).catch_up()
    _runner(services, all_at_once, batch_size=1000).catch_up()
    assert one_by_one.list("acme", limit=100) == all_at_once.list("acme", limit=100)


def test_lag_is_exported_and_falls_to_zero_once_caught_up(services, shop):
    customer_id, method_id = shop.customer()
    shop.paid_order(customer_id, method_id)
    runner = _runner(services, services.orders)
    assert runner.update_lag() > 0
    runner.catch_up()
    assert PROJECTION_LAG.labels(runner.label)._value.get() == 0


def test_a_live_runner_without_notifications_still_catches_up_by_re_polling(services, shop):
    """No LISTEN connection at all: only the periodic re-poll can apply the new events."""
    runner = _runner(services, services.orders, poll_interval_s=0.2)
    runner.on_commit = services.waiter.advance
    runner.start()
    try:
        customer_id, method_id = shop.customer()
        result = shop.paid_order(customer_id, method_id)
        assert services.waiter.wait(services.orders, result.position, timeout_s=5)
    finally:
        runner.stop()
    assert services.orders.get("acme", UUID(result.body["id"]))["status"] == "paid"


def test_n_concurrent_writers_and_a_live_subscriber_miss_no_event(running_services):
    services = running_services
    from tests.integration.conftest import Shop

    writers, orders_each = 6, 15
    shops = [Shop(services, tenant_id=f"tenant-{i}") for i in range(writers)]
    customers = [shop.customer() for shop in shops]
    positions: list[int] = []
    errors: list[BaseException] = []

    def write(index: int) -> None:
        try:
            for _ in range(orders_each):
                positions.append(shops[index].paid_order(*customers[index]).position)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert services.waiter.wait(services.orders, max(positions), timeout_s=10)
    for index in range(writers):
        rows = services.orders.list(f"tenant-{index}", limit=100)
        assert len(rows) == orders_each
        assert all(row["status"] == "paid" for row in rows)
    # The log itself has no gaps: every notification id up to the head is present once.
    notifications = services.ledger.recorder.select_notifications(start=1, limit=100_000)
    ids = [n.id for n in notifications]
    assert ids == list(range(ids[0], ids[0] + len(ids)))


def test_two_concurrent_refunds_of_one_order_one_wins_the_other_gets_a_clean_conflict(
    services, shop
):
    customer_id, method_id = shop.customer()
    order_id = UUID(shop.paid_order(customer_id, method_id, 5000).body["id"])
    both_loaded = threading.Barrier(2, timeout=10)
    original_refund = Order.request_refund

    def refund_after_both_loaded(self, **kwargs):
        both_loaded.wait()
        original_refund(self, **kwargs)

    outcomes: list[object] = []

    def refund() -> None:
        try:
            outcomes.append(
                shop.ledger.refund_order(tenant_id="acme", order_id=order_id, amount_minor=3000)
            )
        except ConcurrentModification as error:
            outcomes.append(error)

    Order.request_refund = refund_after_both_loaded
    try:
        threads = [threading.Thread(target=refund) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        Order.request_refund = original_refund
    assert sorted(type(outcome).__name__ for outcome in outcomes) == [
        "CommandResult",
        "ConcurrentModification",
    ]
    assert shop.ledger.get_order("acme", order_id).refunded_minor == 3000


def test_a_poison_event_is_parked_with_later_events_of_its_aggregate_and_the_rest_goes_on(
    services, shop
):
    customer_id, method_id = shop.customer()
    healthy = [UUID(shop.paid_order(customer_id, method_id, 100 + i).body["id"]) for i in range(3)]
    poisoned = UUID(shop.paid_order(customer_id, method_id, 999).body["id"])
    shop.ledger.refund_order(tenant_id="acme", order_id=poisoned, amount_minor=99)
    shop.ledger.refund_order(tenant_id="acme", order_id=healthy[0], amount_minor=10)
    last = shop.paid_order(customer_id, method_id, 555)

    class BrokenOnOneOrder(OrderSummariesProjection):
        """A projection bug that only one order's events trigger."""

        def fold(self, events):
            if any(
                e.originator_id == poisoned and isinstance(e, Order.PaymentCaptured) for e in events
            ):
                raise KeyError("a bug in the projection")
            return super().fold(events)

    runner = ProjectionRunner(
        application_name=services.ledger.name,
        recorder=services.ledger.recorder,
        mapper=services.ledger.mapper,
        projection=BrokenOnOneOrder(services.orders),
    )
    runner.catch_up()

    assert runner.position == last.position  # the read model went on to the head of the log
    rows = {row["order_id"]: row for row in services.orders.list("acme", limit=100)}
    assert rows[healthy[0]]["refunded_minor"] == 10
    assert rows[UUID(last.body["id"])]["status"] == "paid"
    assert rows[poisoned]["captured_minor"] == 0  # Placed applied; its capture was the poison
    parked = services.orders.parked()
    # The poison, then every later event of its aggregate the projection follows (the refund's
    # request and its completion), all parked.
    assert len(parked) >= 2 and {p["originator_id"] for p in parked} == {poisoned}
    assert "KeyError" in parked[0]["error"]
    assert all("earlier event of this aggregate is parked" in p["error"] for p in parked[1:])

    # Once the projection is fixed, the parked events apply in order and leave the dead letters.
    fixed = _runner(services, services.orders)
    assert services.orders.parked_aggregate_count() == 1
    assert fixed.retry_parked() == (len(parked), 0)
    row = services.orders.get("acme", poisoned)
    assert (row["status"], row["captured_minor"], row["refunded_minor"]) == (
        "partially_refunded",
        999,
        99,
    )
    assert services.orders.parked() == []
    assert services.orders.parked_aggregate_count() == 0
