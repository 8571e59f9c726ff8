"""The Order aggregate: what was bought, and the money captured and refunded against it.

Glossary: *captured* money has been taken from the buyer (a purchase is an authorization and a
capture at once); *refunded* money has been given back; *charged back* money was taken back by
the buyer's bank through a chargeback the merchant lost. An order never refunds more than it
captured and never captures more than its total; refunds and chargebacks (open or lost) together
never take back more than was captured.

Chargebacks: a captured order (``paid`` or ``partially_refunded``) can be disputed by the card
network. While a chargeback is open the order is ``disputed`` and refunds are refused
(``order_disputed``): the network already holds the disputed money, and a refund on top of it
would give the buyer the money twice. A *won* chargeback returns the money and the order to its
settled status; a *lost* one debits the order like a refund. The settled status after a lost
chargeback is ``charged_back`` when nothing captured is left, otherwise ``paid`` (nothing
refunded) or ``partially_refunded`` — ``charged_back_minor`` tells how much the network took.
"""

from __future__ import annotations

from enum import Enum
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidInput, InvalidTransition, NotFound
from domain.money import (
    AMOUNT_MINOR_MAX,
    InvalidAmount,
    Money,
    validate_amount_minor,
    validate_currency,
)

LINES_MAX = 100
QUANTITY_MAX = 1_000_000
SKU_LENGTH_MAX = 64


def order_number(order_id: UUID) -> str:
    """A short human reference derived from the id (stable, unique enough to read aloud)."""
    return "ORD-" + order_id.hex[:10].upper()


class OrderStatus(str, Enum):
    PENDING = "pending"
    PAID = "paid"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    DECLINED = "declined"
    CANCELLED = "cancelled"
    # A payment attempt is at the gateway (or its outcome was lost): nothing else may happen to
    # the order's money until the attempt is resolved.
    PROCESSING = "processing"
    # An authorization holds the money; a capture takes it (paid), a void releases it.
    AUTHORIZED = "authorized"
    VOIDED = "voided"
    # A chargeback is open: the card network holds the disputed money until it is resolved.
    DISPUTED = "disputed"
    # Lost chargebacks (with any refunds) took back everything captured.
    CHARGED_BACK = "charged_back"


class ChargebackStatus(str, Enum):
    OPEN = "open"
    WON = "won"
    LOST = "lost"


class PaymentOutcome(str, Enum):
    """The last payment attempt's outcome, in the words of the API."""

    REQUESTED = "requested"
    SUCCEEDED = "succeeded"
    DECLINED = "declined"
    UNKNOWN = "unknown"


class RefundExceedsCaptured(InvalidTransition):
    code = "refund_exceeds_captured"


class CaptureExceedsTotal(InvalidTransition):
    code = "capture_exceeds_total"


class OrderNotRefundable(InvalidTransition):
    code = "order_not_refundable"


class OrderNotCancellable(InvalidTransition):
    code = "order_not_cancellable"


class OrderNotPayable(InvalidTransition):
    code = "order_not_payable"


class PaymentInProgress(InvalidTransition):
    """A payment attempt of the order has no outcome yet; retry once it has."""

    code = "payment_in_progress"


class UnknownRefund(InvalidTransition):
    code = "unknown_refund"


class CaptureExceedsAuthorization(InvalidTransition):
    code = "capture_exceeds_authorization"


class OrderNotCapturable(InvalidTransition):
    code = "order_not_capturable"


class OrderNotVoidable(InvalidTransition):
    code = "order_not_voidable"


class UnknownOperation(InvalidTransition):
    code = "unknown_operation"


class InvalidOrderLines(InvalidInput):
    code = "invalid_order_lines"


class OrderDisputed(OrderNotRefundable):
    """A chargeback of the order is open: money moves again only once it is resolved."""

    code = "order_disputed"


class OrderNotDisputable(InvalidTransition):
    code = "order_not_disputable"


class ChargebackExceedsCaptured(InvalidTransition):
    """Open and lost chargebacks with refunds would take back more than was captured."""

    code = "chargeback_exceeds_captured"


class ChargebackAlreadyExists(InvalidTransition):
    code = "chargeback_already_exists"


class ChargebackNotFound(NotFound):
    """No chargeback of the order has this id (the code a malformed id in a path gets too)."""

    code = "chargeback_not_found"


