"""Background jobs on dramatiq: the broker, the actors, and the log-following dispatcher.

The event log is the outbox. ``PaidOrderDispatcher`` follows it like a projection and enqueues
one ``send_order_confirmation`` per order that became paid, then records its position; a crash
between the two re-enqueues (at-least-once), and the actor is idempotent (the notification row
is keyed by order), so a confirmation is written exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid5

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.utils import get_topic
from psycopg.sql import SQL, Composed, Identifier

from adapters.metrics import JOBS_ENQUEUED
from application.ledger import CustomerNotFound, Ledger, OrderNotFound
from domain.order import Order, OrderStatus
from projections.base import BatchProjection, BatchView, Parked

logger = logging.getLogger(__name__)

NOTIFICATIONS_QUEUE = "notifications"


def redis_broker(redis_url: str, namespace: str) -> RedisBroker:
    return RedisBroker(url=redis_url, namespace=namespace)


@dataclass
class NotificationStore:
    """Messages the ledger has sent to customers (an order confirmation, for now)."""

    datastore: PostgresDatastore

    def _table(self) -> Composed:
        return SQL("{}.{}").format(
            Identifier(self.datastore.schema or "public"), Identifier("ledger_notifications")
        )

    def create_tables(self) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} (notification_id uuid PRIMARY KEY,"
                    " tenant_id text NOT NULL, order_id uuid NOT NULL, kind text NOT NULL,"
                    " recipient text NOT NULL, subject text NOT NULL,"
                    " created_at timestamptz NOT NULL DEFAULT now())"
                ).format(self._table())
            )

    def record(
        self, *, tenant_id: str, order_id: UUID, kind: str, recipient: str, subject: str
    ) -> bool:
        """Record a sent notification once; False if it was already recorded."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL(
                    "INSERT INTO {}"
                    " (notification_id, tenant_id, order_id, kind, recipient, subject)"
                    " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
                ).format(self._table()),
                (uuid5(order_id, kind), tenant_id, order_id, kind, recipient, subject),
            )
            return curs.rowcount == 1

    def for_order(self, tenant_id: str, order_id: UUID) -> list[dict[str, Any]]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT * FROM {} WHERE tenant_id = %s AND order_id = %s").format(
                    self._table()
                ),
                (tenant_id, order_id),
            )
            return [dict(row) for row in curs.fetchall()]


class Jobs:
    """The actors, declared on a given broker (no import-time globals)."""

    def __init__(self, broker: dramatiq.Broker, ledger: Ledger, notifications: NotificationStore):
        self.broker = broker
        self.ledger = ledger
        self.notifications = notifications
        self.send_order_confirmation = dramatiq.Actor(
            self._send_order_confirmation,
            broker=broker,
            actor_name="send_order_confirmation",
            queue_name=NOTIFICATIONS_QUEUE,
            priority=0,
            options={
                "max_retries": 10,
                "time_limit": 30_000,
                "min_backoff": 1_000,
                "max_backoff": 300_000,
                # Unknown orders will not appear by retrying: fail fast, log, do not retry.
                "throws": (OrderNotFound, CustomerNotFound),
            },
        )

    def _send_order_confirmation(self, order_id: str) -> None:
        order = self.ledger.find_order(UUID(order_id))
        customer = self.ledger.get_customer(order.tenant_id, order.customer_id)
        created = self.notifications.record(
            tenant_id=order.tenant_id,
            order_id=order.id,
            kind="order_confirmation",
            recipient=customer.email,
            subject=f"Your order {order.number} is confirmed",
        )
        logger.info(
            "order confirmation for %s %s", order.number, "sent" if created else "already sent"
        )


class DispatchView(BatchView):
    """Only a tracking row: how far the dispatcher has enqueued."""

    base_name = "paid_order_dispatch"

    def table_statements(self) -> Iterable[Composed]:
        return ()

    def write(self, curs: Any, changes: Any) -> None:
        """Nothing to write: the jobs were enqueued before the position is committed."""


class PaidOrderDispatcher(BatchProjection[DispatchView]):
    name = "paid_order_dispatch"
    topics = (get_topic(Order.PaymentCaptured),)

    def __init__(self, view: DispatchView, jobs: Jobs) -> None:
        super().__init__(view)
        self.jobs = jobs

    def fold(self, events: Sequence[Any]) -> None:
        return None

    def process_batch(
        self, events: Sequence[Any], tracking: Tracking, parked: Sequence[Parked] = ()
    ) -> None:
        for event in events:
            if event.status == OrderStatus.PAID.value:
                self.jobs.send_order_confirmation.send(str(event.originator_id))
                JOBS_ENQUEUED.labels("send_order_confirmation").inc()
        self.view.commit_batch(None, tracking, parked)
