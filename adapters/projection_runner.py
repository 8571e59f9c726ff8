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
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
import redis
from dramatiq.errors import ConnectionError as BrokerConnectionError
from eventsourcing.persistence import (
    IntegrityError,
    Mapper,
    Notification,
    PersistenceError,
    Tracking,
)
from eventsourcing.postgres import PostgresApplicationRecorder

from adapters.metrics import (
    PROJECTION_ERRORS,
    PROJECTION_EVENTS,
    PROJECTION_LAG,
    PROJECTION_PARKED,
    PROJECTION_POSITION,
)
from projections.base import BatchProjection, Parked

logger = logging.getLogger(__name__)

RETRY_DELAY_S_MAX = 30.0

# Failures of the infrastructure are retried with back-off; anything else raised while applying
# an event is a property of that event (a poison event) and gets it parked.
INFRASTRUCTURE_ERRORS = (
    PersistenceError,
    psycopg.Error,
    redis.RedisError,
    BrokerConnectionError,
    OSError,
)


def _parked(notification: Notification, error: str) -> Parked:
    return Parked(
        notification_id=notification.id,
        originator_id=notification.originator_id,
        originator_version=notification.originator_version,
        topic=notification.topic,
        error=error[:2000],
    )


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
        self.parked_originator_ids = {row["originator_id"] for row in self.view.parked()}

    def reset(self) -> None:
        """Drop the read model (and its dead letters) and start again from the beginning."""
        self.view.drop()
        self.view.create_table()
        self.position = 0
        self.parked_originator_ids = set()

    def notify(self, _payload: str = "") -> None:
        """Called when the log has new events."""
        self.wakeup.set()

    def process_next_batch(self) -> int:
        """Apply the next batch; return how many notifications were read (0 when caught up).

        If the batch holds a poison event, the batch is applied again one notification at a
        time, and whatever still fails is parked (see ``projections.base``).
        """
        notifications = self.recorder.select_notifications(
            start=self.position, limit=self.batch_size, inclusive_of_start=False
        )
        if not notifications:
            return 0
        try:
            self._apply(notifications)
        except INFRASTRUCTURE_ERRORS:
            raise
        except Exception:
            logger.warning("projection %s: isolating a poison event", self.label, exc_info=True)
            self._apply_one_at_a_time(notifications)
        PROJECTION_EVENTS.labels(self.label).inc(len(notifications))
        return len(notifications)

    def _apply(self, notifications: Sequence[Notification]) -> None:
        relevant = [n for n in notifications if n.topic in self._topics]
        parked = [
            _parked(n, "an earlier event of this aggregate is parked")
            for n in relevant
            if n.originator_id in self.parked_originator_ids
        ]
        to_domain_event = self.mapper.to_domain_event
        events = [
            to_domain_event(n)
            for n in relevant
            if n.originator_id not in self.parked_originator_ids
        ]
        last_id = notifications[-1].id
        self.projection.process_batch(events, Tracking(self.application_name, last_id), parked)
        self._advanced(last_id)

    def _apply_one_at_a_time(self, notifications: Sequence[Notification]) -> None:
        for notification in notifications:
            try:
                self._apply([notification])
            except INFRASTRUCTURE_ERRORS:
                raise
            except Exception as error:
                parked = _parked(notification, f"{type(error).__name__}: {error}")
                tracking = Tracking(self.application_name, notification.id)
                self.view.commit_batch(None, tracking, [parked])
                self.parked_originator_ids.add(notification.originator_id)
                self._advanced(notification.id)
                PROJECTION_PARKED.labels(self.label).inc()
                logger.error(
                    "projection %s parked notification %d (%s): %s",
                    self.label,
                    notification.id,
                    notification.topic,
                    parked.error,
                )

    def _advanced(self, position: int) -> None:
        self.position = position
        PROJECTION_POSITION.labels(self.label).set(position)
        if self.on_commit is not None:
            self.on_commit(self.view.name, position)

    def retry_parked(self) -> tuple[int, int]:
        """Apply parked events again, per aggregate in log order; return (applied, still parked).

        Run it with this projection's live runner stopped: the live runner remembers which
        aggregates are parked until it restarts.
        """
        by_aggregate: dict[Any, list[Notification]] = {}
        for row in self.view.parked():
            found = self.recorder.select_notifications(start=row["notification_id"], limit=1)
            if found and found[0].id == row["notification_id"]:
                by_aggregate.setdefault(found[0].originator_id, []).append(found[0])
        applied = still_parked = 0
        for originator_id, notifications in by_aggregate.items():
            try:
                events = [self.mapper.to_domain_event(n) for n in notifications]
                self.view.commit_retry(self.projection.fold(events), [n.id for n in notifications])
            except INFRASTRUCTURE_ERRORS:
                raise
            except Exception:
                logger.warning("parked events of %s still fail", originator_id, exc_info=True)
                still_parked += len(notifications)
                continue
            self.parked_originator_ids.discard(originator_id)
            applied += len(notifications)
        return applied, still_parked

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
