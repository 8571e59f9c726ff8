"""The composition root: reads settings, builds every shared object once, hands them out.

Entrypoints (the API lifespan, ``ledger worker``, ``ledger project``, the CLI) call
``bootstrap()``; tests call it with their own settings, vault and gateway.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import dramatiq
from psycopg.sql import SQL, Identifier

from adapters.access import AccessStore
from adapters.account_updater import AccountUpdater
from adapters.async_reads import AsyncReadModels
from adapters.billing_scheduler import BillingScheduler
from adapters.books_reconciliation import DailyBooksReconciliation
from adapters.embedded import EmbeddedPostgres, EmbeddedRedis
from adapters.fx_rates import PgFxRates
from adapters.gateway_figures import MemoryGatewayFigures, PgGatewayFigures
from adapters.gateways.sandbox import SandboxGateway, SandboxVault
from adapters.gateways.sandbox_book import PgSandboxBook, SandboxBook
from adapters.gateways.spreedly_accounts import SpreedlyAccounts
from adapters.jobs import (
    ConfirmationSweeper,
    DispatchView,
    Jobs,
    NotificationStore,
    PaidOrderDispatcher,
    redis_broker,
)
from adapters.listener import Listener
from adapters.positions import PositionWaiter
from adapters.postgres import (
    configured_by_env_only,
    connect,
    ensure_schema,
    eventsourcing_env,
)
from adapters.projection_lock import ProjectionLock, schema_setup_lock
from adapters.projection_runner import ProjectionRunner
from adapters.reconciliation import PaymentReconciler
from adapters.settings import Settings
from application.gateways import GatewayFigures
from application.ledger import Ledger
from application.ports import PaymentGateway, Vault
from domain.routing import RoutingConfig
from projections.base import BatchProjection, BatchView, positions_channel
from projections.customer_summaries import CustomerSummariesProjection, CustomerSummariesView
from projections.gateway_report import GatewayReportProjection, GatewayReportView
from projections.genealogy import GenealogyProjection, GenealogyView
from projections.mrr import MrrProjection, MrrView
from projections.order_summaries import OrderSummariesProjection, OrderSummariesView
from projections.sales_report import SalesReportProjection, SalesReportView
from projections.subscriptions import SubscriptionsProjection, SubscriptionsView
from projections.versions import ServingVersions

logger = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything an entrypoint needs, built once per process."""

    settings: Settings
    database_url: str
    redis_url: str
    ledger: Ledger
    serving: ServingVersions
    access: AccessStore
    notifications: NotificationStore
    waiter: PositionWaiter
    listener: Listener
    runners: dict[str, ProjectionRunner]
    broker: dramatiq.Broker
    jobs: Jobs
    billing: BillingScheduler
    sandbox_book: SandboxBook | None = None
    fx_rates: PgFxRates | None = None
    _embedded: list[Any] = field(default_factory=list)
    _worker: dramatiq.Worker | None = None
    _sweeper: ConfirmationSweeper | None = None
    _reconciler: PaymentReconciler | None = None
    _books_reconciler: DailyBooksReconciliation | None = None
    _account_updater: AccountUpdater | None = None

    @property
    def orders(self) -> OrderSummariesView:
        """The serving version of the orders read model (it changes on a blue/green switch)."""
        return self.serving.serving_view("order_summaries")  # type: ignore[return-value]

    @property
    def customers(self) -> CustomerSummariesView:
        """The serving version of the customers read model."""
        return self.serving.serving_view("customer_summaries")  # type: ignore[return-value]

    @property
    def sales_report(self) -> SalesReportView:
        """The serving version of the sales report read model."""
        return self.serving.serving_view("sales_report")  # type: ignore[return-value]

    @property
    def gateway_report(self) -> GatewayReportView:
        """The serving version of the gateway report read model."""
        return self.serving.serving_view("gateway_report")  # type: ignore[return-value]

    @property
    def subscriptions(self) -> SubscriptionsView:
        """The serving version of the subscriptions (and plans) read model."""
        return self.serving.serving_view("subscriptions")  # type: ignore[return-value]

    @property
    def genealogy(self) -> GenealogyView:
        """The serving version of the genealogy read model (distributors, both trees)."""
        return self.serving.serving_view("genealogy")  # type: ignore[return-value]

    @property
    def mrr(self) -> MrrView:
        """The serving version of the MRR read model."""
        return self.serving.serving_view("mrr")  # type: ignore[return-value]

    def async_reads(self) -> AsyncReadModels:
        """Read models for the API's event loop; the API's lifespan opens and closes it."""
        return AsyncReadModels(
            self.database_url,
            self.serving,
            min_size=1,
            max_size=self.settings.pool_size + self.settings.pool_max_overflow,
        )

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
        # The log is the outbox: re-enqueue confirmations a broker hiccup lost.
        self._sweeper = ConfirmationSweeper(
            lambda: self.orders,
            self.notifications,
            self.jobs,
            grace_s=self.settings.sweep_grace_s,
            interval_s=self.settings.sweep_interval_s,
        )
        self._sweeper.start()
        # Attempts whose outcome nobody learnt are finished with their own gateway key.
        self._reconciler = PaymentReconciler(
            self.ledger,
            lambda: self.orders,
            after_s=self.settings.reconcile_after_s,
            interval_s=self.settings.reconcile_interval_s,
        )
        self._reconciler.start()
        # Once a day, yesterday's calls are compared with the processor's own books.
        self._books_reconciler = DailyBooksReconciliation.of(
            self.ledger,
            self.sandbox_book,
            interval_s=self.settings.books_reconciliation_interval_s,
            delay_s=self.settings.books_reconciliation_delay_s,
        )
        if self._books_reconciler is not None:
            self._books_reconciler.start()
        # Renewals, dunning retries, ends and churns that are due, one message each.
        self.billing.start()
        self._account_updater = AccountUpdater(
            self.ledger,
            lambda: self.subscriptions,
            interval_s=self.settings.account_updater_interval_s,
        )
        self._account_updater.start()
        return self._worker

    def readiness(self, timeout_s: float = 1.5) -> dict[str, Any]:
        """Database, Redis and projection lag, for ``/readyz``.

        Each check runs in its own thread and is reported as an error if it has not answered
        within ``timeout_s``: a probe must answer while PostgreSQL or Redis hangs, and a hung
        check thread ends by itself at the pool's or the socket's timeout.
        """

        def database() -> dict[str, Any]:
            head = self.ledger.recorder.max_notification_id() or 0
            return {
                "database": "ok",
                "projections": {
                    name: _projection_readiness(view, self.ledger.name, head)
                    for name in self.serving.names
                    if (view := self.serving.serving_view(name))
                },
            }

        def redis() -> dict[str, Any]:
            self.broker.client.ping()
            return {"redis": "ok"}

        executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="readiness")
        futures = {"database": executor.submit(database), "redis": executor.submit(redis)}
        executor.shutdown(wait=False)
        deadline = time.monotonic() + timeout_s
        checks: dict[str, Any] = {}
        for name, future in futures.items():
            try:
                checks.update(future.result(timeout=max(0.0, deadline - time.monotonic())))
            except TimeoutError:
                checks[name] = f"error: no answer within {timeout_s} s"
            except Exception as error:  # any failure means "not ready", reported by name
                checks[name] = f"error: {type(error).__name__}"
        return checks

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.stop()
        if self._reconciler is not None:
            self._reconciler.stop()
        if self._books_reconciler is not None:
            self._books_reconciler.stop()
        self.billing.stop()
        if self._account_updater is not None:
            self._account_updater.stop()
        if self._worker is not None:
            # A job mid-run gets 5 s: shutdown stays within what systemd waits for.
            self._worker.stop(timeout=5_000)
        for runner in self.runners.values():
            runner.stop()
        self.listener.stop()
        self.access.close()
        self.broker.close()
        # Let go of Redis connections too, so an embedded Redis sees its last client leave.
        client = getattr(self.broker, "client", None)
        if client is not None:
            client.connection_pool.disconnect()
        self.ledger.close()
        for processor in self.ledger.processors.values():
            close = getattr(processor, "close", None)
            if close is not None:
                close()
        for service in reversed(self._embedded):
            service.stop()


