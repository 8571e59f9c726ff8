"""A fake Spreedly core API on 127.0.0.1, for testing the Spreedly gateway client over real HTTP.

It speaks the JSON of Spreedly's v1 API (transaction bodies modelled on
``../shared/fixtures/gateways/spreedly/failed_verification.json``): purchase and authorize on a
gateway, capture, void and credit on a transaction, show a transaction, and list transactions of
a gateway or a payment method (``order``, ``count``, ``since_token``). It keeps its own books and
enforces what a processor does: capture once and never above the authorization, void only an
uncaptured authorization, credits never above what was charged.

Like Spreedly, it has no idempotency key: a repeated request is a second transaction. That is on
purpose — the client's own look-up is what must stop a second charge, and ``charges_for`` shows
whether it did.

Cards are made with ``add_card(behaviour)``; ``decline_amounts`` declines by amount whatever the
card. ``fail_next(fault)`` disturbs the next money-moving request:

- ``"result_unknown"``: the transaction is recorded as ``gateway_processing_result_unknown``;
- ``"http_500"``: an HTML 500 page, nothing recorded;
- ``"slow"``: the transaction is made, the answer comes after ``slow_s`` (beyond the client's
  timeout);
- ``"drop"``: the transaction is made, the connection is closed without an answer.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

# behaviour → (response.error_code, response.message), in the shapes processors return them.
DECLINES = {
    "generic_decline": ("", "Unable to process the purchase transaction."),
    "insufficient_funds": ("51", "Insufficient funds"),
    "expired_card": ("expired_card", "Expired card"),
    "stolen_card": ("43", "Pick up card (stolen card)"),
}
FAULTS = frozenset({"result_unknown", "http_500", "slow", "drop"})

ROUTES = [
    ("GET", re.compile(r"/v1/transactions/(?P<token>[^/]+)\.json"), "_show"),
    ("GET", re.compile(r"/v1/gateways/(?P<token>[^/]+)/transactions\.json"), "_list_gateway"),
    ("GET", re.compile(r"/v1/payment_methods/(?P<token>[^/]+)/transactions\.json"), "_list_card"),
    (
        "POST",
        re.compile(r"/v1/gateways/(?P<token>[^/]+)/(?P<action>purchase|authorize)\.json"),
        "_open",
    ),
    (
        "POST",
        re.compile(r"/v1/transactions/(?P<token>[^/]+)/(?P<action>capture|void|credit)\.json"),
        "_follow_up",
    ),
]

Answer = tuple[int, dict[str, Any]]


class FakeSpreedly:
    def __init__(
        self,
        *,
        environment_key: str = "fake_environment_key",
        access_secret: str = "fake_access_secret",
        gateway_token: str = "FakeGatewayToken0000000000",
        slow_s: float = 2.0,
    ) -> None:
        self.environment_key = environment_key
        self.access_secret = access_secret
        self.gateway_token = gateway_token
        self.slow_s = slow_s
        self.transactions: list[dict[str, Any]] = []  # oldest first
        self.requests: list[tuple[str, str, dict[str, Any] | None]] = []
        self.decline_amounts: dict[int, str] = {}
        self._cards: dict[str, dict[str, Any]] = {}
        self._faults: list[str] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Running -------------------------------------------------------------------------------

    def start(self) -> FakeSpreedly:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        # A short poll keeps ``stop`` quick: shutdown waits for the loop's next poll.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # ends any slow answer at once
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeSpreedly:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # Set-up and books ----------------------------------------------------------------------

    def add_card(self, behaviour: str = "succeeds") -> str:
        """A retained card whose charges succeed or decline as ``behaviour`` says; its token."""
        assert behaviour == "succeeds" or behaviour in DECLINES, behaviour
        token = _token()
        self._cards[token] = {
            "token": token,
            "behaviour": behaviour,
            "storage_state": "retained",
            "test": True,
            "last_four_digits": "4444",
            "first_six_digits": "555555",
            "card_type": "master",
            "payment_method_type": "credit_card",
        }
        return token

    def fail_next(self, fault: str) -> None:
        assert fault in FAULTS, fault
        with self._lock:
            self._faults.append(fault)

    def add_purchase(self, *, amount_minor: int, description: str, created_at: datetime) -> None:
        """Books a succeeded purchase directly, as if made earlier (for look-up and listing
        tests). Like Spreedly's, the books stay in creation order: lists read back in time."""
        card = self._cards[self.add_card()]
        with self._lock:
            transaction = self._transaction(
                "Purchase", card, amount_minor, "USD", None, description
            )
            transaction["created_at"] = transaction["updated_at"] = _timestamp(created_at)
            # Timestamps are whole UTC seconds in one format: their text sorts as their time.
            self.transactions.sort(key=lambda t: t["created_at"])

    def charges_for(self, key: UUID) -> list[dict[str, Any]]:
        """Transactions made with ``key`` that took effect or may have: all but declines."""
        return [
            transaction
            for transaction in self.transactions
            if transaction["description"] == str(key)
            and transaction["state"] != "gateway_processing_failed"
        ]

    # Serving -------------------------------------------------------------------------------

    def handle(self, handler: _Handler, method: str) -> None:
        url = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = json.loads(handler.rfile.read(length)) if length else None
        self.requests.append((method, url.path, body))
        if handler.headers.get("Authorization") != self._expected_authorization():
            message = "Unable to authenticate using the given environment_key and access_token."
            return _send(handler, 401, _errors("errors.invalid_credentials", message))
        route = next(
            (
                (name, match)
                for route_method, pattern, name in ROUTES
                if route_method == method and (match := pattern.fullmatch(url.path))
            ),
            None,
        )
        if route is None:
            return _send(handler, 404, _errors("errors.not_found", "Not found."))
        name, match = route
        if method == "GET":
            query = {key: values[-1] for key, values in parse_qs(url.query).items()}
            return _send(handler, *getattr(self, name)(query=query, **match.groupdict()))
        fields = (body or {}).get("transaction") or {}
        with self._lock:
            fault = self._faults.pop(0) if self._faults else None
            if fault == "http_500":
                return _send_html(handler, 500, "<h1>We're sorry, but something went wrong.</h1>")
            status, payload = getattr(self, name)(fields=fields, **match.groupdict())
            if fault == "result_unknown" and "transaction" in payload:
                _make_result_unknown(payload["transaction"])
                status = 200
        if fault == "drop":
            handler.close_connection = True  # the charge is made; the answer is never sent
            return None
        if fault == "slow" and self._stopping.wait(self.slow_s):
            return None
        return _send(handler, status, payload)

    def _expected_authorization(self) -> str:
        pair = f"{self.environment_key}:{self.access_secret}".encode()
        return "Basic " + base64.b64encode(pair).decode()

    def _show(self, *, token: str, query: dict[str, str]) -> Answer:
        transaction = self._find(token)
        if transaction is None:
            return 404, _errors(
                "errors.transaction_not_found", f"Unable to find the transaction {token}."
            )
        return 200, {"transaction": transaction}

    def _list_gateway(self, *, token: str, query: dict[str, str]) -> Answer:
        if token != self.gateway_token:
            return 404, _errors("errors.gateway_not_found", "Unable to find the specified gateway.")
        return 200, {"transactions": self._page(lambda t: t["gateway_token"] == token, query)}

    def _list_card(self, *, token: str, query: dict[str, str]) -> Answer:
        if token not in self._cards:
            return 404, _errors(
                "errors.payment_method_not_found", "Unable to find the payment method."
            )
        rows = self._page(lambda t: (t.get("payment_method") or {}).get("token") == token, query)
        return 200, {"transactions": rows}

    def _page(self, keep: Any, query: dict[str, str]) -> list[dict[str, Any]]:
        with self._lock:
            rows = [transaction for transaction in self.transactions if keep(transaction)]
        if query.get("order") == "desc":
            rows.reverse()
        since_token = query.get("since_token")
        if since_token:
            tokens = [row["token"] for row in rows]
            rows = rows[tokens.index(since_token) + 1 :] if since_token in tokens else []
        return rows[: min(int(query.get("count", 20)), 100)]

    def _open(self, *, token: str, action: str, fields: dict[str, Any]) -> Answer:
        if token != self.gateway_token:
            return 404, _errors("errors.gateway_not_found", "Unable to find the specified gateway.")
        card = self._cards.get(fields.get("payment_method_token", ""))
        if card is None:
            return 422, _errors(
                "errors.payment_method_not_found",
                "There is no payment method corresponding to the specified payment method token.",
            )
        amount = fields.get("amount")
        if not isinstance(amount, int) or amount <= 0:
            return 422, _errors("errors.invalid_amount", "Amount must be a positive integer.")
        transaction_type = "Purchase" if action == "purchase" else "Authorization"
        transaction = self._transaction(
            transaction_type,
            card,
            amount,
            fields.get("currency_code") or "USD",
            fields.get("order_id"),
            fields.get("description"),
        )
        behaviour = self.decline_amounts.get(amount, card["behaviour"])
        if behaviour != "succeeds":
            _decline(transaction, *DECLINES[behaviour])
        return (200 if transaction["succeeded"] else 422), {"transaction": transaction}

    def _follow_up(self, *, token: str, action: str, fields: dict[str, Any]) -> Answer:
        followed = self._find(token)
        if followed is None:
            return 404, _errors(
                "errors.transaction_not_found", f"Unable to find the transaction {token}."
            )
        transaction_type = {"capture": "Capture", "void": "Void", "credit": "Credit"}[action]
        left_minor = followed["amount"] - sum(
            t["amount"]
            for t in self._references_to(token)
            if t["transaction_type"] in ("Capture", "Credit") and t["succeeded"]
        )
        amount = fields.get("amount", left_minor if action != "void" else followed["amount"])
        currency = fields.get("currency_code") or followed["currency_code"]
        refusal = self._refusal(action, followed, amount, currency, left_minor)
        transaction = self._transaction(
            transaction_type,
            followed["payment_method"],
            amount,
            currency,
            fields.get("order_id"),
            fields.get("description"),
            reference_token=token,
        )
        if refusal:
            _decline(transaction, "", refusal)
        return (200 if transaction["succeeded"] else 422), {"transaction": transaction}

    def _refusal(
        self, action: str, followed: dict[str, Any], amount: int, currency: str, left_minor: int
    ) -> str | None:
        """Why the processor refuses this follow-up, or None."""
        follow_ups = {
            t["transaction_type"] for t in self._references_to(followed["token"]) if t["succeeded"]
        }
        if not followed["succeeded"]:
            return f"The referenced transaction did not succeed; nothing to {action}."
        if action in ("capture", "void"):
            if followed["transaction_type"] != "Authorization":
                return f"Only an authorization can be {action}d here."
            if follow_ups & {"Capture", "Void"}:
                return "The authorization was already captured or voided."
        elif followed["transaction_type"] not in ("Purchase", "Capture"):
            return "Only a purchase or a capture can be credited."
        if currency != followed["currency_code"]:
            return "The currency differs from the referenced transaction's."
        if action != "void" and not 0 < amount <= left_minor:
            return "The amount exceeds what the referenced transaction leaves."
        return None

    def _references_to(self, token: str) -> list[dict[str, Any]]:
        return [t for t in self.transactions if t.get("reference_token") == token]

    def _find(self, token: str) -> dict[str, Any] | None:
        return next((t for t in self.transactions if t["token"] == token), None)

    def _transaction(
        self,
        transaction_type: str,
        card: dict[str, Any],
        amount: int,
        currency: str,
        order_id: str | None,
        description: str | None,
        *,
        reference_token: str | None = None,
    ) -> dict[str, Any]:
        """Records a succeeded transaction in the shape Spreedly answers with."""
        now = _timestamp(datetime.now(UTC))
        transaction = {
            "on_test_gateway": True,
            "created_at": now,
            "updated_at": now,
            "succeeded": True,
            "state": "succeeded",
            "token": _token(),
            "transaction_type": transaction_type,
            "order_id": order_id,
            "ip": None,
            "description": description,
            "email": None,
            "merchant_name_descriptor": None,
            "merchant_location_descriptor": None,
            "gateway_specific_fields": None,
            "gateway_specific_response_fields": {},
            "gateway_transaction_id": secrets.token_hex(6),
            "amount": amount,
            "currency_code": currency,
            "retain_on_success": False,
            "message": "Succeeded!",
            "gateway_token": self.gateway_token,
            "reference_token": reference_token,
            "response": {
                "success": True,
                "message": "Successful " + transaction_type.lower(),
                "avs_code": None,
                "avs_message": None,
                "cvv_code": None,
                "cvv_message": None,
                "pending": False,
                "result_unknown": False,
                "error_code": "",
                "error_detail": None,
                "cancelled": False,
                "fraud_review": None,
                "created_at": now,
                "updated_at": now,
            },
            "payment_method": {k: v for k, v in card.items() if k != "behaviour"},
        }
        self.transactions.append(transaction)
        return transaction


