"""Read-your-writes: wait until a read model has applied a log position.

Runners announce each committed position with ``pg_notify`` (and directly, in process); waiters
block on a condition, so a read resumes within milliseconds of the commit instead of at the next
tick of a poll. A periodic re-read of the tracking table covers lost notifications.
"""

from __future__ import annotations

import threading
import time

from projections.base import BatchView

RECHECK_INTERVAL_S = 0.25


class PositionWaiter:
    def __init__(self, application_name: str, views: list[BatchView]) -> None:
        self._application_name = application_name
        self._views = {view.name: view for view in views}
        self._positions: dict[str, int] = {}
        self._condition = threading.Condition()

    def on_notify(self, payload: str) -> None:
        name, _, position = payload.rpartition(":")
        if name in self._views and position.isdigit():
            self.advance(name, int(position))

    def advance(self, view_name: str, position: int) -> None:
        with self._condition:
            if position > self._positions.get(view_name, 0):
                self._positions[view_name] = position
                self._condition.notify_all()

    def _reread(self, view: BatchView) -> int:
        self.advance(view.name, view.position(self._application_name))
        return self._positions.get(view.name, 0)

    def wait(self, view: BatchView, position: int, timeout_s: float) -> bool:
        """True once ``view`` has applied ``position``; False after ``timeout_s``."""
        if self._positions.get(view.name, 0) >= position or self._reread(view) >= position:
            return True
        deadline = time.monotonic() + timeout_s
        with self._condition:
            while self._positions.get(view.name, 0) < position:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                if not self._condition.wait(min(remaining, RECHECK_INTERVAL_S)):
                    self._condition.release()
                    try:
                        self._reread(view)
                    finally:
                        self._condition.acquire()
        return self._positions.get(view.name, 0) >= position
