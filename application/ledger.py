"""The Ledger application: commands for customers, orders and payments.

``Ledger`` *is* the service layer. Each command validates through the aggregates, calls the
outside world only through ports, and ends in exactly one ``save`` (one transaction) together with
its idempotency record. Results are plain dicts that entrypoints render as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import EnvType

from application.idempotency import (
    IdempotencyKeyReused,
    IdempotencyRecord,
    fingerprint,
    idempotency_record_id,
    validate_key,
)
from application.ports import PaymentGateway, Vault
from domain.customer import Customer
from domain.errors import DomainError, InvalidInput, NotFound
from domain.money import InvalidAmount
from domain.order import Order
from domain.payment_attempt import PaymentAttempt

TAggregate = TypeVar("TAggregate", bound=Aggregate)


class ConcurrentModification(DomainError):
    """Another command changed the same aggregate first; the caller may retry."""

    code = "concurrent_modification"


class CustomerNotFound(NotFound):
    code = "customer_not_found"


class OrderNotFound(NotFound):
    code = "order_not_found"


class UnsupportedPaymentMode(InvalidInput):
    code = "unsupported_payment_mode"


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What a command returns: the body, the log position of its write, and whether replayed."""

    body: dict[str, Any]
    position: int | None
    replayed: bool = False


def customer_body(customer: Customer) -> dict[str, Any]:
    return {
        "id": str(customer.id),
        "email": customer.email,
        "name": customer.name,
        "country": customer.country,
        "currency": customer.currency,
        "created_at": customer.created_on.isoformat(),
    }


def payment_method_body(method: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in method.items() if key != "token"}


def order_body(order: Order, attempts: Sequence[PaymentAttempt] = ()) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": str(order.id),
        "number": order.number,
        "customer_id": str(order.customer_id),
        "status": order.status.value,
        "currency": order.currency,
        "total_minor": order.total_minor,
        "captured_minor": order.captured_minor,
        "refunded_minor": order.refunded_minor,
        "lines": order.lines,
        "placed_at": order.created_on.isoformat(),
        "payment": None,
    }
    if attempts:
        last = attempts[-1]
        body["payment"] = {
            "outcome": last.status.value,
            "decline_code": last.decline_code,
            "attempts": len(attempts),
        }
    return body


