"""The baseline of the HTTP read benches: a bare ASGI app, no framework, on the service's tables.

A plain ``async def app(scope, receive, send)`` run by uvicorn in a process of its own: a psycopg
``AsyncConnectionPool`` sized as the service's (``pool_size`` .. ``pool_size + max_overflow``),
no authentication, no validation, no transaction (autocommit), and the read model's own SELECT:

- ``GET /v1/orders/{id}``: the order's ``order_summaries`` row, as JSON;
- ``GET /v1/customers/{id}``: the customer's ``customer_summaries`` row, as JSON;
- ``GET /v1/orders?customer_id=...``: that customer's 21 newest orders (a page of 20 and one more
  to tell whether a next page exists, as the service asks), as JSON.

Configured by ``BENCH_BARE_*`` environment variables (set by ``bench.loadgen.BareAppProcess``).
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qs
from uuid import UUID

import orjson
from psycopg.rows import dict_row
from psycopg.sql import SQL, Identifier
from psycopg_pool import AsyncConnectionPool

_schema = os.environ.get("BENCH_BARE_SCHEMA", "public")
_orders = SQL("{}.{}").format(
    Identifier(_schema), Identifier(os.environ.get("BENCH_BARE_ORDERS_TABLE", "orders"))
)
_customers = SQL("{}.{}").format(
    Identifier(_schema), Identifier(os.environ.get("BENCH_BARE_CUSTOMERS_TABLE", "customers"))
)
TENANT_ID = os.environ.get("BENCH_BARE_TENANT_ID", "default")
GET_ORDER = SQL("SELECT * FROM {} WHERE order_id = %s AND tenant_id = %s").format(_orders)
GET_CUSTOMER = SQL("SELECT * FROM {} WHERE customer_id = %s AND tenant_id = %s").format(_customers)
LIST_ORDERS = SQL(
    "SELECT * FROM {} WHERE tenant_id = %s AND customer_id = %s"
    " ORDER BY placed_at DESC, order_id DESC LIMIT %s"
).format(_orders)
PAGE_SIZE = 20

_pool: AsyncConnectionPool | None = None
_JSON = [(b"content-type", b"application/json")]


async def _respond(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _JSON})
    await send({"type": "http.response.body", "body": body})


async def _query(statement: Any, params: tuple[Any, ...], *, many: bool) -> Any:
    assert _pool is not None
    async with _pool.connection() as conn:
        curs = await conn.execute(statement, params)
        return await (curs.fetchall() if many else curs.fetchone())


async def _lifespan(receive: Any, send: Any) -> None:
    global _pool
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            _pool = AsyncConnectionPool(
                os.environ["BENCH_BARE_DATABASE_URL"],
                min_size=int(os.environ.get("BENCH_BARE_POOL_MIN", "5")),
                max_size=int(os.environ.get("BENCH_BARE_POOL_MAX", "15")),
                kwargs={"autocommit": True, "row_factory": dict_row},
                open=False,
            )
            await _pool.open(wait=True)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await _pool.close()  # type: ignore[union-attr]
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    path: str = scope["path"]
    try:
        if path == "/healthz":
            await _respond(send, 200, b'{"status":"ok"}')
        elif path.startswith("/v1/orders/"):
            row = await _query(GET_ORDER, (UUID(path[11:]), TENANT_ID), many=False)
            await _respond(send, 200 if row else 404, orjson.dumps(row))
        elif path.startswith("/v1/customers/"):
            row = await _query(GET_CUSTOMER, (UUID(path[14:]), TENANT_ID), many=False)
            await _respond(send, 200 if row else 404, orjson.dumps(row))
        elif path == "/v1/orders":
            query = parse_qs(scope["query_string"].decode())
            customer_id = UUID(query["customer_id"][0])
            rows = await _query(LIST_ORDERS, (TENANT_ID, customer_id, PAGE_SIZE + 1), many=True)
            await _respond(send, 200, orjson.dumps({"data": rows[:PAGE_SIZE]}))
        else:
            await _respond(send, 404, b"{}")
    except (ValueError, KeyError):
        await _respond(send, 400, b"{}")
