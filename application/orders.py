"""Order commands: place (with an optional purchase), one-click upsells, refund, capture, void,
cancel, chargebacks; and the order's one shape.

``render_order`` is the only place an order becomes a response body: commands call it with the
aggregate's fields, the read model's routes with a row's. The same state therefore reads the
same through both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

from eventsourcing.application import AggregateNotFoundError

from application.commands import CommandResult, Step
from application.customers import CustomerCommands
from application.gateways import count_chargeback
from application.idempotency import added_field
from application.payments import PaymentCommands
from domain.customer import Customer
from domain.errors import NotFound
from domain.gateway import Gateway
from domain.order import (
    Order,
    OrderStatus,
    ParentOrderNotPaid,
    PaymentInProgress,
    PaymentOutcome,
)
from domain.payment_attempt import AttemptStatus

_CHARGEBACK_NAMESPACE = uuid5(NAMESPACE_URL, "https://commerce-ledger/chargebacks")


class OrderNotFound(NotFound):
    code = "order_not_found"


@dataclass(frozen=True)
class PlaceOrder:
    customer_id: UUID
    currency: str
    lines: list[dict[str, Any]]
    payment: dict[str, Any] | None
    source: str
    attribution: dict[str, Any] | None = added_field()


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


@dataclass(frozen=True)
class PlaceUpsell:
    parent_order_id: UUID
    lines: list[dict[str, Any]]
    payment_method_id: UUID | None


@dataclass(frozen=True)
class OpenChargeback:
    order_id: UUID
    amount_minor: int
    reason_code: str


@dataclass(frozen=True)
class ResolveChargeback:
    order_id: UUID
    chargeback_id: str
    outcome: str


# What ``prepare`` of an order placement builds: the customer, the new order, and the payment
# to purchase its total with (None: no payment).
Placement = tuple[Customer, Order, dict[str, Any] | None]


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
    charged_back_minor: int = 0,
    chargebacks: list[dict[str, Any]] | None = None,
    parent_order_id: UUID | str | None = None,
    attribution: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An order as the API shows it, from the aggregate or from a read-model row.

    ``chargebacks``: each ``{id, amount_minor, reason_code, status}`` (open, won, lost), in
    the order they were opened; ``charged_back_minor`` is the sum of the lost ones.
    """
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
            "chargebacks": chargebacks or [],
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
        "charged_back_minor": charged_back_minor,
        "parent_order_id": None if parent_order_id is None else str(parent_order_id),
        "attribution": attribution,
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
        charged_back_minor=order.charged_back_minor,
        chargebacks=list(order.chargebacks.values()),
        parent_order_id=order.parent_order_id,
        attribution=order.attribution,
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
        attribution: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> CommandResult:
        """Place an order and, when ``payment`` names a method, purchase its total at once.
        ``attribution``: the distributor and affiliate it is credited to (commissions).

        With a payment, the order and the payment intent are saved before the gateway is
        called, the outcome after. A declined purchase still records the order (``declined``).
        Raises ``CustomerNotFound``, ``PaymentMethodNotFound``, ``InvalidOrderLines``,
        ``InvalidAmount``, ``UnknownCurrency``, ``UnsupportedPaymentMode``,
        ``IdempotencyKeyReused``, ``IdempotencyKeyInProgress``, ``GatewayOutcomeUnknown``.
        """
        command = PlaceOrder(
            customer_id=customer_id,
            currency=currency,
            lines=lines,
            payment=payment,
            source=source,
            attribution=attribution,
        )

        def build() -> Placement:
            customer = self.get_customer(tenant_id, customer_id)
            order = Order.place(
                tenant_id=tenant_id,
                customer_id=customer.id,
                currency=currency,
                lines=lines,
                source=source,
                attribution=attribution,
            )
            return customer, order, payment

        return self._place(tenant_id, idempotency_key, command, build, payment is not None)

    def place_upsell(
        self,
        *,
        tenant_id: str,
        parent_order_id: UUID,
        lines: list[dict[str, Any]],
        payment_method_id: UUID | None = None,
        idempotency_key: str | None = None,
    ) -> CommandResult:
        """Place a one-click upsell: a new order of the parent order's customer, in its
        currency, linked to it, purchased at once with the card that paid the parent (or
        ``payment_method_id``, another card of that customer), exactly like ``place_order``.

        The upsell is recorded on the parent (``Order.place_upsell``) in its intent's save.
        Raises ``OrderNotFound``, ``ParentOrderNotPaid``, ``CustomerNotFound``,
        ``PaymentMethodNotFound``, ``InvalidOrderLines``, ``InvalidAmount``,
        ``ConcurrentModification`` (the parent changed meanwhile: a chargeback, another upsell),
        ``IdempotencyKeyReused``, ``IdempotencyKeyInProgress``, ``GatewayOutcomeUnknown``.
        """
        command = PlaceUpsell(
            parent_order_id=parent_order_id, lines=lines, payment_method_id=payment_method_id
        )

        held: list[Order] = []  # the parent, saved with the upsell's intent

        def build() -> Placement:
            parent = self.get_order(tenant_id, parent_order_id)
            parent.require_upsell_parent()
            customer = self.get_customer(tenant_id, parent.customer_id)
            order = Order.place(
                tenant_id=tenant_id,
                customer_id=customer.id,
                currency=parent.currency,
                lines=lines,
                source="upsell",
                parent_order_id=parent.id,
            )
            method_id = payment_method_id or self._paying_method_id(parent)
            # Recorded on the parent in the intent's save: a chargeback of the parent saved
            # since it was read conflicts (409), and one opened later finds this upsell's
            # payment in progress (``_require_no_upsell_in_progress``).
            parent.place_upsell(upsell_order_id=order.id)
            held[:] = [parent]
            return customer, order, {"payment_method_id": str(method_id), "mode": "purchase"}

        return self._place(tenant_id, idempotency_key, command, build, True, held)

    def _paying_method_id(self, order: Order) -> UUID:
        """The payment method of the order's latest succeeded attempt. Raises
        ``ParentOrderNotPaid`` if none succeeded (a capture recorded without an attempt)."""
        for attempt in reversed(self.attempts(order)):
            if attempt.status is AttemptStatus.SUCCEEDED:
                return attempt.payment_method_id
        raise ParentOrderNotPaid("the parent order has no card that paid it", param="order_id")

    def _place(
        self,
        tenant_id: str,
        idempotency_key: str | None,
        command: Any,
        build: Callable[[], Placement],
        purchases: bool,
        held: list[Order] | None = None,
    ) -> CommandResult:
        """Save a new order, and with a payment its purchase intent; then call the gateway and
        save the outcome (one machinery for orders and upsells: keys, in-progress, unknown).
        ``held``: other orders ``build`` changed (an upsell's parent), saved with the order."""
        saved: list[Any] = []  # what prepare saved, for finish right after it

        def prepare() -> Step:
            customer, order, payment = build()
            also = list(held or ())
            if payment is None:
                return Step([*also, order], order_body(order))
            # The attempt, then what routing records with it (the card's scheme usage).
            attempt, *companions = self.purchase_intent(customer, order, payment)
            saved[:] = [customer, order, attempt]
            return Step(
                [*also, order, attempt, *companions],
                order_body(order),
                {"attempt_id": str(attempt.id)},
            )

        def finish(resume: dict[str, Any], first: bool) -> Step:
            order, aggregates, known = self.finish_purchase(
                UUID(resume["attempt_id"]), tuple(saved) if first and saved else None
            )
            return Step(aggregates, order_body(order), complete=known)

        return self.run(tenant_id, idempotency_key, command, prepare, finish if purchases else None)

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

    def open_chargeback(
        self,
        *,
        tenant_id: str,
        order_id: UUID,
        amount_minor: int,
        reason_code: str,
        idempotency_key: str | None = None,
    ) -> CommandResult:
        """Record a chargeback opened by the card network (bookkeeping: no gateway call).

        The chargeback counts against the gateway that captured the order (none for a tenant
        without gateways); when it brings the gateway's chargeback ratio to its threshold, the
        gateway is tripped in the same save (``application.gateways.count_chargeback``).
        Raises ``OrderNotFound``, ``OrderNotDisputable``, ``ChargebackExceedsCaptured``,
        ``InvalidAmount``, ``InvalidReasonCode``, ``PaymentInProgress`` (an upsell of the order
        is being charged), ``ConcurrentModification``, ``IdempotencyKeyReused``.
        """
        command = OpenChargeback(
            order_id=order_id, amount_minor=amount_minor, reason_code=reason_code
        )
        # Under a key, a retry after a failed save opens the same chargeback: counted once.
        chargeback_id = str(
            uuid4()
            if idempotency_key is None
            else uuid5(_CHARGEBACK_NAMESPACE, f"{tenant_id}:{idempotency_key}")
        )

        def prepare() -> Step:
            order = self.get_order(tenant_id, order_id)
            self._require_no_upsell_in_progress(order)
            order.open_chargeback(
                chargeback_id=chargeback_id, amount_minor=amount_minor, reason_code=reason_code
            )
            tripped = self._count_chargeback(order, chargeback_id)
            return Step([order, *tripped], order_body(order))

        return self.run(tenant_id, idempotency_key, command, prepare)

    def _require_no_upsell_in_progress(self, order: Order) -> None:
        """Raises ``PaymentInProgress`` while an upsell following the order is at the gateway:
        the chargeback waits for its outcome (an upsell placed later finds the order disputed;
        one placed meanwhile conflicts on the order's version)."""
        for upsell_id in order.upsell_order_ids:
            if self.get_order(order.tenant_id, upsell_id).status is OrderStatus.PROCESSING:
                raise PaymentInProgress(
                    "an upsell of this order is being charged; retry once it has an outcome"
                )

    def _count_chargeback(self, order: Order, chargeback_id: str) -> list[Gateway]:
        """The capturing gateway, tripped, if this chargeback brought its ratio to the
        threshold; nothing for an order no routed gateway captured."""
        captured_by = next(
            (
                attempt.gateway_id
                for attempt in reversed(self.attempts(order))
                if attempt.status is AttemptStatus.SUCCEEDED
            ),
            None,
        )
        if captured_by is None:
            return []
        gateway = self.get_gateway(order.tenant_id, UUID(captured_by))
        return count_chargeback(
            gateway,
            self._figures(),
            chargeback_id=chargeback_id,
            at=self.now(),
            transactions_min=self.routing.chargeback_breaker_transactions_min,
        )

    def resolve_chargeback(
        self,
        *,
        tenant_id: str,
        order_id: UUID,
        chargeback_id: str,
        outcome: str,
        idempotency_key: str | None = None,
    ) -> CommandResult:
        """Record the network's decision on a chargeback: ``won`` or ``lost``.

        Raises ``OrderNotFound``, ``ChargebackNotFound``, ``ChargebackAlreadyResolved``,
        ``InvalidChargebackOutcome``, ``ConcurrentModification``, ``IdempotencyKeyReused``.
        """
        command = ResolveChargeback(order_id=order_id, chargeback_id=chargeback_id, outcome=outcome)

        def prepare() -> Step:
            order = self.get_order(tenant_id, order_id)
            order.resolve_chargeback(chargeback_id=chargeback_id, outcome=outcome)
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