class Ledger(Application[UUID]):
    """Customers, orders and payment attempts of every tenant, in one ordered log."""

    name = "Ledger"

    def __init__(
        self,
        env: EnvType | None = None,
        *,
        vault: Vault,
        gateway: PaymentGateway,
        fingerprint_secret: bytes,
    ) -> None:
        super().__init__(env)
        self.vault = vault
        self.gateway = gateway
        self.fingerprint_secret = fingerprint_secret

    # Commands -------------------------------------------------------------------------------

    def register_customer(
        self,
        *,
        tenant_id: str,
        email: str,
        name: str,
        country: str,
        currency: str,
        idempotency_key: str | None = None,
    ) -> CommandResult:
        """Register a customer.

        Raises ``InvalidEmail``, ``UnknownCountry``, ``UnknownCurrency``, ``InvalidInput``,
        ``IdempotencyKeyReused``.
        """
        params = {"email": email, "name": name, "country": country, "currency": currency}

        def run() -> tuple[list[Aggregate], dict[str, Any]]:
            customer = Customer.register(tenant_id=tenant_id, **params)
            return [customer], customer_body(customer)

        return self._execute(tenant_id, idempotency_key, "register_customer", params, run)

    def attach_payment_method(
        self,
        *,
        tenant_id: str,
        customer_id: UUID,
        card_number: str,
        exp_month: int,
        exp_year: int,
        cvc: str | None = None,
        idempotency_key: str | None = None,
    ) -> CommandResult:
        """Tokenise a card in the vault and keep the token on the customer.

        Raises ``CustomerNotFound``, ``CardRejected``, ``IdempotencyKeyReused``,
        ``ConcurrentModification``.
        """
        # The fingerprint is keyed, so the stored hash of a card number reveals nothing.
        params = {
            "customer_id": str(customer_id),
            "card_number": card_number,
            "exp_month": exp_month,
            "exp_year": exp_year,
            "cvc": cvc,
        }

        def run() -> tuple[list[Aggregate], dict[str, Any]]:
            customer = self._get_owned(Customer, tenant_id, customer_id, CustomerNotFound)
            card = self.vault.tokenize(
                card_number=card_number, exp_month=exp_month, exp_year=exp_year, cvc=cvc
            )
            payment_method_id = uuid4()
            customer.attach_payment_method(payment_method_id, card)
            return [customer], payment_method_body(customer.payment_method(payment_method_id))

        return self._execute(tenant_id, idempotency_key, "attach_payment_method", params, run)

    def place_order(
        self,
        *,
        tenant_id: str,
        customer_id: UUID,
        currency: str,
        lines: list[dict[str, Any]],
        payment: dict[str, Any] | None = None,
        source: str = "api",
        idempotency_key: str | None = None,
    ) -> CommandResult:
        """Place an order and, when ``payment`` names a method, purchase its total at once.

        A declined purchase still records the order (status ``declined``).
        Raises ``CustomerNotFound``, ``PaymentMethodNotFound``, ``InvalidOrderLines``,
        ``InvalidAmount``, ``UnknownCurrency``, ``IdempotencyKeyReused``.
        """
        params = {
            "customer_id": str(customer_id),
            "currency": currency,
            "lines": lines,
            "payment": payment,
            "source": source,
        }

        def run() -> tuple[list[Aggregate], dict[str, Any]]:
            customer = self._get_owned(Customer, tenant_id, customer_id, CustomerNotFound)
            order = Order.place(
                tenant_id=tenant_id,
                customer_id=customer.id,
                currency=currency,
                lines=lines,
                source=source,
            )
            if payment is None:
                return [order], order_body(order)
            attempt = self._purchase(customer, order, payment)
            return [order, attempt], order_body(order, [attempt])

        return self._execute(tenant_id, idempotency_key, "place_order", params, run)

    def _purchase(
        self, customer: Customer, order: Order, payment: dict[str, Any]
    ) -> PaymentAttempt:
        mode = payment.get("mode", "purchase")
        if mode != "purchase":
            raise UnsupportedPaymentMode(
                f"payment mode {mode!r} is not supported yet; use 'purchase'", param="payment.mode"
            )
        if order.total_minor == 0:
            raise InvalidAmount(
                "an order paid at once needs a total above zero; omit payment", param="payment"
            )
        method = customer.payment_method(payment.get("payment_method_id", ""))
        attempt = PaymentAttempt(
            tenant_id=order.tenant_id,
            order_id=order.id,
            payment_method_id=UUID(method["id"]),
            kind="purchase",
            gateway=self.gateway.name,
            amount_minor=order.total_minor,
            currency=order.currency,
        )
        # The attempt id is the gateway's idempotency key: if our save fails after the gateway
        # approved, a retry of the command gets the same approval, not a second charge.
        outcome = self.gateway.purchase(
            token=method["token"],
            amount_minor=order.total_minor,
            currency=order.currency,
            idempotency_key=attempt.id,
        )
        if outcome.succeeded:
            attempt.succeed(transaction_id=outcome.transaction_id or "")
            order.record_capture(attempt_id=attempt.id, amount_minor=order.total_minor)
        else:
            decline_code = outcome.decline_code or "generic_decline"
            attempt.decline(
                decline_code=decline_code,
                message=outcome.message,
                transaction_id=outcome.transaction_id,
            )
            order.record_decline(attempt_id=attempt.id, decline_code=decline_code)
        return attempt

    def refund_order(
        self,
        *,
        tenant_id: str,
        order_id: UUID,
        amount_minor: int,
        reason: str | None = None,
        idempotency_key: str | None = None,
    ) -> CommandResult:
        """Refund captured money. Raises ``OrderNotFound``, ``OrderNotRefundable``,
        ``RefundExceedsCaptured``, ``InvalidAmount``, ``ConcurrentModification``,
        ``IdempotencyKeyReused``.
        """
        params = {"order_id": str(order_id), "amount_minor": amount_minor, "reason": reason}

        def run() -> tuple[list[Aggregate], dict[str, Any]]:
            order = self._get_owned(Order, tenant_id, order_id, OrderNotFound)
            order.refund(amount_minor=amount_minor, reason=reason)
            return [order], order_body(order, self._attempts(order))

        return self._execute(tenant_id, idempotency_key, "refund_order", params, run)

    def cancel_order(
        self,
        *,
        tenant_id: str,
        order_id: UUID,
        reason: str | None = None,
        idempotency_key: str | None = None,
    ) -> CommandResult:
        """Cancel an unpaid order. Raises ``OrderNotFound``, ``OrderNotCancellable``,
        ``ConcurrentModification``, ``IdempotencyKeyReused``.
        """
        params = {"order_id": str(order_id), "reason": reason}

        def run() -> tuple[list[Aggregate], dict[str, Any]]:
            order = self._get_owned(Order, tenant_id, order_id, OrderNotFound)
            order.cancel(reason=reason)
            return [order], order_body(order, self._attempts(order))

        return self._execute(tenant_id, idempotency_key, "cancel_order", params, run)

    # Queries on aggregates (the read models answer everything else) -----------------------

    def get_order(self, tenant_id: str, order_id: UUID) -> Order:
        """Raises ``OrderNotFound``."""
        return self._get_owned(Order, tenant_id, order_id, OrderNotFound)

    def find_order(self, order_id: UUID) -> Order:
        """Any tenant's order, for jobs that were handed its id. Raises ``OrderNotFound``."""
        try:
            order = self.repository.get(order_id)
        except AggregateNotFoundError:
            order = None
        if not isinstance(order, Order):
            raise OrderNotFound(f"no order {order_id}", param="order_id")
        return order

    def get_customer(self, tenant_id: str, customer_id: UUID) -> Customer:
        """Raises ``CustomerNotFound``."""
        return self._get_owned(Customer, tenant_id, customer_id, CustomerNotFound)

    # Internals --------------------------------------------------------------------------------

    def _attempts(self, order: Order) -> list[PaymentAttempt]:
        return [self.repository.get(attempt_id) for attempt_id in order.attempt_ids]

    def _get_owned(
        self,
        aggregate_class: type[TAggregate],
        tenant_id: str,
        aggregate_id: UUID,
        not_found: type[NotFound],
    ) -> TAggregate:
        """Load an aggregate of this tenant; another tenant's is reported as not found."""
        noun = aggregate_class.__name__.lower()
        try:
            aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise not_found(f"no {noun} {aggregate_id}", param=f"{noun}_id") from None
        if not isinstance(aggregate, aggregate_class) or aggregate.tenant_id != tenant_id:
            raise not_found(f"no {noun} {aggregate_id}", param=f"{noun}_id")
        return aggregate

    def _execute(
        self,
        tenant_id: str,
        idempotency_key: str | None,
        command: str,
        params: dict[str, Any],
        run: Callable[[], tuple[list[Aggregate], dict[str, Any]]],
    ) -> CommandResult:
        """Run a command once per idempotency key and save its aggregates in one transaction."""
        if idempotency_key is None:
            aggregates, body = run()
            return CommandResult(body=body, position=self._save(aggregates))
        validate_key(idempotency_key)
        digest = fingerprint(self.fingerprint_secret, command, params)
        previous = self._replay(tenant_id, idempotency_key, digest)
        if previous is not None:
            return previous
        aggregates, body = run()
        record = IdempotencyRecord(
            tenant_id=tenant_id, key=idempotency_key, fingerprint=digest, result=body
        )
        try:
            return CommandResult(body=body, position=self._save([*aggregates, record]))
        except ConcurrentModification:
            # A concurrent request with the same key may have won the race: answer as it did.
            previous = self._replay(tenant_id, idempotency_key, digest)
            if previous is not None:
                return previous
            raise

    def _replay(self, tenant_id: str, key: str, digest: str) -> CommandResult | None:
        try:
            record = self.repository.get(idempotency_record_id(tenant_id, key))
        except AggregateNotFoundError:
            return None
        if not isinstance(record, IdempotencyRecord) or record.fingerprint != digest:
            raise IdempotencyKeyReused(
                "this idempotency key was used with a different request",
                param="Idempotency-Key",
            )
        # Any position at or after the original write is a safe read-your-writes fence.
        return CommandResult(
            body=record.result, position=self.recorder.max_notification_id(), replayed=True
        )

    def _save(self, aggregates: list[Aggregate]) -> int | None:
        try:
            recordings = self.save(*aggregates)
        except IntegrityError:
            raise ConcurrentModification(
                "another request changed this resource at the same time; retry"
            ) from None
        return max(
            (r.notification.id for r in recordings if r.notification.id is not None),
            default=None,
        )