class ChargebackAlreadyResolved(InvalidTransition):
    code = "chargeback_already_resolved"


class ParentOrderNotPaid(InvalidTransition):
    """An upsell follows an order whose money is captured and held (paid, partially refunded)."""

    code = "parent_order_not_paid"


class InvalidChargebackOutcome(InvalidInput):
    code = "invalid_chargeback_outcome"


class InvalidReasonCode(InvalidInput):
    code = "invalid_reason_code"


REASON_CODE_LENGTH_MAX = 64


def _validated_lines(lines: list[dict]) -> list[dict]:
    """Each line as {sku, quantity, unit_price_minor, amount_minor}; raises on bad input."""
    if not isinstance(lines, list) or not lines:
        raise InvalidOrderLines("an order has at least one line", param="lines")
    if len(lines) > LINES_MAX:
        raise InvalidOrderLines(f"an order has at most {LINES_MAX} lines", param="lines")
    result = []
    for index, line in enumerate(lines):
        if not isinstance(line, dict):
            raise InvalidOrderLines("each line is an object", param=f"lines.{index}")
        sku = line.get("sku")
        if not isinstance(sku, str) or not sku.strip() or len(sku) > SKU_LENGTH_MAX:
            raise InvalidOrderLines(
                f"a SKU has 1 to {SKU_LENGTH_MAX} characters", param=f"lines.{index}.sku"
            )
        quantity = line.get("quantity")
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            raise InvalidOrderLines("quantity is an integer", param=f"lines.{index}.quantity")
        if not 1 <= quantity <= QUANTITY_MAX:
            raise InvalidOrderLines(
                f"quantity is between 1 and {QUANTITY_MAX}", param=f"lines.{index}.quantity"
            )
        unit_price_minor = validate_amount_minor(
            line.get("unit_price_minor"), param=f"lines.{index}.unit_price_minor"
        )
        validated = {
            "sku": sku,
            "quantity": quantity,
            "unit_price_minor": unit_price_minor,
            "amount_minor": quantity * unit_price_minor,
        }
        if line.get("volume_minor") is not None:
            # The line's personal volume (PV) for commissions; without it, its amount.
            validated["volume_minor"] = validate_amount_minor(
                line["volume_minor"], param=f"lines.{index}.volume_minor"
            )
        result.append(validated)
    return result


def validated_attribution(attribution: dict | None) -> dict | None:
    """``{distributor_id, affiliate_id}`` (each optional) of an order, or None. Raises
    ``InvalidInput``."""
    if attribution is None:
        return None
    if not isinstance(attribution, dict) or set(attribution) - {"distributor_id", "affiliate_id"}:
        raise InvalidInput(
            "attribution has a distributor_id and an affiliate_id", param="attribution"
        )
    distributor_id = attribution.get("distributor_id")
    affiliate_id = attribution.get("affiliate_id")
    if distributor_id is not None:
        try:
            distributor_id = str(UUID(str(distributor_id)))
        except ValueError:
            raise InvalidInput(
                "a distributor id is a UUID", param="attribution.distributor_id"
            ) from None
    if affiliate_id is not None and (
        not isinstance(affiliate_id, str) or not affiliate_id.strip() or len(affiliate_id) > 64
    ):
        raise InvalidInput(
            "an affiliate id has 1 to 64 characters", param="attribution.affiliate_id"
        )
    if distributor_id is None and affiliate_id is None:
        return None
    return {"distributor_id": distributor_id, "affiliate_id": affiliate_id}


def history_requested(
    history: list[dict],
    *,
    attempt_id: UUID,
    gateway: str | None,
    kind: str,
    amount_minor: int | None,
) -> None:
    """Add a payment attempt to an order's history (the aggregate and the read model share
    this and ``history_resolved``, so both tell the same story)."""
    history.append(
        {
            "attempt_id": str(attempt_id),
            "gateway_id": gateway,
            "kind": kind,
            "amount_minor": amount_minor,
            "outcome": PaymentOutcome.REQUESTED.value,
            "decline_code": None,
        }
    )


