"""One LISTEN connection per process, fanning PostgreSQL notifications out to subscribers.

Notifications are a latency optimisation only: every consumer also re-polls on a timer, so a
lost notification (a dropped connection, a restart) delays work but never stalls it.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable

import psycopg
from psycopg.sql import SQL, Identifier

from adapters.postgres import connect

logger = logging.getLogger(__name__)


class Listener:
    def __init__(self, database_url: str) -> None:
        self._database_url = database_url
        self._callbacks: dict[str, list[Callable[[str], None]]] = defaultdict(list)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()

    def subscribe(self, channel: str, callback: Callable[[str], None]) -> None:
        """Call ``callback(payload)`` on each notification (subscribe before ``start``)."""
        self._callbacks[channel].append(callback)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pg-listener", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                with connect(self._database_url, autocommit=True) as conn:
                    for channel in self._callbacks:
                        conn.execute(SQL("LISTEN {}").format(Identifier(channel)))
                    self.connected.set()
                    while not self._stopping.is_set():
                        for notify in conn.notifies(timeout=0.5):
                            for callback in self._callbacks.get(notify.channel, ()):
                                callback(notify.payload)
            except psycopg.Error:
                self.connected.clear()
                logger.warning("LISTEN connection lost; reconnecting", exc_info=True)
                self._stopping.wait(1.0)