class _Handler(BaseHTTPRequestHandler):
    fake: FakeSpreedly

    def do_GET(self) -> None:
        self.fake.handle(self, "GET")

    def do_POST(self) -> None:
        self.fake.handle(self, "POST")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output quiet


def _decline(transaction: dict[str, Any], error_code: str, message: str) -> None:
    transaction.update(succeeded=False, state="gateway_processing_failed", message=message)
    transaction["response"].update(success=False, message=message, error_code=error_code)


def _make_result_unknown(transaction: dict[str, Any]) -> None:
    message = "The result of the transaction is unknown: the processor did not answer in time."
    transaction.update(succeeded=False, state="gateway_processing_result_unknown", message=message)
    transaction["response"].update(success=False, message=message, result_unknown=True)


def _errors(key: str, message: str) -> dict[str, Any]:
    return {"errors": [{"key": key, "message": message}]}


def _send(handler: BaseHTTPRequestHandler, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    _write(handler, status, "application/json; charset=utf-8", body)


def _send_html(handler: BaseHTTPRequestHandler, status: int, html: str) -> None:
    _write(handler, status, "text/html; charset=utf-8", html.encode())


def _write(handler: BaseHTTPRequestHandler, status: int, content_type: str, body: bytes) -> None:
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the client gave up waiting (the slow fault)


def _token() -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(29))


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