def history_resolved(
    history: list[dict],
    *,
    attempt_id: UUID,
    outcome: str,
    decline_code: str | None = None,
    amount_minor: int | None = None,
) -> None:
    """Record an attempt's outcome; an attempt recorded before intents existed is added."""
    for entry in history:
        if entry["attempt_id"] == str(attempt_id):
            break
    else:
        history_requested(
            history, attempt_id=attempt_id, gateway=None, kind="purchase", amount_minor=amount_minor
        )
        entry = history[-1]
    # A capture of an authorization keeps the authorization's own (succeeded) entry.
    if entry["outcome"] != PaymentOutcome.SUCCEEDED.value:
        entry["outcome"] = outcome
        entry["decline_code"] = decline_code


def chargeback_entry(*, chargeback_id: str, amount_minor: int, reason_code: str) -> dict:
    """A chargeback as the order and its read model keep it (status ``open`` until resolved)."""
    return {
        "id": chargeback_id,
        "amount_minor": amount_minor,
        "reason_code": reason_code,
        "status": ChargebackStatus.OPEN.value,
    }


class Order(Aggregate):
    """An order of one customer in one currency."""

    @classmethod
    def place(
        cls,
        *,
        tenant_id: str,
        customer_id: UUID,
        currency: str,
        lines: list[dict],
        source: str = "api",
        parent_order_id: UUID | None = None,
        attribution: dict | None = None,
    ) -> Order:
        """Place an order (``parent_order_id``: the order an upsell follows; ``attribution``:
        the distributor and affiliate it is credited to).

        Raises ``InvalidOrderLines``, ``InvalidAmount``, ``UnknownCurrency``, ``InvalidInput``.
        """
        attribution = validated_attribution(attribution)
        validate_currency(currency)
        validated = _validated_lines(lines)
        total = sum(
            (Money(line["amount_minor"], currency) for line in validated), Money.zero(currency)
        )
        total_minor = total.amount_minor
        if total_minor > AMOUNT_MINOR_MAX:
            raise InvalidAmount(
                f"the order total exceeds {AMOUNT_MINOR_MAX} minor units", param="lines"
            )
        return cls(
            tenant_id=tenant_id,
            customer_id=customer_id,
            currency=currency,
            lines=validated,
            total_minor=total_minor,
            source=source,
            parent_order_id=parent_order_id,
            attribution=attribution,
        )

    class Placed(Aggregate.Created):
        """Version 2 names the order a one-click upsell follows (None for other orders);
        version 3 its attribution (distributor, affiliate; None when not attributed)."""

        class_version = 3
        tenant_id: str
        customer_id: UUID
        currency: str
        lines: list[dict]
        total_minor: int
        source: str
        parent_order_id: UUID | None
        attribution: dict | None

        @staticmethod
        def upcast_v1_v2(state: dict) -> None:
            state["parent_order_id"] = None

        @staticmethod
        def upcast_v2_v3(state: dict) -> None:
            state["attribution"] = None

    @event(Placed)
    def __init__(
        self,
        *,
        tenant_id: str,
        customer_id: UUID,
        currency: str,
        lines: list[dict],
        total_minor: int,
        source: str,
        parent_order_id: UUID | None = None,
        attribution: dict | None = None,
    ):
        self.tenant_id = tenant_id
        self.attribution = attribution
        self.customer_id = customer_id
        self.currency = currency
        self.lines = lines
        self.total_minor = total_minor
        self.source = source
        self.parent_order_id = parent_order_id
        # Chargebacks by id, in the order they were opened: {id, amount_minor, reason_code,
        # status}; ``charged_back_minor`` is the sum of the lost ones.
        self.chargebacks: dict[str, dict] = {}
        self.charged_back_minor = 0
        self.status = OrderStatus.PENDING
        self.captured_minor = 0
        self.refunded_minor = 0
        self.attempt_ids: list[UUID] = []
        self.decline_code: str | None = None
        self.payment_outcome: str | None = None
        # Refunds sent to the gateway and not yet answered: id -> amount, reserved so two
        # concurrent refunds can never give back more than was captured.
        self.pending_refunds: dict[str, int] = {}
        self.refunds_outcome_unknown: list[str] = []
        self.authorized_minor = 0
        self.payment_history: list[dict] = []
        # A capture or void of the authorization sent to the gateway and not yet answered.
        self.pending_operation: dict | None = None
        self.operations_outcome_unknown: list[str] = []
        # The one-click upsells that followed this order (``place_upsell``), in order.
        self.upsell_order_ids: list[UUID] = []

    @property
    def number(self) -> str:
        return order_number(self.id)

    class Refunded(Aggregate.Event):
        """Money given back; version 2 names the refund request it completes."""

        class_version = 2
        amount_minor: int
        refunded_minor: int
        reason: str | None
        status: str
        refund_id: str | None

        @staticmethod
        def upcast_v1_v2(state: dict) -> None:
            state["refund_id"] = None

    class PaymentRequested(Aggregate.Event):
        """Version 2 names the attempt's kind, gateway and amount (for the payment history)."""

        class_version = 2
        attempt_id: UUID
        kind: str
        gateway: str | None
        amount_minor: int | None

        @staticmethod
        def upcast_v1_v2(state: dict) -> None:
            state.update(kind="purchase", gateway=None, amount_minor=None)

    def request_payment(
        self,
        *,
        attempt_id: UUID,
        kind: str = "purchase",
        gateway: str | None = None,
        amount_minor: int | None = None,
    ) -> None:
        """Record that a payment attempt is about to be sent to the gateway.

        Raises ``OrderNotPayable``, ``PaymentInProgress``.
        """
        if self.status is OrderStatus.PROCESSING:
            raise PaymentInProgress("a payment of this order is already in progress")
        if self.status not in (OrderStatus.PENDING, OrderStatus.DECLINED):
            raise OrderNotPayable(f"an order that is {self.status.value} cannot be paid")
        self._payment_requested(
            attempt_id=attempt_id,
            kind=kind,
            gateway=gateway,
            amount_minor=self.total_minor if amount_minor is None else amount_minor,
        )

    @event(PaymentRequested)
    def _payment_requested(
        self, *, attempt_id: UUID, kind: str, gateway: str | None, amount_minor: int | None
    ) -> None:
        history_requested(
            self.payment_history,
            attempt_id=attempt_id,
            gateway=gateway,
            kind=kind,
            amount_minor=amount_minor,
        )
        self.attempt_ids.append(attempt_id)
        self.status = OrderStatus.PROCESSING
        self.payment_outcome = PaymentOutcome.REQUESTED.value

    def record_payment_outcome_unknown(self, *, attempt_id: UUID) -> None:
        """Record that the gateway's answer to an attempt was lost (the order stays processing).

        Raises ``OrderNotPayable``.
        """
        self._require_attempt_in_progress(attempt_id)
        self._payment_outcome_unknown(attempt_id=attempt_id)

    @event("PaymentOutcomeUnknown")
    def _payment_outcome_unknown(self, *, attempt_id: UUID) -> None:
        self.payment_outcome = PaymentOutcome.UNKNOWN.value
        history_resolved(
            self.payment_history, attempt_id=attempt_id, outcome=PaymentOutcome.UNKNOWN.value
        )

    def _require_attempt_in_progress(self, attempt_id: UUID) -> None:
        if self.status is not OrderStatus.PROCESSING or attempt_id != self.attempt_ids[-1]:
            raise OrderNotPayable("this payment attempt is not in progress for the order")

    def record_capture(self, *, attempt_id: UUID, amount_minor: int) -> None:
        """Record money captured by a payment attempt.

        Raises ``OrderNotPayable``, ``InvalidAmount``, ``CaptureExceedsTotal``.
        """
        more_of_a_paid_order = (
            self.status is OrderStatus.PAID and self.captured_minor < self.total_minor
        )
        capturing_authorization = (
            self.status is OrderStatus.AUTHORIZED
            and self.pending_operation is not None
            and self.pending_operation["kind"] == "capture"
        )
        if self.status is OrderStatus.PROCESSING:
            self._require_attempt_in_progress(attempt_id)
        elif (
            self.status not in (OrderStatus.PENDING, OrderStatus.DECLINED)
            and not more_of_a_paid_order
            and not capturing_authorization
        ):
            raise OrderNotPayable(f"an order that is {self.status.value} cannot be paid")
        validate_amount_minor(amount_minor, allow_zero=False)
        captured_minor = self.captured_minor + amount_minor
        if captured_minor > self.total_minor:
            raise CaptureExceedsTotal(
                "the capture would exceed the order total", param="amount_minor"
            )
        # Any captured money makes the order paid: from then on it can be refunded, and it can
        # no longer be cancelled or declined (``captured_minor`` tells how much was taken).
        status = OrderStatus.PAID
        self._payment_captured(
            attempt_id=attempt_id,
            amount_minor=amount_minor,
            captured_minor=captured_minor,
            status=status.value,
        )

    @event("PaymentCaptured")
    def _payment_captured(
        self, *, attempt_id: UUID, amount_minor: int, captured_minor: int, status: str
    ) -> None:
        # Orders recorded before payment intents existed have no PaymentRequested event.
        if attempt_id not in self.attempt_ids:
            self.attempt_ids.append(attempt_id)
        history_resolved(
            self.payment_history,
            attempt_id=attempt_id,
            outcome=PaymentOutcome.SUCCEEDED.value,
            amount_minor=amount_minor,
        )
        self.captured_minor = captured_minor
        self.status = OrderStatus(status)
        self.decline_code = None
        self.payment_outcome = PaymentOutcome.SUCCEEDED.value
        self.pending_operation = None

    def record_decline(self, *, attempt_id: UUID, decline_code: str) -> None:
        """Record a declined payment attempt. Raises ``OrderNotPayable``."""
        if self.status is OrderStatus.PROCESSING:
            self._require_attempt_in_progress(attempt_id)
        elif self.status not in (OrderStatus.PENDING, OrderStatus.DECLINED):
            raise OrderNotPayable(f"an order that is {self.status.value} cannot be paid")
        self._payment_declined(attempt_id=attempt_id, decline_code=decline_code)

    @event("PaymentDeclined")
    def _payment_declined(self, *, attempt_id: UUID, decline_code: str) -> None:
        if attempt_id not in self.attempt_ids:
            self.attempt_ids.append(attempt_id)
        history_resolved(
            self.payment_history,
            attempt_id=attempt_id,
            outcome=PaymentOutcome.DECLINED.value,
            decline_code=decline_code,
        )
        self.status = OrderStatus.DECLINED
        self.decline_code = decline_code
        self.payment_outcome = PaymentOutcome.DECLINED.value

    def record_authorization(self, *, attempt_id: UUID, amount_minor: int) -> None:
        """The gateway holds ``amount_minor`` for this order. Raises ``OrderNotPayable``."""
        self._require_attempt_in_progress(attempt_id)
        self._payment_authorized(attempt_id=attempt_id, amount_minor=amount_minor)

    @event("PaymentAuthorized")
    def _payment_authorized(self, *, attempt_id: UUID, amount_minor: int) -> None:
        history_resolved(
            self.payment_history, attempt_id=attempt_id, outcome=PaymentOutcome.SUCCEEDED.value
        )
        self.status = OrderStatus.AUTHORIZED
        self.authorized_minor = amount_minor
        self.decline_code = None
        self.payment_outcome = PaymentOutcome.SUCCEEDED.value

    def request_capture(self, *, operation_id: str, amount_minor: int) -> None:
        """Record the intent to capture part or all of the authorization (once).

        Raises ``OrderNotCapturable``, ``PaymentInProgress``, ``InvalidAmount``,
        ``CaptureExceedsAuthorization``.
        """
        self._require_authorized(OrderNotCapturable, "captured")
        validate_amount_minor(amount_minor, allow_zero=False)
        if amount_minor > self.authorized_minor:
            raise CaptureExceedsAuthorization(
                f"the capture exceeds the {self.authorized_minor} minor units authorized",
                param="amount_minor",
            )
        self._capture_requested(operation_id=operation_id, amount_minor=amount_minor)

    @event("CaptureRequested")
    def _capture_requested(self, *, operation_id: str, amount_minor: int) -> None:
        self.pending_operation = {
            "kind": "capture",
            "id": operation_id,
            "amount_minor": amount_minor,
        }

    def request_void(self, *, operation_id: str) -> None:
        """Record the intent to release the authorization. Raises ``OrderNotVoidable``,
        ``PaymentInProgress``."""
        self._require_authorized(OrderNotVoidable, "voided")
        self._void_requested(operation_id=operation_id)

    @event("VoidRequested")
    def _void_requested(self, *, operation_id: str) -> None:
        self.pending_operation = {"kind": "void", "id": operation_id}

    def _require_authorized(self, error: type[InvalidTransition], verb: str) -> None:
        if self.pending_operation is not None:
            raise PaymentInProgress("a capture or void of this order is in progress")
        if self.status is not OrderStatus.AUTHORIZED:
            raise error(f"only an authorized order can be {verb}; this one is {self.status.value}")

    def pending(self, operation_id: str) -> dict | None:
        """The capture or void waiting for the gateway under this id, if any."""
        operation = self.pending_operation
        return operation if operation is not None and operation["id"] == operation_id else None

    def complete_capture(self, *, operation_id: str, attempt_id: UUID) -> None:
        """The gateway captured: the order is paid. Raises ``UnknownOperation``."""
        operation = self._pending_operation(operation_id, "capture")
        self.record_capture(attempt_id=attempt_id, amount_minor=operation["amount_minor"])

    def complete_void(self, *, operation_id: str) -> None:
        """The gateway released the authorization. Raises ``UnknownOperation``."""
        self._pending_operation(operation_id, "void")
        self._payment_voided(operation_id=operation_id)

    @event("PaymentVoided")
    def _payment_voided(self, *, operation_id: str) -> None:
        self.status = OrderStatus.VOIDED
        self.pending_operation = None

    def fail_operation(self, *, operation_id: str, decline_code: str) -> None:
        """The gateway refused a capture or void; the authorization stands as it was.

        Raises ``UnknownOperation``.
        """
        self._pending_operation(operation_id, None)
        self._operation_failed(operation_id=operation_id, decline_code=decline_code)

    @event("OperationFailed")
    def _operation_failed(self, *, operation_id: str, decline_code: str) -> None:
        self.pending_operation = None

    def record_operation_outcome_unknown(self, *, operation_id: str) -> None:
        """The gateway's answer to a capture or void was lost. Raises ``UnknownOperation``."""
        self._pending_operation(operation_id, None)
        self._operation_outcome_unknown(operation_id=operation_id)

    @event("OperationOutcomeUnknown")
    def _operation_outcome_unknown(self, *, operation_id: str) -> None:
        self.operations_outcome_unknown.append(operation_id)

    def _pending_operation(self, operation_id: str, kind: str | None) -> dict:
        operation = self.pending(operation_id)
        if operation is None or (kind is not None and operation["kind"] != kind):
            raise UnknownOperation("no such capture or void of this order is waiting")
        return operation

    @property
    def refundable_minor(self) -> int:
        """Captured money not yet refunded, charged back, nor reserved by a refund at the
        gateway."""
        return (
            self.captured_minor
            - self.refunded_minor
            - self.charged_back_minor
            - sum(self.pending_refunds.values())
        )

    @property
    def open_chargeback_minor(self) -> int:
        return sum(
            chargeback["amount_minor"]
            for chargeback in self.chargebacks.values()
            if chargeback["status"] == ChargebackStatus.OPEN.value
        )

    def _settled_status(
        self, *, refunded_minor: int, charged_back_minor: int, last: str
    ) -> OrderStatus:
        """The status of a captured order with no open chargeback, from its amounts: nothing
        left is ``refunded`` or ``charged_back`` (after the ``last`` movement's kind)."""
        if refunded_minor + charged_back_minor >= self.captured_minor:
            return OrderStatus.CHARGED_BACK if last == "chargeback" else OrderStatus.REFUNDED
        return OrderStatus.PARTIALLY_REFUNDED if refunded_minor else OrderStatus.PAID

    def request_refund(self, *, refund_id: str, amount_minor: int, reason: str | None) -> None:
        """Reserve captured money for a refund about to be sent to the gateway.

        Raises ``OrderNotRefundable``, ``InvalidAmount``, ``RefundExceedsCaptured``,
        ``InvalidInput``.
        """
        if self.status is OrderStatus.DISPUTED:
            raise OrderDisputed("a chargeback of this order is open; resolve it before refunding")
        if self.status not in (OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED):
            raise OrderNotRefundable(f"an order that is {self.status.value} cannot be refunded")
        validate_amount_minor(amount_minor, allow_zero=False)
        if amount_minor > self.refundable_minor:
            raise RefundExceedsCaptured(
                f"the refund exceeds the {self.refundable_minor} minor units still refundable",
                param="amount_minor",
            )
        if reason is not None and len(reason) > 500:
            raise InvalidInput("a reason has at most 500 characters", param="reason")
        self._refund_requested(refund_id=refund_id, amount_minor=amount_minor, reason=reason)

    @event("RefundRequested")
    def _refund_requested(self, *, refund_id: str, amount_minor: int, reason: str | None) -> None:
        self.pending_refunds[refund_id] = amount_minor

    def complete_refund(self, *, refund_id: str) -> None:
        """The gateway gave the money back. Raises ``UnknownRefund``."""
        amount_minor = self._pending_refund(refund_id)
        refunded_minor = self.refunded_minor + amount_minor
        # A refund sent before a chargeback was opened may complete while it is open: the
        # order stays disputed, and its resolution settles the status from the amounts.
        status = (
            OrderStatus.DISPUTED
            if self.status is OrderStatus.DISPUTED
            else self._settled_status(
                refunded_minor=refunded_minor,
                charged_back_minor=self.charged_back_minor,
                last="refund",
            )
        )
        self._refunded(
            amount_minor=amount_minor,
            refunded_minor=refunded_minor,
            reason=None,
            status=status.value,
            refund_id=refund_id,
        )

    @event(Refunded)
    def _refunded(
        self,
        *,
        amount_minor: int,
        refunded_minor: int,
        reason: str | None,
        status: str,
        refund_id: str | None,
    ) -> None:
        if refund_id is not None:
            self.pending_refunds.pop(refund_id, None)
            if refund_id in self.refunds_outcome_unknown:
                self.refunds_outcome_unknown.remove(refund_id)
        self.refunded_minor = refunded_minor
        self.status = OrderStatus(status)

    def fail_refund(self, *, refund_id: str, decline_code: str) -> None:
        """The gateway refused the refund: release the reservation. Raises ``UnknownRefund``."""
        self._pending_refund(refund_id)
        self._refund_failed(refund_id=refund_id, decline_code=decline_code)

    @event("RefundFailed")
    def _refund_failed(self, *, refund_id: str, decline_code: str) -> None:
        self.pending_refunds.pop(refund_id, None)
        if refund_id in self.refunds_outcome_unknown:
            self.refunds_outcome_unknown.remove(refund_id)

    def record_refund_outcome_unknown(self, *, refund_id: str) -> None:
        """The gateway's answer to a refund was lost: the money stays reserved until resolved.

        Raises ``UnknownRefund``.
        """
        self._pending_refund(refund_id)
        self._refund_outcome_unknown(refund_id=refund_id)

    @event("RefundOutcomeUnknown")
    def _refund_outcome_unknown(self, *, refund_id: str) -> None:
        # The reservation is kept until a retry with the same gateway key learns the outcome.
        self.refunds_outcome_unknown.append(refund_id)

    def _pending_refund(self, refund_id: str) -> int:
        if refund_id not in self.pending_refunds:
            raise UnknownRefund("no refund of this order is waiting for the gateway")
        return self.pending_refunds[refund_id]

    def require_upsell_parent(self) -> None:
        """Check a one-click upsell may follow this order. Raises ``ParentOrderNotPaid``."""
        if self.status not in (OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED):
            raise ParentOrderNotPaid(
                f"an upsell follows a paid order; this one is {self.status.value}",
                param="order_id",
            )

    def place_upsell(self, *, upsell_order_id: UUID) -> None:
        """Record a one-click upsell following this order, saved with the upsell's purchase
        intent: a chargeback (or another upsell) of this order saved meanwhile conflicts on its
        version, so an upsell never follows a disputed order. Raises ``ParentOrderNotPaid``.
        """
        self.require_upsell_parent()
        self._upsell_placed(upsell_order_id=upsell_order_id)

    @event("UpsellPlaced")
    def _upsell_placed(self, *, upsell_order_id: UUID) -> None:
        self.upsell_order_ids.append(upsell_order_id)

    def open_chargeback(self, *, chargeback_id: str, amount_minor: int, reason_code: str) -> None:
        """Record a chargeback the card network opened against captured money.

        Raises ``OrderNotDisputable``, ``ChargebackAlreadyExists``, ``InvalidAmount``,
        ``InvalidReasonCode``, ``ChargebackExceedsCaptured``.
        """
        if chargeback_id in self.chargebacks:
            raise ChargebackAlreadyExists("a chargeback with this id was already opened")
        if self.status not in (OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED):
            raise OrderNotDisputable(
                "only a paid or partially refunded order can be charged back; "
                f"this one is {self.status.value}"
            )
        validate_amount_minor(amount_minor, allow_zero=False)
        if (
            not isinstance(reason_code, str)
            or not reason_code.strip()
            or len(reason_code) > REASON_CODE_LENGTH_MAX
            or "\x00" in reason_code
        ):
            raise InvalidReasonCode(
                f"a reason code has 1 to {REASON_CODE_LENGTH_MAX} characters",
                param="reason_code",
            )
        # Money reserved by refunds still at the gateway counts as given back already.
        disputable_minor = self.refundable_minor - self.open_chargeback_minor
        if amount_minor > disputable_minor:
            raise ChargebackExceedsCaptured(
                f"the chargeback exceeds the {disputable_minor} minor units captured and not "
                "yet refunded or charged back",
                param="amount_minor",
            )
        self._chargeback_opened(
            chargeback_id=chargeback_id, amount_minor=amount_minor, reason_code=reason_code
        )

    @event("ChargebackOpened")
    def _chargeback_opened(
        self, *, chargeback_id: str, amount_minor: int, reason_code: str
    ) -> None:
        self.chargebacks[chargeback_id] = chargeback_entry(
            chargeback_id=chargeback_id, amount_minor=amount_minor, reason_code=reason_code
        )
        self.status = OrderStatus.DISPUTED

    def resolve_chargeback(self, *, chargeback_id: str, outcome: str) -> None:
        """Record the network's decision: ``won`` gives the money back to the merchant,
        ``lost`` debits the order like a refund.

        Raises ``ChargebackNotFound``, ``ChargebackAlreadyResolved``, ``InvalidChargebackOutcome``.
        """
        if outcome not in (ChargebackStatus.WON.value, ChargebackStatus.LOST.value):
            raise InvalidChargebackOutcome(
                "a chargeback's outcome is 'won' or 'lost'", param="outcome"
            )
        chargeback = self.chargebacks.get(chargeback_id)
        if chargeback is None:
            raise ChargebackNotFound(
                "no chargeback of this order has this id", param="chargeback_id"
            )
        if chargeback["status"] != ChargebackStatus.OPEN.value:
            raise ChargebackAlreadyResolved(f"the chargeback was already {chargeback['status']}")
        lost = outcome == ChargebackStatus.LOST.value
        charged_back_minor = self.charged_back_minor + (chargeback["amount_minor"] if lost else 0)
        # Only a settled order can be disputed, so this was the one open chargeback.
        status = self._settled_status(
            refunded_minor=self.refunded_minor,
            charged_back_minor=charged_back_minor,
            last="chargeback" if lost else "refund",
        )
        self._chargeback_resolved(
            chargeback_id=chargeback_id,
            outcome=outcome,
            amount_minor=chargeback["amount_minor"],
            charged_back_minor=charged_back_minor,
            status=status.value,
        )

    @event("ChargebackResolved")
    def _chargeback_resolved(
        self,
        *,
        chargeback_id: str,
        outcome: str,
        amount_minor: int,
        charged_back_minor: int,
        status: str,
    ) -> None:
        self.chargebacks[chargeback_id]["status"] = outcome
        self.charged_back_minor = charged_back_minor
        self.status = OrderStatus(status)

    def cancel(self, *, reason: str | None = None) -> None:
        """Cancel an order no money was captured for.

        Raises ``OrderNotCancellable``, ``PaymentInProgress``.
        """
        if self.status is OrderStatus.PROCESSING:
            raise PaymentInProgress(
                "a payment of this order is in progress; it cannot be cancelled"
            )
        if self.status is OrderStatus.AUTHORIZED:
            raise OrderNotCancellable("an authorized order is voided, not cancelled")
        if self.status not in (OrderStatus.PENDING, OrderStatus.DECLINED):
            raise OrderNotCancellable(
                f"an order that is {self.status.value} cannot be cancelled; refund it instead"
            )
        self._cancelled(reason=reason)

    @event("Cancelled")
    def _cancelled(self, *, reason: str | None) -> None:
        self.status = OrderStatus.CANCELLED
