"""PostgreSQL gone for a while: the API answers 503 fast, /readyz says why, and it recovers.

The shared PostgreSQL server is not touched: a second system is bootstrapped against a TCP proxy
this test controls. Cutting the proxy resets every open connection and refuses new ones, as a
stopped or restarted server does; restoring it lets connections through again.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from adapters.bootstrap import Services, bootstrap
from adapters.settings import Settings
from api.app import create_app

pytestmark = pytest.mark.integration

ANSWER_WITHIN_S = 2.5


class TcpProxy:
    """A threaded TCP forwarder to ``target`` that can be cut (connections reset) and restored."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = threading.Event()
        self.up.set()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="tcp-proxy").start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up.is_set():
                _reset(client)
                continue
            try:
                upstream = self._connect_upstream()
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _connect_upstream(self) -> socket.socket:
        host, port = self.target
        if host.startswith("/"):  # an embedded PostgreSQL listens on a Unix socket
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.settimeout(5)
            upstream.connect(f"{host}/.s.PGSQL.{port}")
            return upstream
        return socket.create_connection(self.target, timeout=5)

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass  # the other side was reset: so is this one, below
        finally:
            for each in (source, sink):
                _reset(each)
            with self._lock:
                self._sockets -= {source, sink}

    def cut(self) -> None:
        """PostgreSQL is gone: reset every open connection and every new one."""
        self.up.clear()
        with self._lock:
            sockets = list(self._sockets)
        for each in sockets:
            _reset(each)

    def restore(self) -> None:
        self.up.set()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self.listener.close()


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@pytest.fixture
def proxy(database_url: str) -> Iterator[TcpProxy]:
    params = conninfo_to_dict(database_url)
    tcp_proxy = TcpProxy(str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432))
    yield tcp_proxy
    tcp_proxy.close()


@pytest.fixture
def proxied_services(proxy: TcpProxy, database_url: str, redis_url: str) -> Iterator[Services]:
    """A system whose every PostgreSQL connection goes through the proxy."""
    proxied_url = make_conninfo(database_url, host="127.0.0.1", port=str(proxy.port))
    schema = "test_outage_" + uuid.uuid4().hex[:8]
    settings = Settings(
        database_url=proxied_url,
        redis_url=redis_url,
        db_schema=schema,
        redis_namespace=schema,
        projection_poll_interval_s=0.2,
        pool_size=2,
        pool_max_overflow=4,
    )
    services = bootstrap(settings)
    services.start_listener()
    services.start_runners()
    yield services
    proxy.restore()
    services.close()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def _eventually(condition: Callable[[], bool], timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def _assert_unavailable(response: httpx.Response, elapsed_s: float) -> None:
    assert response.status_code == 503, response.text
    assert elapsed_s < ANSWER_WITHIN_S, elapsed_s
    assert int(response.headers["Retry-After"]) >= 1
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("api_error", "service_unavailable")


def test_postgres_gone_answers_503_fast_and_recovers_without_restart(
    proxy: TcpProxy, proxied_services: Services
) -> None:
    key = proxied_services.access.create_key("acme", "admin")
    headers = {"Authorization": f"Bearer {key}"}
    customer = {"email": "a@example.com", "name": "Ada", "country": "US", "currency": "USD"}
    with TestClient(create_app(proxied_services)) as client:

        def register() -> httpx.Response:
            return client.post("/v1/customers", json=customer, headers=headers)

        customer_id = register().json()["id"]
        order = {
            "customer_id": customer_id,
            "currency": "USD",
            "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price_minor": 100}],
        }
        order_id = client.post("/v1/orders", json=order, headers=headers).json()["id"]

        def read_order() -> httpx.Response:
            return client.get(f"/v1/orders/{order_id}", headers=headers)

        assert _eventually(lambda: read_order().status_code == 200)
        assert client.get("/readyz").status_code == 200

        proxy.cut()
        # Several rounds: the first meets pooled connections the cut reset, later ones an empty
        # pool that cannot reconnect; and a few requests at once, as under load.
        for _ in range(3):
            _assert_unavailable(*_timed(register))
            _assert_unavailable(*_timed(read_order))
        with ThreadPoolExecutor(max_workers=6) as pool:
            results = list(pool.map(lambda _: _timed(register), range(6)))
        for response, elapsed_s in results:
            _assert_unavailable(response, elapsed_s)
        # A command already past authentication fails fast too (no long retry loop).
        started = time.monotonic()
        with pytest.raises(Exception) as raised:
            proxied_services.ledger.get_order("acme", uuid.uuid4())
        assert time.monotonic() - started < ANSWER_WITHIN_S
        assert "Operational" in type(raised.value).__name__ or "Interface" in type(
            raised.value
        ).__name__
        readiness, elapsed_s = _timed(lambda: client.get("/readyz"))
        assert readiness.status_code == 503 and elapsed_s < ANSWER_WITHIN_S, elapsed_s
        body: dict[str, Any] = readiness.json()
        assert body["status"] == "unavailable"
        assert body["database"].startswith("error: ")
        assert body["redis"] == "ok"

        proxy.restore()
        assert _eventually(lambda: register().status_code == 201)
        assert _eventually(lambda: read_order().status_code == 200)
        assert _eventually(lambda: client.get("/readyz").status_code == 200)
