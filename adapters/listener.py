"""One LISTEN connection per process, fanning PostgreSQL notifications out to subscribers.

Notifications are a latency optimisation for most consumers: they also re-poll on a timer, so a
lost notification (a dropped connection, a restart) delays work but never stalls it. Consumers
that would rather not wait for their timer after a reconnection (notifications sent while the
connection was down are lost) register ``on_connect`` callbacks. A consumer that trusts a cache
only while it hears every change (the API key cache) registers ``on_disconnect`` too. Channels
are per schema where the payloads are (see ``projections.base.schema_channel``): notifications
are database-wide.
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
        self._on_connect: list[Callable[[], None]] = []
        self._on_disconnect: list[Callable[[], None]] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()

    def subscribe(self, channel: str, callback: Callable[[str], None]) -> None:
        """Call ``callback(payload)`` on each notification (subscribe before ``start``)."""
        self._callbacks[channel].append(callback)

    def on_connect(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` each time LISTEN is (re)established (subscribe before ``start``)."""
        self._on_connect.append(callback)

    def on_disconnect(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` each time the LISTEN connection is lost (before ``start``)."""
        self._on_disconnect.append(callback)

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
                    for on_connect in self._on_connect:
                        _call(on_connect)
                    self.connected.set()  # listening, and every subscriber caught up
                    while not self._stopping.is_set():
                        for notify in conn.notifies(timeout=0.5):
                            for callback in self._callbacks.get(notify.channel, ()):
                                _call(callback, notify.payload)
            except psycopg.Error:
                self.connected.clear()
                for on_disconnect in self._on_disconnect:
                    _call(on_disconnect)
                logger.warning("LISTEN connection lost; reconnecting", exc_info=True)
                self._stopping.wait(1.0)


def _call(callback: Callable[..., None], *args: str) -> None:
    """A failing subscriber must not end the LISTEN loop for the others (they re-poll anyway)."""
    try:
        callback(*args)
    except Exception:
        logger.warning("a notification subscriber failed", exc_info=True)
