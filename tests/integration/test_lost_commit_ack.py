"""The server commits, then the connection drops before the client reads COMMIT's answer:
the write is reported as the success it was, never as a failure a client would repeat."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from typing import Any
from urllib.parse import urlsplit

import pytest

from adapters.bootstrap import bootstrap
from adapters.settings import Settings

pytestmark = pytest.mark.integration


class DropAfterCommitProxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.armed = 0
        self.dropped = 0
        self.lock = threading.Lock()
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(64)
        self.port = self.srv.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            s = socket.create_connection(self.target)
            threading.Thread(target=self._up, args=(c, s), daemon=True).start()
            threading.Thread(target=self._down, args=(s, c), daemon=True).start()

    def _up(self, c: socket.socket, s: socket.socket) -> None:
        try:
            while data := c.recv(65536):
                s.sendall(data)
        except OSError:
            pass
        for x in (c, s):
            with contextlib.suppress(OSError):
                x.close()

    def _down(self, s: socket.socket, c: socket.socket) -> None:
        buf = b""
        try:
            first = True
            while data := s.recv(65536):
                if first and data == b"N":  # answer to SSLRequest: no TLS
                    first = False
                    c.sendall(data)
                    continue
                first = False
                buf += data
                out = b""
                while len(buf) >= 5:
                    kind, length = buf[:1], struct.unpack("!i", buf[1:5])[0]
                    if len(buf) < 1 + length:
                        break
                    msg, buf = buf[: 1 + length], buf[1 + length :]
                    if kind == b"C" and msg[5:].startswith(b"COMMIT\0"):
                        with self.lock:
                            drop = self.armed > 0
                            if drop:
                                self.armed -= 1
                                self.dropped += 1
                        if drop:  # the server has committed; the client never hears it
                            c.sendall(out)
                            raise OSError("drop")
                    out += msg
                if out:
                    c.sendall(out)
        except OSError:
            pass
        for x in (c, s):
            with contextlib.suppress(OSError):
                x.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                x.close()


@pytest.fixture
def proxied(test_settings: Settings):
    u = urlsplit(test_settings.database_url)
    proxy = DropAfterCommitProxy(u.hostname or "127.0.0.1", u.port or 5432)
    url = f"postgresql://{u.username}@127.0.0.1:{proxy.port}{u.path}?sslmode=disable"
    built = bootstrap(test_settings.model_copy(update={"database_url": url}))
    yield built, proxy
    built.close()


def test_a_save_whose_commit_answer_was_lost_is_reported_committed(proxied: Any) -> None:
    services, proxy = proxied
    ledger = services.ledger
    c = ledger.register_customer(
        tenant_id="acme", email="a@example.com", name="A", country="US", currency="USD"
    ).body
    proxy.armed = 1
    outcome: Any
    try:
        outcome = ledger.place_order(
            tenant_id="acme",
            customer_id=__import__("uuid").UUID(c["id"]),
            currency="USD",
            lines=[{"sku": "A", "quantity": 1, "unit_price_minor": 100}],
        )
    except BaseException as e:
        outcome = e
    head = ledger.recorder.max_notification_id()
    orders = [
        n
        for n in ledger.recorder.select_notifications(start=1, limit=100)
        if n.topic.endswith("Order.Placed")
    ]
    assert proxy.dropped == 1
    assert not isinstance(outcome, BaseException), "order committed but caller told it failed"
    assert len(orders) == 1 and outcome.position == head


def test_a_purchase_whose_intent_commit_answer_was_lost_goes_through_once(proxied: Any) -> None:
    from datetime import UTC, datetime
    from uuid import UUID

    services, proxy = proxied
    ledger = services.ledger
    c = ledger.register_customer(
        tenant_id="acme", email="a@example.com", name="A", country="US", currency="USD"
    ).body
    m = ledger.attach_payment_method(
        tenant_id="acme",
        customer_id=UUID(c["id"]),
        card_number="4242424242424242",
        exp_month=12,
        exp_year=datetime.now(UTC).year + 2,
    ).body
    req = dict(
        tenant_id="acme",
        customer_id=UUID(c["id"]),
        currency="USD",
        lines=[{"sku": "A", "quantity": 1, "unit_price_minor": 100}],
        payment={"payment_method_id": m["id"]},
        idempotency_key="k1",
    )
    proxy.armed = 1
    try:
        outcome: Any = ledger.place_order(**req)
    except BaseException as e:
        outcome = e
    try:
        retry: Any = ledger.place_order(**req)
    except BaseException as e:
        retry = e
    charges = [t for _, t in services.sandbox_book.transactions("acme")]
    assert proxy.dropped == 1
    assert not isinstance(outcome, BaseException), outcome
    assert outcome.body["status"] == "paid"
    assert retry.replayed and retry.body == outcome.body
    assert len(charges) == 1
