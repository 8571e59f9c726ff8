"""Money movements at the gateway: purchases and refunds, each bracketed by events.

Every call to the gateway follows one pattern. The intent (``PaymentAttempt.Requested`` with
``Order.PaymentRequested``, or ``Order.RefundRequested``) is saved first; the gateway is called
with the intent's id as its idempotency key; the outcome is saved after. A call that raises is
recorded as an unknown outcome — never as a decline, never as nothing — and a later call with the
same key learns the real outcome without moving money twice.
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from application.commands import OUTCOME_SAVE_ATTEMPTS, ConcurrentModification, LedgerBase
from application.ports import GatewayOutcome
from domain.customer import Customer
from domain.errors import DomainError, InvalidInput
from domain.money import InvalidAmount
from domain.order import Order
from domain.payment_attempt import AttemptStatus, PaymentAttempt

logger = logging.getLogger(__name__)


class UnsupportedPaymentMode(InvalidInput):
    code = "unsupported_payment_mode"


class OperationDeclined(DomainError):
    """The processor refused a capture or void; the authorization stands as it was."""

    code = "operation_declined"


class RefundDeclined(DomainError):
    """The processor refused the refund; nothing was given back and the reservation is freed."""

    code = "refund_declined"


class PaymentCommands(LedgerBase):
    """The gateway half of order commands; ``orders`` decides what to move, this moves it."""

    def request_purchase(
        self, customer: Customer, order: Order, payment: dict[str, Any]
    ) -> PaymentAttempt:
        """Record the intent to purchase the order's total with a card on file.

        Raises ``UnsupportedPaymentMode``, ``InvalidAmount``, ``PaymentMethodNotFound``,
        ``OrderNotPayable``, ``PaymentInProgress``.
        """
        mode = payment.get("mode", "purchase")
        if mode not in ("purchase", "authorize"):
            raise UnsupportedPaymentMode(
                "the payment mode is 'purchase' or 'authorize'", param="payment.mode"
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
            kind=mode,
            gateway=self.gateway.name,
            amount_minor=order.total_minor,
            currency=order.currency,
        )
        order.request_payment(
            attempt_id=attempt.id,
            kind=mode,
            gateway=self.gateway.name,
            amount_minor=order.total_minor,
        )
        return attempt

    def finish_purchase(
        self, attempt_id: UUID, saved: tuple[Customer, Order, PaymentAttempt] | None = None
    ) -> tuple[Order, list[Any], bool]:
        """Call the gateway for a requested attempt and apply its outcome.

        ``saved``: the aggregates just saved with the intent (current, so not loaded again).
        Returns the order, the aggregates to save, and whether the outcome is known.
        """
        if saved is not None:
            customer, order, attempt = saved
        else:
            attempt = self.repository.get(attempt_id)
            order = self.repository.get(attempt.order_id)
            customer = self.repository.get(order.customer_id)
        if attempt.resolved:
            return order, [], True  # another request finished it
        method = customer.payment_method(attempt.payment_method_id)
        call = self.gateway.authorize if attempt.kind == "authorize" else self.gateway.purchase
        outcome = self._call(
            attempt.kind,
            attempt,
            lambda: call(
                account_id=order.tenant_id,
                token=method["token"],
                amount_minor=attempt.amount_minor,
                currency=attempt.currency,
                idempotency_key=attempt.id,
                reference=str(order.id),
            ),
        )
        if outcome is None:
            if attempt.status is AttemptStatus.REQUESTED:
                attempt.record_outcome_unknown(reason="the gateway did not answer")
                order.record_payment_outcome_unknown(attempt_id=attempt.id)
            return order, [attempt, order], False
        if outcome.succeeded:
            attempt.succeed(transaction_id=outcome.transaction_id or "")
            if attempt.kind == "authorize":
                order.record_authorization(attempt_id=attempt.id, amount_minor=attempt.amount_minor)
            else:
                order.record_capture(attempt_id=attempt.id, amount_minor=attempt.amount_minor)
        else:
            decline_code = outcome.decline_code or "generic_decline"
            attempt.decline(
                decline_code=decline_code,
                message=outcome.message,
                transaction_id=outcome.transaction_id,
            )
            order.record_decline(attempt_id=attempt.id, decline_code=decline_code)
        return order, [attempt, order], True

    def finish_refund(
        self, order_id: UUID, refund_id: str, saved: Order | None = None
    ) -> tuple[Order, bool, RefundDeclined | None]:
        """Call the gateway for a requested refund and apply its outcome.

        ``saved``: the order just saved with the intent (current, so not loaded again).
        Returns the order (to save), whether the outcome is known, and the processor's refusal.
        """
        order: Order = saved if saved is not None else self.repository.get(order_id)
        amount_minor = order.pending_refunds.get(refund_id)
        if amount_minor is None:
            return order, True, None  # another request finished it
        charge = self._captured_attempt(order)
        outcome = self._call(
            "refund",
            charge,
            lambda: self.gateway.refund(
                account_id=order.tenant_id,
                transaction_id=charge.money_transaction_id or "",
                amount_minor=amount_minor,
                currency=order.currency,
                idempotency_key=UUID(refund_id),
                reference=str(order.id),
            ),
        )
        if outcome is None:
            if refund_id not in order.refunds_outcome_unknown:
                order.record_refund_outcome_unknown(refund_id=refund_id)
            return order, False, None
        if outcome.succeeded:
            order.complete_refund(refund_id=refund_id)
            return order, True, None
        decline_code = outcome.decline_code or "declined"
        order.fail_refund(refund_id=refund_id, decline_code=decline_code)
        declined = RefundDeclined(f"the processor declined the refund ({decline_code})")
        return order, True, declined

    def finish_operation(
        self, order_id: UUID, operation_id: str, saved: Order | None = None
    ) -> tuple[Order, list[Any], bool, DomainError | None]:
        """Call the gateway for a requested capture or void of the order's authorization.

        Returns the order, the aggregates to save, whether the outcome is known, and the
        processor's refusal.
        """
        order: Order = saved if saved is not None else self.repository.get(order_id)
        operation = order.pending(operation_id)
        if operation is None:
            return order, [], True, None  # another request finished it
        attempt: PaymentAttempt = self.repository.get(order.attempt_ids[-1])
        key = UUID(operation_id)
        if operation["kind"] == "capture":
            amount_minor = operation["amount_minor"]

            def call() -> GatewayOutcome:
                return self.gateway.capture(
                    account_id=order.tenant_id,
                    transaction_id=attempt.transaction_id or "",
                    amount_minor=amount_minor,
                    currency=order.currency,
                    idempotency_key=key,
                    reference=str(order.id),
                )
        else:

            def call() -> GatewayOutcome:
                return self.gateway.void(
                    account_id=order.tenant_id,
                    transaction_id=attempt.transaction_id or "",
                    idempotency_key=key,
                    reference=str(order.id),
                )

        outcome = self._call(operation["kind"], attempt, call)
        if outcome is None:
            if operation_id not in order.operations_outcome_unknown:
                order.record_operation_outcome_unknown(operation_id=operation_id)
            return order, [order], False, None
        if not outcome.succeeded:
            code = outcome.decline_code or "declined"
            order.fail_operation(operation_id=operation_id, decline_code=code)
            refused = OperationDeclined(f"the processor declined the {operation['kind']} ({code})")
            return order, [order], True, refused
        if operation["kind"] == "capture":
            attempt.record_capture(
                transaction_id=outcome.transaction_id or "", amount_minor=operation["amount_minor"]
            )
            order.complete_capture(operation_id=operation_id, attempt_id=attempt.id)
        else:
            attempt.record_void()
            order.complete_void(operation_id=operation_id)
        return order, [order, attempt], True, None

    def reconcile_attempt(self, attempt_id: UUID) -> str:
        """Learn the outcome of an attempt whose caller never did, and record it.

        The call is repeated with the attempt's own gateway idempotency key, so the processor
        answers with the original transaction if there was one, and nothing moves twice. Run it
        only for attempts older than the claim lease (no request still in flight). Returns the
        attempt's status afterwards (``unknown`` if the gateway still did not answer).
        """
        for _ in range(OUTCOME_SAVE_ATTEMPTS):
            _order, aggregates, _known = self.finish_purchase(attempt_id)
            try:
                self.save_all(aggregates)
                break
            except ConcurrentModification:
                continue  # a client's retry recorded it meanwhile: look again
        attempt: PaymentAttempt = self.repository.get(attempt_id)
        return attempt.status.value

    def reconcile_call(self, order_id: UUID, call_id: str) -> str:
        """Learn the outcome of a capture, void or refund nobody learnt, and record it.

        Like ``reconcile_attempt``: the call is repeated with its own gateway key. Returns
        ``resolved``, or ``unknown`` while the gateway still does not answer.
        """
        for _ in range(OUTCOME_SAVE_ATTEMPTS):
            order: Order = self.repository.get(order_id)
            if call_id in order.pending_refunds:
                order, known, _refused = self.finish_refund(order_id, call_id, order)
                aggregates: list[Any] = [order]
            elif order.pending(call_id) is not None:
                order, aggregates, known, _ = self.finish_operation(order_id, call_id, order)
            else:
                return "resolved"  # a client's retry (or an earlier pass) finished it
            try:
                self.save_all(aggregates)
            except ConcurrentModification:
                continue
            return "resolved" if known else "unknown"
        return "unknown"

    def no_longer_in_flight(self, resume: dict[str, Any]) -> bool:
        if "refund_id" in resume:
            order: Order = self.repository.get(UUID(resume["order_id"]))
            refund_id = resume["refund_id"]
            return (
                refund_id in order.refunds_outcome_unknown or refund_id not in order.pending_refunds
            )
        if "attempt_id" in resume:
            attempt: PaymentAttempt = self.repository.get(UUID(resume["attempt_id"]))
            return attempt.status is not AttemptStatus.REQUESTED
        if "operation_id" in resume:
            order = self.repository.get(UUID(resume["order_id"]))
            operation_id = resume["operation_id"]
            return (
                operation_id in order.operations_outcome_unknown
                or order.pending(operation_id) is None
            )
        return False

    def attempts(self, order: Order) -> list[PaymentAttempt]:
        return [self.repository.get(attempt_id) for attempt_id in order.attempt_ids]

    def _captured_attempt(self, order: Order) -> PaymentAttempt:
        for attempt in reversed(self.attempts(order)):
            if attempt.status is AttemptStatus.SUCCEEDED:
                return attempt
        raise AssertionError("a refundable order has a succeeded attempt")  # pragma: no cover

    def _call(self, what: str, attempt: PaymentAttempt, call: Any) -> GatewayOutcome | None:
        """The gateway's outcome, or None when the call raised (the outcome is unknown)."""
        try:
            return call()  # type: ignore[no-any-return]
        except Exception:
            # Whatever the cause (timeout, reset connection, a bug in an adapter), the processor
            # may have acted: the caller records an unknown outcome for reconciliation.
            logger.exception(
                "%s for attempt %s: no answer from %s", what, attempt.id, attempt.gateway
            )
            return None
