"""The Spreedly gateway: a client of Spreedly's JSON API behind the ``PaymentGateway`` port.

One instance speaks for one Spreedly gateway (``gateway_token``), that is one merchant account;
``account_id`` (our tenant) is not sent. Amounts go as integer minor units (``amount``) with
``currency_code``, as Spreedly takes them.

| port call   | Spreedly call                                                          |
|-------------|------------------------------------------------------------------------|
| `purchase`  | POST /v1/gateways/{gateway_token}/purchase.json                        |
| `authorize` | POST /v1/gateways/{gateway_token}/authorize.json                       |
| `capture`   | POST /v1/transactions/{token}/capture.json (amount: partial or whole)  |
| `void`      | POST /v1/transactions/{token}/void.json                                |
| `refund`    | POST /v1/transactions/{token}/credit.json (amount: partial or whole)   |
| `status`    | GET /v1/gateways/{gateway_token}/transactions.json?order=desc, matched |

It is also the processor's books for reconciliation (``ProcessorBooks``): ``transactions_on(day)``
reads the same gateway list newest first down to the day's start (at most ``listing_pages_max``
pages, then ``GatewayUnavailable``), and names each transaction in our words: Purchase →
purchase, Authorization → authorize, Capture, Void, Credit → refund (other types move no money
and are left out); ``succeeded`` → succeeded, a decline state → declined, any other state →
pending.

A transaction in state ``succeeded`` is a success; ``gateway_processing_failed`` (and Spreedly's
own ``failed``) is a decline, its code mapped to Stripe's words so that hard declines stay hard.
Every other state (``gateway_processing_result_unknown``, ``pending``, ``processing``), any 5xx,
401/403/408/429, an unreadable body, a timeout or a lost connection raises ``GatewayUnavailable``:
the application records the outcome as unknown and reconciles, it never reads one as a decline.

Idempotency. Spreedly takes no idempotency key, so every transaction we create carries ours in
its ``description`` (``order_id`` carries our reference, the order id staff search by). Before
moving money the client looks for a transaction with the key, and a repeated key returns that
transaction instead of a second charge. The look-up reads transaction lists newest first:

- ``purchase``/``authorize``: the card's list (GET /v1/payment_methods/{token}/transactions.json),
  short for any real card;
- ``capture``/``void``/``refund``: the gateway's list, down to the referenced transaction, since a
  follow-up cannot be older than what it follows;
- ``status``: the gateway's list.

Limits, stated once: a look-up stops at ``lookup_horizon_s`` (8 days, beyond the 5-day
reconciliation schedule): a key used longer ago than that is reported absent and would be sent
again. It reads at most ``lookup_pages_max`` pages; past that it cannot tell and raises
``GatewayUnavailable``, so on a very busy gateway a late refund or status stays unknown until the
budget is raised. The look-up sees only what Spreedly has recorded: a repeat sent while the first
request is still running at Spreedly is not protected (the reconciler waits first). Every money
call costs one list read before it (two for follow-ups); a table of key → token would remove it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID

import httpx

from application.ports import GatewayOutcome, ProcessorTransaction


class GatewayUnavailable(Exception):
    """Spreedly gave no definitive answer: the call may or may not have taken effect."""


class IdempotencyKeyReused(Exception):
    """The key already names a Spreedly transaction of another kind, amount or currency."""


SUCCEEDED_STATE = "succeeded"
# Spreedly's own "failed" is a refusal before the processor was reached: money did not move.
DECLINED_STATES = frozenset({"gateway_processing_failed", "failed"})

# ActiveMerchant's standard error codes (Spreedly passes them in ``response.error_code``), ISO 8583
# response codes some acquirers return raw, and Stripe's words (kept as they are) → our codes.
# An invalid expiry date is mapped to ``expired_card`` so that it stays a hard decline.
DECLINE_CODES = {
    "card_declined": "generic_decline",
    "incorrect_number": "incorrect_number",
    "invalid_number": "incorrect_number",
    "invalid_expiry_date": "expired_card",
    "expired_card": "expired_card",
    "invalid_cvc": "incorrect_cvc",
    "incorrect_cvc": "incorrect_cvc",
    "incorrect_zip": "incorrect_zip",
    "incorrect_pin": "incorrect_pin",
    "pickup_card": "pickup_card",
    "call_issuer": "call_issuer",
    "processing_error": "processing_error",
    "invalid_amount": "invalid_amount",
    "insufficient_funds": "insufficient_funds",
    "lost_card": "lost_card",
    "stolen_card": "stolen_card",
    "fraudulent": "fraudulent",
    "restricted_card": "restricted_card",
    "do_not_honor": "do_not_honor",
    "05": "do_not_honor",
    "51": "insufficient_funds",
    "54": "expired_card",
    "14": "incorrect_number",
    "04": "pickup_card",
    "07": "pickup_card",
    "41": "lost_card",
    "43": "stolen_card",
    "59": "fraudulent",
    "62": "restricted_card",
}
# When a processor leaves ``error_code`` empty, its message is all there is.
DECLINE_MESSAGE_HINTS = (
    ("insufficient funds", "insufficient_funds"),
    ("expired", "expired_card"),
    ("stolen", "stolen_card"),
    ("lost card", "lost_card"),
)
# A request Spreedly refused before any transaction existed (``{"errors": [...]}``).
REFUSAL_CODES = {
    "errors.payment_method_not_found": "invalid_account",
    "errors.payment_method_redacted": "invalid_account",
    "errors.transaction_not_found": "charge_not_found",
    "errors.invalid_amount": "invalid_amount",
}
UNAVAILABLE_HTTP_STATUSES = frozenset({401, 402, 403, 408, 429})
# Spreedly's transaction types that move money, in our words.
OUR_KINDS = {
    "Purchase": "purchase",
    "Authorization": "authorize",
    "Capture": "capture",
    "Void": "void",
    "Credit": "refund",
}
LOOKUP_HORIZON_S = 8 * 24 * 3600


class SpreedlyGateway:
    """A Spreedly gateway (merchant account) reached over HTTPS."""

    name = "spreedly"

    def __init__(
        self,
        base_url: str,
        environment_key: str,
        access_secret: str,
        gateway_token: str,
        *,
        timeout_s: float = 10,
        client: httpx.Client | None = None,
        lookup_horizon_s: float = LOOKUP_HORIZON_S,
        lookup_pages_max: int = 20,
        lookup_page_count: int = 100,
        listing_pages_max: int = 1000,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._auth = httpx.BasicAuth(environment_key, access_secret)
        self._gateway_token = gateway_token
        self._timeout_s = timeout_s
        self._owns_client = client is None
        # No retries: a POST repeated by a transport could charge twice.
        self._client = client if client is not None else httpx.Client()
        self._lookup_horizon_s = lookup_horizon_s
        self._lookup_pages_max = lookup_pages_max
        self._lookup_page_count = lookup_page_count
        self._listing_pages_max = listing_pages_max
        self._now = now or (lambda: datetime.now(UTC))

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    # The port --------------------------------------------------------------------------------

    def purchase(
        self,
        *,
        account_id: str,
        token: str,
        amount_minor: int,
        currency: str,
        idempotency_key: UUID,
        reference: str,
    ) -> GatewayOutcome:
        """Raises ``GatewayUnavailable`` (outcome unknown) and ``IdempotencyKeyReused``."""
        return self._open(
            "purchase", "Purchase", token, amount_minor, currency, idempotency_key, reference
        )

    def authorize(
        self,
        *,
        account_id: str,
        token: str,
        amount_minor: int,
        currency: str,
        idempotency_key: UUID,
        reference: str,
    ) -> GatewayOutcome:
        """Raises ``GatewayUnavailable`` (outcome unknown) and ``IdempotencyKeyReused``."""
        return self._open(
            "authorize", "Authorization", token, amount_minor, currency, idempotency_key, reference
        )

    def capture(
        self,
        *,
        account_id: str,
        transaction_id: str,
        amount_minor: int,
        currency: str,
        idempotency_key: UUID,
        reference: str,
    ) -> GatewayOutcome:
        """Raises ``GatewayUnavailable`` (outcome unknown) and ``IdempotencyKeyReused``."""
        fields = {"amount": amount_minor, "currency_code": currency}
        return self._follow_up(
            "capture", "Capture", transaction_id, fields, idempotency_key, reference
        )

    def refund(
        self,
        *,
        account_id: str,
        transaction_id: str,
        amount_minor: int,
        currency: str,
        idempotency_key: UUID,
        reference: str,
    ) -> GatewayOutcome:
        """Raises ``GatewayUnavailable`` (outcome unknown) and ``IdempotencyKeyReused``."""
        fields = {"amount": amount_minor, "currency_code": currency}
        return self._follow_up(
            "credit", "Credit", transaction_id, fields, idempotency_key, reference
        )

    def void(
        self, *, account_id: str, transaction_id: str, idempotency_key: UUID, reference: str
    ) -> GatewayOutcome:
        """Raises ``GatewayUnavailable`` (outcome unknown) and ``IdempotencyKeyReused``."""
        return self._follow_up("void", "Void", transaction_id, {}, idempotency_key, reference)

    def status(self, *, account_id: str, idempotency_key: UUID) -> GatewayOutcome | None:
        """The outcome of the transaction carrying this key; None if none within the horizon.

        Raises ``GatewayUnavailable`` when Spreedly cannot be read, when the transaction's own
        outcome is unknown, or when the look-up budget runs out before the horizon.
        """
        path = f"/v1/gateways/{self._gateway_token}/transactions.json"
        found = self._find(idempotency_key, path, not_before=self._horizon())
        return None if found is None else outcome_of(found)

    # The processor's books -------------------------------------------------------------------

    def transactions_on(
        self, day: date, account_id: str | None = None
    ) -> list[ProcessorTransaction]:
        """This gateway's money transactions created on the UTC ``day``, oldest first.

        One client is one merchant account: ``account_id`` names it in the answer (the gateway
        token when None) and selects nothing. Raises ``GatewayUnavailable`` when Spreedly cannot
        be read, or when the day lies beyond ``listing_pages_max`` pages of the list.
        """
        start = datetime.combine(day, time(), tzinfo=UTC)
        end = start + timedelta(days=1)
        account = account_id if account_id is not None else self._gateway_token
        found: list[ProcessorTransaction] = []
        path = f"/v1/gateways/{self._gateway_token}/transactions.json"
        for page in self._pages(path, pages_max=self._listing_pages_max):
            for transaction in page:
                created_at = _created_at(transaction)
                if created_at is None or created_at >= end:
                    continue
                if created_at < start:
                    return found[::-1]
                ours = processor_transaction(transaction, created_at, account)
                if ours is not None:
                    found.append(ours)
            if len(page) < self._lookup_page_count:
                return found[::-1]
        raise GatewayUnavailable(
            f"{day} lies beyond the last {self._listing_pages_max} pages of {path}"
        )

    # Calls -----------------------------------------------------------------------------------

    def _open(
        self,
        action: str,
        transaction_type: str,
        token: str,
        amount_minor: int,
        currency: str,
        idempotency_key: UUID,
        reference: str,
    ) -> GatewayOutcome:
        path = f"/v1/payment_methods/{token}/transactions.json"
        found = self._find(idempotency_key, path, not_before=self._horizon())
        if found is not None:
            return _replayed(found, transaction_type, amount_minor, currency)
        body = {
            "payment_method_token": token,
            "amount": amount_minor,
            "currency_code": currency,
            "order_id": reference,
            "description": str(idempotency_key),
        }
        return self._post(f"/v1/gateways/{self._gateway_token}/{action}.json", body)

    def _follow_up(
        self,
        action: str,
        transaction_type: str,
        transaction_id: str,
        fields: dict[str, Any],
        idempotency_key: UUID,
        reference: str,
    ) -> GatewayOutcome:
        status_code, payload = self._request("GET", f"/v1/transactions/{transaction_id}.json")
        if status_code == 404:
            return _refusal(payload)
        followed = _transaction_in(payload)
        if status_code != 200 or followed is None:
            raise GatewayUnavailable(f"Spreedly answered {status_code} for {transaction_id}")
        not_before = max(self._horizon(), _created_at(followed) or self._horizon())
        path = f"/v1/gateways/{self._gateway_token}/transactions.json"
        found = self._find(idempotency_key, path, not_before=not_before)
        if found is not None:
            return _replayed(
                found, transaction_type, fields.get("amount"), fields.get("currency_code")
            )
        body = {**fields, "order_id": reference, "description": str(idempotency_key)}
        return self._post(f"/v1/transactions/{transaction_id}/{action}.json", body)

    def _post(self, path: str, transaction: dict[str, Any]) -> GatewayOutcome:
        status_code, payload = self._request("POST", path, json={"transaction": transaction})
        found = _transaction_in(payload)
        # Spreedly answers a declined transaction with 422 and the transaction itself.
        if found is not None and status_code in (200, 201, 202, 422):
            return outcome_of(found)
        if status_code in (404, 422) and "errors" in payload:
            return _refusal(payload)
        raise GatewayUnavailable(f"Spreedly answered {status_code} without a transaction")

    def _find(self, key: UUID, path: str, *, not_before: datetime) -> dict[str, Any] | None:
        """The newest transaction carrying ``key``, reading back no further than ``not_before``."""
        for page in self._pages(path):
            for transaction in page:
                if _key_of(transaction) == key:
                    return transaction
                created_at = _created_at(transaction)
                if created_at is not None and created_at < not_before:
                    return None
            if len(page) < self._lookup_page_count:
                return None
        raise GatewayUnavailable(
            f"no transaction with key {key} in the last {self._lookup_pages_max} pages of {path}:"
            " cannot tell whether it was sent"
        )

    def _pages(self, path: str, pages_max: int | None = None) -> Iterator[list[dict[str, Any]]]:
        since_token: str | None = None
        for _ in range(pages_max or self._lookup_pages_max):
            params = {"order": "desc", "count": str(self._lookup_page_count)}
            if since_token is not None:
                params["since_token"] = since_token
            status_code, payload = self._request("GET", path, params=params)
            if status_code == 404 and path.startswith("/v1/payment_methods/"):
                yield []  # an unknown card has no transactions; the charge itself is refused
                return
            page = payload.get("transactions")
            if status_code != 200 or not isinstance(page, list):
                raise GatewayUnavailable(f"Spreedly answered {status_code} listing {path}")
            yield page
            if not page:
                return
            since_token = page[-1].get("token")

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        try:
            response = self._client.request(
                method,
                self._base_url + path,
                json=json,
                params=params,
                auth=self._auth,
                timeout=self._timeout_s,
                headers={"Accept": "application/json"},
            )
        except (httpx.HTTPError, httpx.StreamError) as error:
            raise GatewayUnavailable(f"{method} {path}: {error!r}") from error
        if response.status_code >= 500 or response.status_code in UNAVAILABLE_HTTP_STATUSES:
            raise GatewayUnavailable(f"{method} {path}: Spreedly answered {response.status_code}")
        try:
            payload = response.json()
        except ValueError as error:
            raise GatewayUnavailable(f"{method} {path}: the body is not JSON") from error
        if not isinstance(payload, dict):
            raise GatewayUnavailable(f"{method} {path}: the body is not a JSON object")
        return response.status_code, payload

    def _horizon(self) -> datetime:
        return self._now() - timedelta(seconds=self._lookup_horizon_s)


# Reading Spreedly's words ------------------------------------------------------------------------


def outcome_of(transaction: dict[str, Any]) -> GatewayOutcome:
    """Our outcome for a Spreedly transaction. Raises ``GatewayUnavailable`` if it has none yet."""
    state = transaction.get("state")
    token = transaction.get("token")
    if state == SUCCEEDED_STATE and transaction.get("succeeded") is True:
        return GatewayOutcome(succeeded=True, transaction_id=token)
    if state in DECLINED_STATES and transaction.get("succeeded") is not True:
        response = transaction.get("response") or {}
        message = response.get("message") or transaction.get("message") or ""
        return GatewayOutcome(
            succeeded=False,
            transaction_id=token,
            decline_code=decline_code(response.get("error_code"), message),
            message=message,
        )
    raise GatewayUnavailable(f"Spreedly transaction {token} is {state!r}: outcome unknown")


def processor_transaction(
    transaction: dict[str, Any], created_at: datetime, account_id: str
) -> ProcessorTransaction | None:
    """A Spreedly transaction in reconciliation's words; None for a type that moves no money."""
    kind = OUR_KINDS.get(transaction.get("transaction_type") or "")
    if kind is None:
        return None
    state = transaction.get("state")
    if state == SUCCEEDED_STATE and transaction.get("succeeded") is True:
        ours = "succeeded"
    elif state in DECLINED_STATES:
        ours = "declined"
    else:
        ours = "pending"  # result unknown, processing: the processor has not decided
    amount = transaction.get("amount")
    return ProcessorTransaction(
        transaction_id=str(transaction.get("token") or ""),
        idempotency_key=_key_of(transaction),
        kind=kind,
        amount_minor=amount if isinstance(amount, int) else 0,
        currency=transaction.get("currency_code") or "",
        state=ours,
        created_at=created_at,
        reference=transaction.get("order_id") or "",
        account_id=account_id,
    )


