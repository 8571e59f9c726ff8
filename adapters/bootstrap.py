"""The composition root: reads settings, builds every shared object once, hands them out.

Entrypoints (the API lifespan, ``ledger worker``, ``ledger project``, the CLI) call
``bootstrap()``; tests call it with their own settings, vault and gateway.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

import dramatiq
from psycopg.sql import SQL, Identifier

from adapters.access import AccessStore
from adapters.embedded import EmbeddedPostgres, EmbeddedRedis
from adapters.gateways.sandbox import SandboxGateway, SandboxVault
from adapters.jobs import DispatchView, Jobs, NotificationStore, PaidOrderDispatcher, redis_broker
from adapters.listener import Listener
from adapters.positions import PositionWaiter
from adapters.postgres import connect, ensure_schema, eventsourcing_env
from adapters.projection_runner import ProjectionRunner
from adapters.settings import Settings
from application.ledger import Ledger
from application.ports import PaymentGateway, Vault
from projections.base import POSITIONS_CHANNEL, BatchProjection
from projections.customer_summaries import CustomerSummariesProjection, CustomerSummariesView
from projections.order_summaries import OrderSummariesProjection, OrderSummariesView

logger = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything an entrypoint needs, built once per process."""

    settings: Settings
    database_url: str
    redis_url: str
    ledger: Ledger
    orders: OrderSummariesView
    customers: CustomerSummariesView
    access: AccessStore
    notifications: NotificationStore
    waiter: PositionWaiter
    listener: Listener
    runners: dict[str, ProjectionRunner]
    broker: dramatiq.Broker
    jobs: Jobs
    _embedded: list[Any] = field(default_factory=list)
    _worker: dramatiq.Worker | None = None

    def start_listener(self) -> None:
        self.listener.start()

    def start_runners(self, names: list[str] | None = None) -> None:
        for name, runner in self.runners.items():
            if names is None or name in names:
                runner.start()

    def start_worker(self, threads: int | None = None) -> dramatiq.Worker:
        self._worker = dramatiq.Worker(
            self.broker, worker_threads=threads or self.settings.worker_threads
        )
        self._worker.start()
        return self._worker

    def readiness(self) -> dict[str, Any]:
        """Database, Redis and projection lag, for ``/readyz``."""
        checks: dict[str, Any] = {}
        try:
            head = self.ledger.recorder.max_notification_id() or 0
            positions = {
                name: runner.view.position(self.ledger.name)
                for name, runner in self.runners.items()
            }
            checks["database"] = "ok"
            checks["projections"] = {
                name: {
                    "position": position,
                    "lag": head - position,
                    "parked_aggregates": len(self.runners[name].parked_originator_ids),
                }
                for name, position in positions.items()
            }
        except Exception as error:  # any failure means "not ready", reported by name
            checks["database"] = f"error: {type(error).__name__}"
        try:
            self.broker.client.ping()
            checks["redis"] = "ok"
        except Exception as error:
            checks["redis"] = f"error: {type(error).__name__}"
        return checks

    def close(self) -> None:
        if self._worker is not None:
            self._worker.stop()
        for runner in self.runners.values():
            runner.stop()
        self.listener.stop()
        self.broker.close()
        # Let go of Redis connections too, so an embedded Redis sees its last client leave.
        client = getattr(self.broker, "client", None)
        if client is not None:
            client.connection_pool.disconnect()
        self.ledger.close()
        for service in reversed(self._embedded):
            service.stop()


def bootstrap(
    settings: Settings | None = None,
    *,
    vault: Vault | None = None,
    gateway: PaymentGateway | None = None,
    broker: dramatiq.Broker | None = None,
) -> Services:
    settings = settings or Settings()
    embedded: list[Any] = []
    database_url = settings.database_url
    if database_url is None:
        postgres = EmbeddedPostgres(settings.data_dir)
        embedded.append(postgres)
        database_url = postgres.url
    redis_url = settings.redis_url
    if redis_url is None and broker is None:
        redis = EmbeddedRedis(settings.data_dir)
        embedded.append(redis)
        redis_url = redis.url

    ensure_schema(database_url, settings.db_schema)
    env = eventsourcing_env(
        database_url,
        schema=settings.db_schema,
        pool_size=settings.pool_size,
        pool_max_overflow=settings.pool_max_overflow,
    )
    ledger = Ledger(
        env,
        vault=vault or SandboxVault(),
        gateway=gateway or SandboxGateway(),
        fingerprint_secret=_secret(database_url, settings.db_schema, "idempotency_fingerprint"),
    )
    # The ledger's pool is shared by the read models and stores below: one budget of connections.
    datastore = ledger.factory.datastore  # type: ignore[attr-defined]

    access = AccessStore(datastore)
    access.create_tables()
    if settings.bootstrap_api_key:
        access.create_key("default", "admin", settings.bootstrap_api_key)
    notifications = NotificationStore(datastore)
    notifications.create_tables()

    orders = OrderSummariesView(datastore)
    customers = CustomerSummariesView(datastore)
    dispatch = DispatchView(datastore)
    for view in (orders, customers, dispatch):
        view.create_table()

    broker = broker or redis_broker(redis_url or "", settings.redis_namespace)
    jobs = Jobs(broker, ledger, notifications)
    waiter = PositionWaiter(ledger.name, [orders, customers])

    projections: list[BatchProjection[Any]] = [
        OrderSummariesProjection(orders),
        CustomerSummariesProjection(customers),
        PaidOrderDispatcher(dispatch, jobs),
    ]
    runners = {
        projection.name: ProjectionRunner(
            application_name=ledger.name,
            recorder=ledger.recorder,  # type: ignore[arg-type]
            mapper=ledger.mapper,
            projection=projection,
            batch_size=settings.projection_batch_size,
            poll_interval_s=settings.projection_poll_interval_s,
            on_commit=waiter.advance,
        )
        for projection in projections
    }
    listener = Listener(database_url)
    for runner in runners.values():
        listener.subscribe(ledger.recorder.channel_name, runner.notify)  # type: ignore[attr-defined]
    listener.subscribe(POSITIONS_CHANNEL, waiter.on_notify)

    return Services(
        settings=settings,
        database_url=database_url,
        redis_url=redis_url or "",
        ledger=ledger,
        orders=orders,
        customers=customers,
        access=access,
        notifications=notifications,
        waiter=waiter,
        listener=listener,
        runners=runners,
        broker=broker,
        jobs=jobs,
        _embedded=embedded,
    )


def _secret(database_url: str, schema: str, name: str) -> bytes:
    """A random secret kept in PostgreSQL, created once, the same for every process."""
    table = SQL("{}.{}").format(Identifier(schema), Identifier("ledger_secrets"))
    with connect(database_url, autocommit=True) as conn:
        conn.execute(
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY, value text NOT NULL)"
            ).format(table)
        )
        conn.execute(
            SQL("INSERT INTO {} (name, value) VALUES (%s, %s) ON CONFLICT DO NOTHING").format(
                table
            ),
            (name, secrets.token_hex(32)),
        )
        row = conn.execute(
            SQL("SELECT value FROM {} WHERE name = %s").format(table), (name,)
        ).fetchone()
    return bytes.fromhex(row[0])