IN_MEMORY_ENV = {"PERSISTENCE_MODULE": "eventsourcing.popo"}


def bootstrap_ledger(
    env: dict[str, str] | None = None,
    *,
    vault: Vault | None = None,
    gateway: PaymentGateway | None = None,
    processors: dict[str, PaymentGateway] | None = None,
    routing: RoutingConfig | None = None,
    gateway_figures: GatewayFigures | None = None,
    fingerprint_secret: bytes = b"in-memory",
    now: Callable[[], datetime] | None = None,
) -> Ledger:
    """The Ledger application with its ports: the sandbox unless told otherwise, and in-memory
    persistence unless given an environment. Unit tests call this with fakes; ``bootstrap``
    calls it with PostgreSQL's environment.

    ``gateway`` is the default processor (tenants without gateways, and routed gateways of its
    processor name); ``processors`` adds adapters by processor name for routed gateways;
    ``gateway_figures`` keeps the routing figures (in memory unless given).
    """
    return configured_by_env_only(Ledger)(
        env or IN_MEMORY_ENV,
        vault=vault or SandboxVault(),
        gateway=gateway or SandboxGateway(),
        processors=processors,
        routing=routing,
        gateway_figures=gateway_figures or MemoryGatewayFigures(),
        fingerprint_secret=fingerprint_secret,
        **({"now": now} if now else {}),
    )


