"""Runs one projection: follows the event log and applies it in batches, exactly once.

Catch-up reads up to ``batch_size`` notifications per transaction; live, each wake-up applies
whatever arrived (often one event). Notifications of the log's channel wake the runner; a re-poll
every ``poll_interval_s`` covers notifications that were lost. Topics are filtered in Python,
after the read, so the tracked position advances past events the projection ignores and a
reader waiting for any position is never left waiting on an irrelevant event.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from eventsourcing.persistence import IntegrityError, Mapper, Tracking
from eventsourcing.postgres import PostgresApplicationRecorder

from adapters.metrics import (
    PROJECTION_ERRORS,
    PROJECTION_EVENTS,
    PROJECTION_LAG,
    PROJECTION_POSITION,
)
from projections.base import BatchProjection

logger = logging.getLogger(__name__)

RETRY_DELAY_S_MAX = 30.0


class ProjectionRunner:
    def __init__(
        self,
        *,
        application_name: str,
        recorder: PostgresApplicationRecorder,
        mapper: Mapper[Any],
        projection: BatchProjection[Any],
        batch_size: int = 1000,
        poll_interval_s: float = 1.0,
        on_commit: Callable[[str, int], None] | None = None,
    ) -> None:
        self.application_name = application_name
        self.recorder = recorder
        self.mapper = mapper
        self.projection = projection
        self.view = projection.view
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.on_commit = on_commit
        self.wakeup = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._topics = frozenset(projection.topics)
        self.position = self.view.position(application_name)
        self.label = self.view.name

    def notify(self, _payload: str = "") -> None:
        """Called when the log has new events."""
        self.wakeup.set()

    def process_next_batch(self) -> int:
        """Apply the next batch; return how many notifications were read (0 when caught up)."""
        notifications = self.recorder.select_notifications(
            start=self.position, limit=self.batch_size, inclusive_of_start=False
        )
        if not notifications:
            return 0
        to_domain_event = self.mapper.to_domain_event
        topics = self._topics
        events = [to_domain_event(n) for n in notifications if n.topic in topics]
        last_id = notifications[-1].id
        self.projection.process_batch(events, Tracking(self.application_name, last_id))
        self.position = last_id
        PROJECTION_EVENTS.labels(self.label).inc(len(notifications))
        PROJECTION_POSITION.labels(self.label).set(last_id)
        if self.on_commit is not None:
            self.on_commit(self.view.name, last_id)
        return len(notifications)

    def catch_up(self) -> int:
        """Apply everything recorded so far; return the number of notifications read."""
        total = 0
        while True:
            count = self.process_next_batch()
            total += count
            if count < self.batch_size:
                self.update_lag()
                return total

    def update_lag(self) -> int:
        lag = max(0, (self.recorder.max_notification_id() or 0) - self.position)
        PROJECTION_LAG.labels(self.label).set(lag)
        return lag

    def run(self) -> None:
        retry_delay_s = 0.5
        while not self._stopping.is_set():
            self.wakeup.clear()
            try:
                self.catch_up()
                retry_delay_s = 0.5
            except IntegrityError:
                # Another runner applied this position first: resume from what it recorded.
                self.position = self.view.position(self.application_name)
                continue
            except Exception:
                PROJECTION_ERRORS.labels(self.label).inc()
                logger.exception("projection %s failed a batch; retrying", self.label)
                self._stopping.wait(retry_delay_s)
                retry_delay_s = min(retry_delay_s * 2, RETRY_DELAY_S_MAX)
                self.position = self.view.position(self.application_name)
                continue
            self.wakeup.wait(self.poll_interval_s)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.run, name=f"projection-{self.label}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self.wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
