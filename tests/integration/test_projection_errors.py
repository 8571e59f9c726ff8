"""How the runner treats failures: poison events are parked, outages retried with back-off,
a conflict with another runner resolved by reloading the position — never a hot loop."""

from __future__ import annotations

from uuid import UUID

import psycopg
import pytest

from adapters.projection_runner import ProjectionRunner
from domain.order import Order
from projections.base import StaleRunner
from projections.order_summaries import OrderSummariesProjection

pytestmark = pytest.mark.integration


class RecordingRunner(ProjectionRunner):
    """Records each back-off instead of sleeping through it, and stops once caught up."""

    def __init__(self, *args, stop_at: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pauses: list[float] = []
        self.stop_at = stop_at

    def _pause(self, delay_s: float) -> None:
        self.pauses.append(delay_s)
        if len(self.pauses) > 20:  # a hot loop: give up so the test fails instead of hanging
            self._stopping.set()

    def catch_up(self) -> int:
        total = super().catch_up()
        if self.position >= self.stop_at:
            self._stopping.set()
        return total


def _runner(services, projection, runner_class=ProjectionRunner, **kwargs) -> ProjectionRunner:
    return runner_class(
        application_name=services.ledger.name,
        recorder=services.ledger.recorder,
        mapper=services.ledger.mapper,
        projection=projection,
        poll_interval_s=0.01,
        **kwargs,
    )


def _orders(shop, amounts):
    customer_id, method_id = shop.customer()
    return [UUID(shop.paid_order(customer_id, method_id, a).body["id"]) for a in amounts]


@pytest.mark.parametrize(
    ("break_row", "error_name"),
    [
        (lambda row: row.update(tenant_id=None), "IntegrityError"),  # NOT NULL violation
        (lambda row: row.update(total_minor=2**70), "DataError"),  # bigint out of range
    ],
    ids=["constraint", "data"],
)
def test_a_views_own_constraint_or_data_error_parks_the_event_and_the_rest_goes_on(
    services, shop, break_row, error_name
):
    healthy, poisoned, later = _orders(shop, [100, 666, 300])

    class WritesABadRow(OrderSummariesProjection):
        """A projection bug the database refuses, only for one order's Placed event."""

        def fold(self, events):
            rows = super().fold(events)
            if any(isinstance(e, Order.Placed) and e.originator_id == poisoned for e in events):
                break_row(rows[poisoned])
            return rows

    runner = _runner(services, WritesABadRow(services.orders))
    runner.catch_up()

    assert runner.position == services.ledger.recorder.max_notification_id()
    parked = services.orders.parked()
    assert {p["originator_id"] for p in parked} == {poisoned}
    assert error_name in parked[0]["error"]
    assert services.orders.get("acme", poisoned) is None
    assert services.orders.get("acme", healthy)["captured_minor"] == 100
    assert services.orders.get("acme", later)["captured_minor"] == 300


def test_connection_errors_are_retried_with_growing_back_off_and_never_park(services, shop):
    order_id = _orders(shop, [250])[0]
    failures = [psycopg.OperationalError("connection lost"), psycopg.OperationalError("again")]

    class FlakyDatabase(OrderSummariesProjection):
        def fold(self, events):
            if failures:
                raise failures.pop(0)
            return super().fold(events)

    head = services.ledger.recorder.max_notification_id()
    runner = _runner(services, FlakyDatabase(services.orders), RecordingRunner, stop_at=head)
    runner.run()

    assert runner.pauses == [0.5, 1.0]
    assert services.orders.parked() == []
    assert services.orders.get("acme", order_id)["captured_minor"] == 250


def test_a_runner_whose_position_moved_reloads_it_after_a_back_off_without_re_applying(
    services, shop
):
    order_id = _orders(shop, [400])[0]
    head = services.ledger.recorder.max_notification_id()
    projection = OrderSummariesProjection(services.orders)
    stale = _runner(services, projection, RecordingRunner, stop_at=head)
    assert stale.position == 0
    _runner(services, OrderSummariesProjection(services.orders)).catch_up()  # another runner
    with pytest.raises(StaleRunner):
        stale.process_next_batch()

    stale.run()

    assert stale.pauses == [0.5]  # one back-off, then it continued from the recorded position
    assert stale.position == head
    assert services.orders.get("acme", order_id)["captured_minor"] == 400
