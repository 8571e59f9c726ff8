"""Runs one projection: follows the event log and applies it in batches, exactly once.

Catch-up reads up to ``batch_size`` notifications per transaction; live, each wake-up applies
whatever arrived (often one event). Notifications of the log's channel wake the runner; a re-poll
every ``poll_interval_s`` covers notifications that were lost. Topics are filtered in Python,
after the read, so the tracked position advances past events the projection ignores and a
reader waiting for any position is never left waiting on an irrelevant event.

Exactly once, with any number of processes: a runner applies events only while it holds its
projection's advisory lock (``ProjectionLock``; the others wait as hot standby), and every batch
is a compare-and-set of the tracking row (``BatchView.batch``), so even a runner that lost its
lock without noticing cannot commit a batch twice. The runner follows the serving version of its
read model (``ServingVersions``): after a blue/green switch it continues on the new version from
that version's own tracked position.

Failures are told apart by what they say about the event:
- the tracking row moved (``StaleRunner``): reload the position from the database, back off;
- the database or broker is unreachable (``RETRYABLE_ERRORS``, other database errors): back off
  and retry, never park — the event is not at fault;
- anything else, including the view's own constraint and data errors (``POISON_ERRORS``): the
  event is poison; it is parked with later events of its aggregate and the projection goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
import redis
from dramatiq.errors import ConnectionError as BrokerConnectionError
from eventsourcing import persistence
from eventsourcing.persistence import Mapper, Notification, Tracking
from eventsourcing.postgres import PostgresApplicationRecorder

from adapters.metrics import (
    PROJECTION_ERRORS,
    PROJECTION_EVENTS,
    PROJECTION_LAG,
    PROJECTION_PARKED,
    PROJECTION_POSITION,
)
from adapters.projection_lock import ProjectionLock
from projections.base import BatchProjection, Parked, StaleRunner
from projections.versions import ServingVersions

logger = logging.getLogger(__name__)

RETRY_DELAY_S_MIN = 0.5
RETRY_DELAY_S_MAX = 30.0
LOCK_POLL_INTERVAL_S = 0.5

# Connections, pools and brokers fail for reasons of their own; retried with back-off.
RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,  # includes psycopg_pool.PoolTimeout
    psycopg.InterfaceError,
    persistence.OperationalError,  # eventsourcing's wrapping of the two above
    persistence.InterfaceError,
    OSError,
    redis.RedisError,
    BrokerConnectionError,
)
# A constraint or a value the view's tables refuse: a property of the event being applied.
POISON_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.IntegrityError,
    psycopg.DataError,
    persistence.IntegrityError,
    persistence.DataError,
)


def is_retryable(error: BaseException) -> bool:
    """True for failures of the infrastructure; False for a poison event."""
    if isinstance(error, RETRYABLE_ERRORS):
        return True
    if isinstance(error, POISON_ERRORS):
        return False
    # Other database errors (a missing table after ``--drop-old``, a revoked permission) are
    # the database's state, not the event's: parking would set aside every event in turn.
    return isinstance(error, (psycopg.Error, persistence.PersistenceError))


def _parked(notification: Notification, error: str) -> Parked:
    return Parked(
        notification_id=notification.id,
        originator_id=notification.originator_id,
        originator_version=notification.originator_version,
        topic=notification.topic,
        error=error[:2000],
    )


class Backoff:
    """Doubling delays between retries, from ``RETRY_DELAY_S_MIN`` up to the maximum."""

    def __init__(self) -> None:
        self.delay_s = RETRY_DELAY_S_MIN

    def next(self) -> float:
        delay_s, self.delay_s = self.delay_s, min(self.delay_s * 2, RETRY_DELAY_S_MAX)
        return delay_s

    def reset(self) -> None:
        self.delay_s = RETRY_DELAY_S_MIN


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
        lock: ProjectionLock | None = None,
        serving: ServingVersions | None = None,
    ) -> None:
        """Without ``lock`` the runner applies whenever asked (tests, rebuilds): the tracking
        compare-and-set still refuses a batch another runner applied."""
        self.application_name = application_name
        self.recorder = recorder
        self.mapper = mapper
        self.projection = projection
        self.view = projection.view
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.on_commit = on_commit
        self.lock = lock
        self.serving = serving
        self.wakeup = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._topics = frozenset(projection.topics)
        self.position = self.view.position(application_name)
        self.label = self.view.name
        self._serving_checked_at = 0.0

    @property
    def name(self) -> str:
        return self.projection.name

    def notify(self, _payload: str = "") -> None:
        """Called when the log has new events (or the serving version may have changed)."""
        self.wakeup.set()

    # Applying ---------------------------------------------------------------------------------

    def process_next_batch(self) -> int:
        """Apply the next batch; return how many notifications were read (0 when caught up).

        If the batch holds a poison event, the batch is applied again one notification at a
        time, and whatever still fails is parked (see ``projections.base``). Raises
        ``StaleRunner`` if another runner moved the position, and retryable errors as they are.
        """
        notifications = self.recorder.select_notifications(
            start=self.position, limit=self.batch_size, inclusive_of_start=False
        )
        if not notifications:
            return 0
        try:
            self._apply(notifications)
        except StaleRunner:
            raise
        except Exception as error:
            if is_retryable(error):
                raise
            logger.warning("projection %s: isolating a poison event", self.label, exc_info=True)
            self._apply_one_at_a_time(notifications)
        PROJECTION_EVENTS.labels(self.label).inc(len(notifications))
        return len(notifications)

    def _apply(self, notifications: Sequence[Notification]) -> None:
        last_id = notifications[-1].id
        with self.view.batch(self.application_name, self.position, last_id) as curs:
            relevant = [n for n in notifications if n.topic in self._topics]
            # Read inside the batch: a retry of parked events in another process may have just
            # taken an aggregate out of the dead letters.
            parked_ids = self.view.parked_among(curs, (n.originator_id for n in relevant))
            parked = [
                _parked(n, "an earlier event of this aggregate is parked")
                for n in relevant
                if n.originator_id in parked_ids
            ]
            to_domain_event = self.mapper.to_domain_event
            events = [to_domain_event(n) for n in relevant if n.originator_id not in parked_ids]
            self.projection.process_batch(events, Tracking(self.application_name, last_id), parked)
        self._advanced(last_id)

    def _apply_one_at_a_time(self, notifications: Sequence[Notification]) -> None:
        for notification in notifications:
            try:
                self._apply([notification])
            except StaleRunner:
                raise
            except Exception as error:
                if is_retryable(error):
                    raise
                self._park(notification, error)

    def _park(self, notification: Notification, error: Exception) -> None:
        parked = _parked(notification, f"{type(error).__name__}: {error}")
        tracking = Tracking(self.application_name, notification.id)
        with self.view.batch(self.application_name, self.position, notification.id):
            self.view.commit_batch(None, tracking, [parked])
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

        Safe while the projection runs elsewhere: each aggregate's retry locks the tracking row
        as a batch does, and events another retry already applied are skipped.
        """
        by_aggregate: dict[Any, list[Notification]] = {}
        for row in self.view.parked():
            found = self.recorder.select_notifications(start=row["notification_id"], limit=1)
            if found and found[0].id == row["notification_id"]:
                by_aggregate.setdefault(found[0].originator_id, []).append(found[0])
        applied = still_parked = 0
        for originator_id, notifications in by_aggregate.items():
            ids = [n.id for n in notifications]
            try:
                with self.view.retrying(self.application_name) as curs:
                    if self.view.unpark(curs, ids) != len(ids):
                        raise StaleRunner(f"parked events of {originator_id} were retried already")
                    changes = self.projection.fold(
                        [self.mapper.to_domain_event(n) for n in notifications]
                    )
                    if changes:
                        self.view.write(curs, changes)
            except StaleRunner:
                continue
            except Exception as error:
                if is_retryable(error):
                    raise
                logger.warning("parked events of %s still fail", originator_id, exc_info=True)
                still_parked += len(notifications)
                continue
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

    # Running ----------------------------------------------------------------------------------

    def follow_serving_version(self, *, refresh: bool = False) -> None:
        """Continue on the serving version of the view if a switch made it another one."""
        if self.serving is None:
            return
        if refresh:
            self.serving.refresh()
        view = self.serving.serving_view(self.name)
        if view is not self.view:
            logger.info("projection %s continues on %s", self.label, view.name)
            self.projection = self.projection.for_view(view)
            self.view = view
            self.label = view.name
            self.position = view.position(self.application_name)

    def _holds_lock(self) -> bool:
        """Whether this runner may apply now: it holds (or just took) its projection's lock."""
        if self.lock is None or self.lock.still_held():
            return True
        try:
            acquired = self.lock.try_acquire()
        except (psycopg.Error, OSError):
            logger.warning("projection %s cannot reach its lock", self.name, exc_info=True)
            return False
        if acquired:
            logger.info("projection %s: this runner is now the active one", self.name)
            # The previous holder may have applied more: start from what it recorded.
            self.follow_serving_version(refresh=True)
            self.position = self.view.position(self.application_name)
        return acquired

    def run(self) -> None:
        backoff = Backoff()
        reload_position = False
        while not self._stopping.is_set():
            self.wakeup.clear()
            try:
                if not self._holds_lock():
                    self._pause(LOCK_POLL_INTERVAL_S)
                    continue
                due = time.monotonic() - self._serving_checked_at >= self.poll_interval_s
                if due:
                    self._serving_checked_at = time.monotonic()
                self.follow_serving_version(refresh=due)
                if reload_position:
                    self.position = self.view.position(self.application_name)
                    reload_position = False
                self.catch_up()
            except StaleRunner as conflict:
                # Another runner committed first: resume from its position, after a pause, so
                # two runners that both think they are active do not race batch after batch.
                PROJECTION_ERRORS.labels(self.label).inc()
                logger.warning("projection %s: %s; reloading its position", self.label, conflict)
                reload_position = True
                self._pause(backoff.next())
                continue
            except Exception as error:
                PROJECTION_ERRORS.labels(self.label).inc()
                kind = "unreachable" if is_retryable(error) else "failed unexpectedly"
                logger.warning("projection %s: %s; retrying", self.label, kind, exc_info=True)
                reload_position = True
                self._pause(backoff.next())
                continue
            backoff.reset()
            self.wakeup.wait(self.poll_interval_s)

    def _pause(self, delay_s: float) -> None:
        self._stopping.wait(delay_s)

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
        if self.lock is not None:
            self.lock.release()
