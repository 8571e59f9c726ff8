"""Read-your-writes: wait until a read model has applied a log position.

Runners announce each committed position on their schema's positions channel (and directly, in
process); waiters are woken by those announcements, so a read resumes within milliseconds of the
commit instead of at the next tick of a poll. A periodic re-read of the tracking tables covers
lost announcements. Waits follow the serving version of a read model: a waiter asking about a
version that a blue/green switch replaced is satisfied by the version now serving.

Two ways to wait: ``wait`` blocks the calling thread (jobs, benches, tests); ``wait_async``
suspends a coroutine, so API requests waiting for a position hold no worker thread. Coroutines
are woken from the announcing thread with ``loop.call_soon_threadsafe``, and one re-reading
thread serves all of them while any wait (a few queries a second, however many are waiting).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

logger = logging.getLogger(__name__)

RECHECK_INTERVAL_S = 0.25


class TrackedView(Protocol):
    name: str
    base_name: str

    def position(self, application_name: str) -> int: ...


class Serving(Protocol):
    def serving_view(self, name: str) -> TrackedView: ...


@dataclass(eq=False)
class _Waiting:
    view: TrackedView
    position: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None] = field(init=False)

    def __post_init__(self) -> None:
        self.future = self.loop.create_future()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class PositionWaiter:
    def __init__(
        self,
        application_name: str,
        serving: Serving | None = None,
        head: Callable[[], int | None] | None = None,
    ) -> None:
        """``head`` reads the log's last notification id (for ``refresh``)."""
        self._application_name = application_name
        self._serving = serving
        self._head = head
        self._positions: dict[str, int] = {}
        self._condition = threading.Condition()
        self._waiting: set[_Waiting] = set()
        self._rechecker: threading.Thread | None = None

    @property
    def waiting(self) -> int:
        """How many coroutines are waiting now."""
        return len(self._waiting)

    def on_notify(self, payload: str) -> None:
        name, _, position = payload.rpartition(":")
        if name and position.isdigit():
            self.advance(name, int(position))

    def advance(self, view_name: str, position: int) -> None:
        with self._condition:
            if position <= self._positions.get(view_name, 0):
                return
            self._positions[view_name] = position
            self._condition.notify_all()
            woken = [w for w in self._waiting if self._reached_locked(w.view, w.position)]
            for waiting in woken:
                self._waiting.discard(waiting)
        for waiting in woken:
            waiting.loop.call_soon_threadsafe(_resolve, waiting.future)

    def _views_of(self, view: TrackedView) -> list[TrackedView]:
        """The view asked about and, if a switch replaced it, the view serving now."""
        if self._serving is None:
            return [view]
        try:
            serving = self._serving.serving_view(view.base_name)
        except KeyError:  # a view no projection serves (a rebuild's, a test's)
            return [view]
        return [view] if serving is view else [view, serving]

    def _reached_locked(self, view: TrackedView, position: int) -> bool:
        return any(self._positions.get(v.name, 0) >= position for v in self._views_of(view))

    def reached(self, view: TrackedView, position: int) -> bool:
        """Whether ``view`` is known (in memory, no query) to have applied ``position``."""
        with self._condition:
            return self._reached_locked(view, position)

    def _reread(self, view: TrackedView) -> None:
        for current in self._views_of(view):
            self.advance(current.name, current.position(self._application_name))

    def refresh(self, view: TrackedView) -> int:
        """Re-read ``view``'s tracked position; return the log's head (blocking: a query)."""
        self._reread(view)
        return (self._head() or 0) if self._head is not None else 0

    def wait(self, view: TrackedView, position: int, timeout_s: float) -> bool:
        """True once ``view`` has applied ``position``; False after ``timeout_s`` (blocking)."""
        if self.reached(view, position):
            return True
        self._reread(view)
        deadline = time.monotonic() + timeout_s
        with self._condition:
            while not self._reached_locked(view, position):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                if not self._condition.wait(min(remaining, RECHECK_INTERVAL_S)):
                    self._condition.release()
                    try:
                        self._reread(view)
                    finally:
                        self._condition.acquire()
        return True

    async def wait_async(self, view: TrackedView, position: int, timeout_s: float) -> bool:
        """True once ``view`` has applied ``position``; False after ``timeout_s``. Holds no
        thread while it waits."""
        waiting = _Waiting(view, position, asyncio.get_running_loop())
        with self._condition:
            if self._reached_locked(view, position):
                return True
            self._waiting.add(waiting)
            if self._rechecker is None:
                self._rechecker = threading.Thread(
                    target=self._recheck, name="position-recheck", daemon=True
                )
                self._rechecker.start()
        try:
            await asyncio.wait_for(waiting.future, timeout_s)
            return True
        except TimeoutError:
            return self.reached(view, position)
        finally:
            with self._condition:
                self._waiting.discard(waiting)

    def _recheck(self) -> None:
        """Re-read the views coroutines wait for, while any wait (covers lost announcements)."""
        while True:
            time.sleep(RECHECK_INTERVAL_S)
            with self._condition:
                if not self._waiting:
                    self._rechecker = None
                    return
                views = {w.view.name: w.view for w in self._waiting}
            for view in views.values():
                try:
                    self._reread(view)
                except Exception:  # the next round tries again; waits end by their timeout
                    logger.debug("re-reading %s failed", view.name, exc_info=True)