def decline_code(error_code: str | None, message: str) -> str:
    """Our decline code for a processor's error code, or its message when the code is empty."""
    code = (error_code or "").strip().lower()
    if code in DECLINE_CODES:
        return DECLINE_CODES[code]
    lowered = message.lower()
    for hint, mapped in DECLINE_MESSAGE_HINTS:
        if hint in lowered:
            return mapped
    # Unknown codes are soft: the card-scheme retry limits still cap how often a card is tried.
    return "generic_decline"


def _refusal(payload: dict[str, Any]) -> GatewayOutcome:
    errors = payload.get("errors") or [{}]
    first = errors[0] if isinstance(errors[0], dict) else {}
    message = first.get("message") or "Spreedly refused the request."
    return GatewayOutcome(
        succeeded=False,
        transaction_id=None,
        decline_code=REFUSAL_CODES.get(first.get("key", ""), "processing_error"),
        message=message,
    )


def _replayed(
    found: dict[str, Any], transaction_type: str, amount_minor: int | None, currency: str | None
) -> GatewayOutcome:
    """The outcome of the transaction a repeated key names, if it is the same request."""
    same = found.get("transaction_type") == transaction_type and (
        amount_minor is None
        or (found.get("amount") == amount_minor and found.get("currency_code") == currency)
    )
    if not same:
        raise IdempotencyKeyReused(
            f"key {found.get('description')} names {found.get('transaction_type')} "
            f"{found.get('amount')} {found.get('currency_code')}, not this {transaction_type}"
        )
    return outcome_of(found)


def _transaction_in(payload: dict[str, Any]) -> dict[str, Any] | None:
    found = payload.get("transaction")
    return found if isinstance(found, dict) else None


def _key_of(transaction: dict[str, Any]) -> UUID | None:
    try:
        return UUID(transaction.get("description") or "")
    except ValueError:
        return None


def _created_at(transaction: dict[str, Any]) -> datetime | None:
    try:
        created_at = datetime.fromisoformat(transaction.get("created_at") or "")
    except ValueError:
        return None
    return created_at if created_at.tzinfo else created_at.replace(tzinfo=UTC)
