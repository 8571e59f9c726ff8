"""The API's hot reads on the event loop: psycopg's ``AsyncConnectionPool`` over the read models.

The read models' own ``get``/``list`` are blocking (the projection runners, jobs and CLI use
them); a sync route runs each in a worker thread, a thread hop per request that costs more than
the SELECT. These are the same statements on the same serving tables (each view names its
table; ``with_value_figures`` derives the customer's figures as the view does), run on
connections of an async pool that belongs to one event loop: the API process's. Single SELECTs
in autocommit, so no BEGIN/COMMIT round trips.

A pool is opened by the API's lifespan on its loop (``open``) and closed at shutdown; code on
another loop (a test client without a lifespan) must not use it, so ``usable()`` says whether
the running loop is the pool's, and callers fall back to the blocking views otherwise.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

import orjson
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.sql import SQL, Composed
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool

from projections.customer_summaries import with_value_figures

# A request waits this long for a pooled connection, then fails (503): when PostgreSQL is
# unreachable an answer comes fast, as on the blocking path (``POSTGRES_CONNECT_TIMEOUT``).
CONNECTION_WAIT_S = 1.0
CONNECT_TIMEOUT_S = 1


class _View(Protocol):
    name: str

    def table(self, suffix: str) -> Composed: ...


class _Serving(Protocol):
    def serving_view(self, name: str) -> Any: ...


class AsyncReadModels:
    """Orders and customers from their serving read models, on one event loop's pool."""

    def __init__(
        self, database_url: str, serving: _Serving, *, min_size: int, max_size: int
    ) -> None:
        self._database_url = database_url
        self._serving = serving
        self._min_size = min_size
        self._max_size = max_size
        self._pool: AsyncConnectionPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Statements per serving version (a blue/green switch changes the view, and its name),
        # rendered to bytes once: a ``Composed`` is rendered again at every execution.
        self._statements: dict[tuple[str, str], bytes] = {}

    async def open(self) -> None:
        """Open the pool on the running loop (connections are made in the background)."""
        self._pool = AsyncConnectionPool(
            self._database_url,
            min_size=self._min_size,
            max_size=self._max_size,
            timeout=CONNECTION_WAIT_S,
            kwargs={
                "autocommit": True,
                "row_factory": dict_row,
                "connect_timeout": CONNECT_TIMEOUT_S,
            },
            configure=_configure,
            open=False,
            name="async-reads",
        )
        await self._pool.open(wait=False)
        self._loop = asyncio.get_running_loop()

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
        self._pool = None
        self._loop = None

    def usable(self) -> bool:
        """Whether this pool may serve the running loop (it is open, and on this loop)."""
        if self._pool is None:
            return False
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    async def _fetch(self, view: _View, kind: str, text: str, params: Any, *, many: bool) -> Any:
        """Run ``text`` (its ``{}`` the view's table of ``kind``'s first word) with ``params``."""
        assert self._pool is not None
        key = (view.name, kind)
        async with self._pool.connection() as conn:
            query = self._statements.get(key)
            if query is None:
                table = view.table(kind.partition(".")[0])
                query = self._statements[key] = SQL(text).format(table).as_bytes(conn)
            cursor = await conn.execute(query, params)
            return await (cursor.fetchall() if many else cursor.fetchone())

    async def order(self, tenant_id: str, order_id: UUID) -> dict[str, Any] | None:
        """The order's ``order_summaries`` row, as ``OrderSummariesView.get`` returns it."""
        view = self._serving.serving_view("order_summaries")
        row: dict[str, Any] | None = await self._fetch(
            view,
            "orders.get",
            "SELECT * FROM {} WHERE order_id = %s AND tenant_id = %s",
            (order_id, tenant_id),
            many=False,
        )
        return row

    async def orders(
        self,
        tenant_id: str,
        *,
        customer_id: UUID | None = None,
        status: str | None = None,
        after: tuple[datetime, UUID] | None = None,
        limit: int = 20,
    ) -> list[dict[str, Any]]:
        """Newest first, as ``OrderSummariesView.list``; ``after`` is the (placed_at, order_id)
        of the last row already seen."""
        view = self._serving.serving_view("order_summaries")
        conditions = ["tenant_id = %s"]
        params: list[Any] = [tenant_id]
        kind = "orders.list"
        if customer_id is not None:
            conditions.append("customer_id = %s")
            params.append(customer_id)
            kind += ".customer"
        if status is not None:
            conditions.append("status = %s")
            params.append(status)
            kind += ".status"
        if after is not None:
            conditions.append("(placed_at, order_id) < (%s, %s)")
            params.extend(after)
            kind += ".after"
        params.append(limit)
        rows: list[dict[str, Any]] = await self._fetch(
            view,
            kind,
            "SELECT * FROM {} WHERE " + " AND ".join(conditions) + " "
            "ORDER BY placed_at DESC, order_id DESC LIMIT %s",
            params,
            many=True,
        )
        return rows

    async def customer(self, tenant_id: str, customer_id: UUID) -> dict[str, Any] | None:
        """The customer's row with its value figures, as ``CustomerSummariesView.get``."""
        view = self._serving.serving_view("customer_summaries")
        row = await self._fetch(
            view,
            "customers.get",
            "SELECT * FROM {} WHERE customer_id = %s AND tenant_id = %s",
            (customer_id, tenant_id),
            many=False,
        )
        return with_value_figures(row) if row else None


async def _configure(conn: AsyncConnection[Any]) -> None:
    """jsonb columns (order lines, histories, value by currency) decoded by orjson."""
    set_json_loads(orjson.loads, conn)
