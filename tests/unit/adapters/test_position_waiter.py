"""Read-your-writes waiting: woken by announcements, bounded by a timeout."""

from __future__ import annotations

import threading

from adapters.positions import PositionWaiter


class FakeView:
    """Stands in for a read model's tracking table."""

    name = "orders_v1"

    def __init__(self) -> None:
        self.tracked = 0

    def position(self, application_name: str) -> int:
        return self.tracked


def test_a_waiter_returns_as_soon_as_the_position_is_announced():
    view = FakeView()
    waiter = PositionWaiter("Ledger", [view])
    announce = threading.Timer(0.05, waiter.on_notify, args=("orders_v1:7",))
    announce.start()
    assert waiter.wait(view, 7, timeout_s=5)


def test_a_waiter_finds_a_position_whose_announcement_was_lost():
    view = FakeView()
    waiter = PositionWaiter("Ledger", [view])
    threading.Timer(0.05, setattr, args=(view, "tracked", 9)).start()
    assert waiter.wait(view, 9, timeout_s=5)


def test_a_waiter_gives_up_after_its_timeout():
    view = FakeView()
    waiter = PositionWaiter("Ledger", [view])
    waiter.on_notify("orders_v1:3")
    assert not waiter.wait(view, 4, timeout_s=0.1)


def test_announcements_of_other_views_and_garbage_are_ignored():
    view = FakeView()
    waiter = PositionWaiter("Ledger", [view])
    waiter.on_notify("customers_v1:100")
    waiter.on_notify("orders_v1:not-a-number")
    assert not waiter.wait(view, 1, timeout_s=0.05)
