"""Order commands: place (with an optional purchase), refund, cancel; and the order's one shape.

``render_order`` is the only place an order becomes a response body: commands call it with the
aggregate's fields, the read model's routes with a row's. The same state therefore reads the
same through both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError

from application.commands import CommandResult, Step
from application.customers import CustomerCommands
from application.payments import PaymentCommands
from domain.errors import NotFound
from domain.order import Order, OrderStatus, PaymentOutcome


class OrderNotFound(NotFound):
    code = "order_not_found"


@dataclass(frozen=True)
class PlaceOrder:
    customer_id: UUID
    currency: str
    lines: list[dict[str, Any]]
    payment: dict[str, Any] | None
    source: str


@dataclass(frozen=True)
class RefundOrder:
    order_id: UUID
    amount_minor: int
    reason: str | None


@dataclass(frozen=True)
class CaptureOrder:
    order_id: UUID
    amount_minor: int | None


@dataclass(frozen=True)
class VoidOrder:
    order_id: UUID


@dataclass(frozen=True)
class CancelOrder:
    order_id: UUID
    reason: str | None


def render_order(
    *,
    order_id: UUID | str,
    number: str,
    customer_id: UUID | str,
    status: str,
    currency: str,
    total_minor: int,
    captured_minor: int,
    refunded_minor: int,
    lines: list[dict[str, Any]],
    placed_at: datetime,
    attempts: int,
    payment_outcome: str | None,
    decline_code: str | None,
    history: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """An order as the API shows it, from the aggregate or from a read-model row."""
    payment = None
    if attempts:
        if payment_outcome is None:
            # Read-model rows written before the outcome was kept (rebuild to fill them in).
            payment_outcome = (
                PaymentOutcome.DECLINED.value
                if status == OrderStatus.DECLINED.value
                else PaymentOutcome.SUCCEEDED.value
            )
        payment = {
            "outcome": payment_outcome,
            "decline_code": decline_code,
            "attempts": attempts,
            "history": history or [],
        }
    return {
        "id": str(order_id),
        "number": number,
        "customer_id": str(customer_id),
        "status": status,
        "currency": currency,
        "total_minor": total_minor,
        "captured_minor": captured_minor,
        "refunded_minor": refunded_minor,
        "lines": lines,
        "placed_at": placed_at.isoformat(),
        "payment": payment,
    }


def order_body(order: Order) -> dict[str, Any]:
    return render_order(
        order_id=order.id,
        number=order.number,
        customer_id=order.customer_id,
        status=order.status.value,
        currency=order.currency,
        total_minor=order.total_minor,
        captured_minor=order.captured_minor,
        refunded_minor=order.refunded_minor,
        lines=order.lines,
        placed_at=order.created_on,
        attempts=len(order.attempt_ids),
        payment_outcome=order.payment_outcome,
        decline_code=order.decline_code,
        history=order.payment_history,
    )


class OrderCommands(CustomerCommands, PaymentCommands):
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

        With a payment, the order and the payment intent are saved before the gateway is
        called, the outcome after. A declined purchase still records the order (``declined``).
        Raises ``CustomerNotFound``, ``PaymentMethodNotFound``, ``InvalidOrderLines``,
        ``InvalidAmount``, ``UnknownCurrency``, ``UnsupportedPaymentMode``,
        ``IdempotencyKeyReused``, ``IdempotencyKeyInProgress``, ``GatewayOutcomeUnknown``.
        """
        command = PlaceOrder(
            customer_id=customer_id, currency=currency, lines=lines, payment=payment, source=source
        )

        saved: list[Any] = []  # what prepare saved, for finish right after it

        def prepare() -> Step:
            customer = self.get_customer(tenant_id, customer_id)
            order = Order.place(
                tenant_id=tenant_id,
                customer_id=customer.id,
                currency=currency,
                lines=lines,
                source=source,
            )
            if payment is None:
                return Step([order], order_body(order))
            attempt = self.request_purchase(customer, order, payment)
            saved[:] = [customer, order, attempt]
            return Step([order, attempt], order_body(order), {"attempt_id": str(attempt.id)})

        def finish(resume: dict[str, Any], first: bool) -> Step:
            order, aggregates, known = self.finish_purchase(
                UUID(resume["attempt_id"]), tuple(saved) if first and saved else None
            )
            return Step(aggregates, order_body(order), complete=known)

        return self.run(
            tenant_id, idempotency_key, command, prepare, None if payment is None else finish
        )

    def refund_order(
        self,
        *,
        tenant_id: str,
        order_id: UUID,
        amount_minor: int,
        reason: str | None = None,
        idempotency_key: str | None = None,
    ) -> CommandResult:
        """Give captured money back through the gateway (intent, call, outcome).

        Raises ``OrderNotFound``, ``OrderNotRefundable``, ``RefundExceedsCaptured``,
        ``InvalidAmount``, ``ConcurrentModification``, ``IdempotencyKeyReused``,
        ``IdempotencyKeyInProgress``, ``GatewayOutcomeUnknown``, ``RefundDeclined``.
        """
        command = RefundOrder(order_id=order_id, amount_minor=amount_minor, reason=reason)

        saved: list[Order] = []  # the order prepare saved, for finish right after it

        def prepare() -> Step:
            order = self.get_order(tenant_id, order_id)
            saved[:] = [order]
            refund_id = str(uuid4())
            order.request_refund(refund_id=refund_id, amount_minor=amount_minor, reason=reason)
            return Step(
                [order], order_body(order), {"order_id": str(order.id), "refund_id": refund_id}
            )

        def finish(resume: dict[str, Any], first: bool) -> Step:
            order, known, declined = self.finish_refund(
                UUID(resume["order_id"]), resume["refund_id"], saved[0] if first and saved else None
            )
            return Step([order], order_body(order), complete=known, error=declined)

        return self.run(tenant_id, idempotency_key, command, prepare, finish)

    def capture_order(
        self,
        *,
        tenant_id: str,
        order_id: UUID,
        amount_minor: int | None = None,
        idempotency_key: str | None = None,
    ) -> CommandResult:
        """Capture part or all (the default) of an authorized order, once; the rest is released.

        Raises ``OrderNotFound``, ``OrderNotCapturable``, ``CaptureExceedsAuthorization``,
        ``InvalidAmount``, ``PaymentInProgress``, ``OperationDeclined``,
        ``GatewayOutcomeUnknown``, ``IdempotencyKeyReused``, ``IdempotencyKeyInProgress``.
        """
        command = CaptureOrder(order_id=order_id, amount_minor=amount_minor)

        def request(order: Order, operation_id: str) -> None:
            amount = order.authorized_minor if amount_minor is None else amount_minor
            order.request_capture(operation_id=operation_id, amount_minor=amount)

        return self._operate(tenant_id, order_id, idempotency_key, command, request)

    def void_order(
        self, *, tenant_id: str, order_id: UUID, idempotency_key: str | None = None
    ) -> CommandResult:
        """Release the authorization of an order nothing was captured for.

        Raises ``OrderNotFound``, ``OrderNotVoidable``, ``PaymentInProgress``,
        ``OperationDeclined``, ``GatewayOutcomeUnknown``, ``IdempotencyKeyReused``,
        ``IdempotencyKeyInProgress``.
        """

        def request(order: Order, operation_id: str) -> None:
            order.request_void(operation_id=operation_id)

        return self._operate(
            tenant_id, order_id, idempotency_key, VoidOrder(order_id=order_id), request
        )

    def _operate(
        self,
        tenant_id: str,
        order_id: UUID,
        idempotency_key: str | None,
        command: Any,
        request: Any,
    ) -> CommandResult:
        """A capture or void: intent on the order, gateway call, outcome (one shape for both)."""
        saved: list[Order] = []

        def prepare() -> Step:
            order = self.get_order(tenant_id, order_id)
            operation_id = str(uuid4())
            request(order, operation_id)
            saved[:] = [order]
            resume = {"order_id": str(order.id), "operation_id": operation_id}
            return Step([order], order_body(order), resume)

        def finish(resume: dict[str, Any], first: bool) -> Step:
            order, aggregates, known, refused = self.finish_operation(
                UUID(resume["order_id"]),
                resume["operation_id"],
                saved[0] if first and saved else None,
            )
            return Step(aggregates, order_body(order), complete=known, error=refused)

        return self.run(tenant_id, idempotency_key, command, prepare, finish)

    def cancel_order(
        self,
        *,
        tenant_id: str,
        order_id: UUID,
        reason: str | None = None,
        idempotency_key: str | None = None,
    ) -> CommandResult:
        """Cancel an unpaid order. Raises ``OrderNotFound``, ``OrderNotCancellable``,
        ``PaymentInProgress``, ``ConcurrentModification``, ``IdempotencyKeyReused``.
        """
        command = CancelOrder(order_id=order_id, reason=reason)

        def prepare() -> Step:
            order = self.get_order(tenant_id, order_id)
            order.cancel(reason=reason)
            return Step([order], order_body(order))

        return self.run(tenant_id, idempotency_key, command, prepare)

    def get_order(self, tenant_id: str, order_id: UUID) -> Order:
        """Raises ``OrderNotFound``."""
        return self.get_owned(Order, tenant_id, order_id, OrderNotFound)

    def find_order(self, order_id: UUID) -> Order:
        """Any tenant's order, for jobs that were handed its id. Raises ``OrderNotFound``."""
        try:
            order = self.repository.get(order_id)
        except AggregateNotFoundError:
            order = None
        if not isinstance(order, Order):
            raise OrderNotFound("no order with this id", param="order_id")
        return order