def processors_from(settings: Settings) -> dict[str, PaymentGateway]:
    """The routed processors the settings configure besides the default sandbox: ``spreedly``
    when its URL, environment key and access secret are all given (else its gateways are
    skipped by routing, ``processor_not_configured``)."""
    processors: dict[str, PaymentGateway] = {}
    if (
        settings.spreedly_url
        and settings.spreedly_environment_key
        and settings.spreedly_access_secret
    ):
        processors["spreedly"] = SpreedlyAccounts(
            settings.spreedly_url,
            settings.spreedly_environment_key,
            settings.spreedly_access_secret,
        )
    return processors


def routing_config(settings: Settings) -> RoutingConfig:
    return RoutingConfig(
        mode=settings.routing_mode,
        hedging_share_bps=settings.routing_hedging_share_bps,
        window_size=settings.routing_window_size,
        cascade_depth=settings.cascade_depth,
        breaker_sample_min=settings.breaker_sample_min,
        breaker_approval_rate_bps_min=settings.breaker_approval_rate_bps_min,
        chargeback_breaker_transactions_min=settings.chargeback_breaker_transactions_min,
    )


def bootstrap(
    settings: Settings | None = None,
    *,
    vault: Vault | None = None,
    gateway: PaymentGateway | None = None,
    broker: dramatiq.Broker | None = None,
) -> Services:
    settings = settings or Settings()
    embedded = start_embedded(settings, redis=broker is None)
    database_url = embedded.settings.database_url
    redis_url = embedded.settings.redis_url
    assert database_url is not None

    # Processes starting together (``serve --workers N``) create the schema one at a time:
    # concurrent DDL on the same catalog rows fails ("tuple concurrently updated").
    with schema_setup_lock(database_url, settings.db_schema):
        ensure_schema(database_url, settings.db_schema)
        env = eventsourcing_env(
            database_url,
            schema=settings.db_schema,
            pool_size=settings.pool_size,
            pool_max_overflow=settings.pool_max_overflow,
        )
        ledger = bootstrap_ledger(
            env,
            vault=vault,
            gateway=gateway,
            processors=processors_from(settings),
            routing=routing_config(settings),
            fingerprint_secret=_secret(database_url, settings.db_schema, "idempotency_fingerprint"),
        )
        # The ledger's pool is shared by the read models and stores below: one budget of
        # connections.
        datastore = ledger.factory.datastore  # type: ignore[attr-defined]
        ledger.recorder.batch_saves_max = settings.group_commit_saves_max  # type: ignore[attr-defined]
        if gateway is None:
            # The default processor is the sandbox, keeping its own books in this database.
            book = PgSandboxBook(datastore)
            book.create_tables()
            ledger.gateway = SandboxGateway(book)
        sandbox_book = ledger.gateway.book if isinstance(ledger.gateway, SandboxGateway) else None
        # Routing figures of every gateway, shared by the processes through this database.
        gateway_figures = PgGatewayFigures(datastore)
        gateway_figures.create_tables()
        ledger.gateway_figures = gateway_figures

        access = AccessStore(datastore)
        access.create_tables()
        if settings.bootstrap_api_key:
            access.create_key("default", "admin", settings.bootstrap_api_key)
        notifications = NotificationStore(datastore)
        notifications.create_tables()
        fx_rates = PgFxRates(datastore)
        fx_rates.create_tables()

        view_classes: dict[str, type[BatchView]] = {
            "order_summaries": OrderSummariesView,
            "customer_summaries": CustomerSummariesView,
            "paid_order_dispatch": DispatchView,
            "sales_report": SalesReportView,
            "gateway_report": GatewayReportView,
            "mrr": MrrView,
            "subscriptions": SubscriptionsView,
            "genealogy": GenealogyView,
        }
        serving = ServingVersions(
            datastore,
            {name: _view_factory(cls, datastore) for name, cls in view_classes.items()},
        )
        serving.create_tables()

    broker = broker or redis_broker(redis_url or "", settings.redis_namespace)
    jobs = Jobs(broker, ledger, notifications)
    billing = BillingScheduler(
        ledger,
        lambda: serving.serving_view("subscriptions"),  # type: ignore[arg-type,return-value]
        broker,
        interval_s=settings.billing_interval_s,
        # One process enqueues the due work at a time; every worker process runs it.
        lock=ProjectionLock(database_url, settings.db_schema, "billing_scheduler"),
    )
    waiter = PositionWaiter(ledger.name, serving, head=ledger.recorder.max_notification_id)

    serving_view: Any = serving.serving_view  # each projection's own view class
    projections: list[BatchProjection[Any]] = [
        OrderSummariesProjection(serving_view("order_summaries")),
        CustomerSummariesProjection(serving_view("customer_summaries")),
        PaidOrderDispatcher(serving_view("paid_order_dispatch"), jobs),
        SalesReportProjection(serving_view("sales_report")),
        GatewayReportProjection(serving_view("gateway_report")),
        MrrProjection(serving_view("mrr")),
        SubscriptionsProjection(serving_view("subscriptions")),
        GenealogyProjection(serving_view("genealogy")),
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
            # One active runner per projection across processes; the others stand by.
            lock=ProjectionLock(database_url, settings.db_schema, projection.name),
            serving=serving,
        )
        for projection in projections
    }
    listener = Listener(database_url)
    # A switch of serving versions: refresh them first, then wake the runners to follow.
    listener.subscribe(serving.channel, serving.on_notify)
    listener.on_connect(serving.refresh)
    for runner in runners.values():
        listener.subscribe(ledger.recorder.channel_name, runner.notify)  # type: ignore[attr-defined]
        listener.subscribe(serving.channel, runner.notify)
    listener.subscribe(positions_channel(settings.db_schema), waiter.on_notify)
    # API keys are cached only while their changes are heard (see ``adapters.access``).
    listener.subscribe(access.channel, access.on_notify)
    listener.on_connect(access.start_caching)
    listener.on_disconnect(access.stop_caching)

    return Services(
        settings=settings,
        database_url=database_url,
        redis_url=redis_url or "",
        ledger=ledger,
        serving=serving,
        access=access,
        notifications=notifications,
        waiter=waiter,
        listener=listener,
        runners=runners,
        broker=broker,
        jobs=jobs,
        billing=billing,
        sandbox_book=sandbox_book,
        fx_rates=fx_rates,
        _embedded=embedded.servers,
    )


