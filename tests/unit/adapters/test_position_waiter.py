"""Read-your-writes waiting: woken by announcements, bounded by a timeout, holding no thread."""

from __future__ import annotations

import asyncio
import threading

from adapters.positions import PositionWaiter


class FakeView:
    """Stands in for a read model's tracking table."""

    base_name = "orders"

    def __init__(self, version: int = 1) -> None:
        self.name = f"orders_v{version}"
        self.tracked = 0

    def position(self, application_name: str) -> int:
        return self.tracked


class FakeServing:
    """Stands in for ``ServingVersions``: which version of the view serves."""

    def __init__(self, view: FakeView) -> None:
        self.view = view

    def serving_view(self, name: str) -> FakeView:
        if name != "orders":
            raise KeyError(name)
        return self.view


def test_a_waiter_returns_as_soon_as_the_position_is_announced():
    view = FakeView()
    waiter = PositionWaiter("Ledger")
    announce = threading.Timer(0.05, waiter.on_notify, args=("orders_v1:7",))
    announce.start()
    assert waiter.wait(view, 7, timeout_s=5)


def test_a_waiter_finds_a_position_whose_announcement_was_lost():
    view = FakeView()
    waiter = PositionWaiter("Ledger")
    threading.Timer(0.05, setattr, args=(view, "tracked", 9)).start()
    assert waiter.wait(view, 9, timeout_s=5)


def test_a_waiter_gives_up_after_its_timeout():
    view = FakeView()
    waiter = PositionWaiter("Ledger")
    waiter.on_notify("orders_v1:3")
    assert not waiter.wait(view, 4, timeout_s=0.1)


def test_announcements_of_other_views_and_garbage_are_ignored():
    view = FakeView()
    waiter = PositionWaiter("Ledger")
    waiter.on_notify("customers_v1:100")
    waiter.on_notify("orders_v1:not-a-number")
    waiter.on_notify("garbage")
    assert not waiter.wait(view, 1, timeout_s=0.05)


def test_a_waiting_coroutine_is_woken_by_an_announcement_from_another_thread():
    view = FakeView()
    waiter = PositionWaiter("Ledger")

    async def scenario() -> tuple[bool, int]:
        waiting = asyncio.ensure_future(waiter.wait_async(view, 5, timeout_s=5))
        while waiter.waiting == 0:
            await asyncio.sleep(0)  # let the coroutine register
        threading.Timer(0.02, waiter.advance, args=("orders_v1", 5)).start()
        return await waiting, waiter.waiting

    assert asyncio.run(scenario()) == (True, 0)


def test_waiting_coroutines_find_a_lost_announcement_by_re_reading_and_time_out_otherwise():
    view = FakeView()
    waiter = PositionWaiter("Ledger")

    async def scenario() -> list[bool]:
        threading.Timer(0.05, setattr, args=(view, "tracked", 2)).start()
        return await asyncio.gather(
            waiter.wait_async(view, 2, timeout_s=5), waiter.wait_async(view, 3, timeout_s=0.6)
        )

    assert asyncio.run(scenario()) == [True, False]
    assert waiter.waiting == 0


def test_a_wait_on_a_replaced_version_is_satisfied_by_the_version_serving_now():
    old, new = FakeView(1), FakeView(2)
    serving = FakeServing(old)
    waiter = PositionWaiter("Ledger", serving)
    serving.view = new  # a blue/green switch: the old version no longer advances
    waiter.on_notify("orders_v2:12")
    assert waiter.reached(old, 12)
    assert not waiter.reached(old, 13)