@dataclass
class EmbeddedServers:
    """The servers started for the URLs the settings leave unset, and settings naming them."""

    settings: Settings
    servers: list[Any]

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()


def start_embedded(settings: Settings, *, redis: bool = True) -> EmbeddedServers:
    """Start an embedded PostgreSQL (and Redis, if ``redis``) for each URL that is not set.

    ``ledger serve --workers N`` starts them once, in the parent, and hands their URLs to the
    workers; ``bootstrap`` calls it for a single process.
    """
    servers: list[Any] = []
    urls: dict[str, str] = {}
    if settings.database_url is None:
        postgres = EmbeddedPostgres(settings.data_dir)
        servers.append(postgres)
        urls["database_url"] = postgres.url
    if settings.redis_url is None and redis:
        try:
            embedded_redis = EmbeddedRedis(settings.data_dir)
        except BaseException:
            EmbeddedServers(settings, servers).stop()
            raise
        servers.append(embedded_redis)
        urls["redis_url"] = embedded_redis.url
    return EmbeddedServers(settings.model_copy(update=urls), servers)


def _view_factory(view_class: type[BatchView], datastore: Any) -> Callable[[int], BatchView]:
    return lambda version: view_class(datastore, version=version)  # type: ignore[abstract]


def _projection_readiness(view: BatchView, application_name: str, head: int) -> dict[str, Any]:
    position = view.position(application_name)
    return {
        "version": view.version,
        "position": position,
        "lag": head - position,
        "parked_aggregates": view.parked_aggregate_count(),
    }


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
