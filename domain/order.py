"""The Order aggregate: what was bought, and the money captured and refunded against it.

Glossary: *captured* money has been taken from the buyer (a purchase is an authorization and a
capture at once); *refunded* money has been given back. An order never refunds more than it
captured and never captures more than its total.
"""

from __future__ import annotations

from enum import Enum
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidInput, InvalidTransition
from domain.money import AMOUNT_MINOR_MAX, InvalidAmount, validate_amount_minor, validate_currency

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


class InvalidOrderLines(InvalidInput):
    code = "invalid_order_lines"


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
        result.append(
            {
                "sku": sku,
                "quantity": quantity,
                "unit_price_minor": unit_price_minor,
                "amount_minor": quantity * unit_price_minor,
            }
        )
    return result


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
    ) -> Order:
        """Place an order. Raises ``InvalidOrderLines``, ``InvalidAmount``, ``UnknownCurrency``."""
        validate_currency(currency)
        validated = _validated_lines(lines)
        total_minor = sum(line["amount_minor"] for line in validated)
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
        )

    @event("Placed")
    def __init__(
        self,
        *,
        tenant_id: str,
        customer_id: UUID,
        currency: str,
        lines: list[dict],
        total_minor: int,
        source: str,
    ):
        self.tenant_id = tenant_id
        self.customer_id = customer_id
        self.currency = currency
        self.lines = lines
        self.total_minor = total_minor
        self.source = source
        self.status = OrderStatus.PENDING
        self.captured_minor = 0
        self.refunded_minor = 0
        self.attempt_ids: list[UUID] = []
        self.decline_code: str | None = None

    @property
    def number(self) -> str:
        return order_number(self.id)

    def record_capture(self, *, attempt_id: UUID, amount_minor: int) -> None:
        """Record money captured by a payment attempt.

        Raises ``OrderNotPayable``, ``InvalidAmount``, ``CaptureExceedsTotal``.
        """
        more_of_a_paid_order = (
            self.status is OrderStatus.PAID and self.captured_minor < self.total_minor
        )
        if self.status not in (OrderStatus.PENDING, OrderStatus.DECLINED) and not (
            more_of_a_paid_order
        ):
            raise OrderNotPayable(f"an order that is {self.status.value} cannot be paid")
        validate_amount_minor(amount_minor, allow_zero=False)
        captured_minor = self.captured_minor + amount_minor
        if captured_minor > self.total_minor:
            raise CaptureExceedsTotal(
                f"capturing {amount_minor} would exceed the order total {self.total_minor}",
                param="amount_minor",
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
        self.attempt_ids.append(attempt_id)
        self.captured_minor = captured_minor
        self.status = OrderStatus(status)
        self.decline_code = None

    def record_decline(self, *, attempt_id: UUID, decline_code: str) -> None:
        """Record a declined payment attempt. Raises ``OrderNotPayable``."""
        if self.status not in (OrderStatus.PENDING, OrderStatus.DECLINED):
            raise OrderNotPayable(f"an order that is {self.status.value} cannot be paid")
        self._payment_declined(attempt_id=attempt_id, decline_code=decline_code)

    @event("PaymentDeclined")
    def _payment_declined(self, *, attempt_id: UUID, decline_code: str) -> None:
        self.attempt_ids.append(attempt_id)
        self.status = OrderStatus.DECLINED
        self.decline_code = decline_code

    def refund(self, *, amount_minor: int, reason: str | None = None) -> None:
        """Give back captured money, partially or fully.

        Raises ``OrderNotRefundable``, ``InvalidAmount``, ``RefundExceedsCaptured``.
        """
        if self.status not in (OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED):
            raise OrderNotRefundable(f"an order that is {self.status.value} cannot be refunded")
        validate_amount_minor(amount_minor, allow_zero=False)
        refundable_minor = self.captured_minor - self.refunded_minor
        if amount_minor > refundable_minor:
            raise RefundExceedsCaptured(
                f"refunding {amount_minor} exceeds the {refundable_minor} still captured",
                param="amount_minor",
            )
        if reason is not None and len(reason) > 500:
            raise InvalidInput("a reason has at most 500 characters", param="reason")
        refunded_minor = self.refunded_minor + amount_minor
        status = (
            OrderStatus.REFUNDED
            if refunded_minor == self.captured_minor
            else OrderStatus.PARTIALLY_REFUNDED
        )
        self._refunded(
            amount_minor=amount_minor,
            refunded_minor=refunded_minor,
            reason=reason,
            status=status.value,
        )

    @event("Refunded")
    def _refunded(
        self, *, amount_minor: int, refunded_minor: int, reason: str | None, status: str
    ) -> None:
        self.refunded_minor = refunded_minor
        self.status = OrderStatus(status)

    def cancel(self, *, reason: str | None = None) -> None:
        """Cancel an order no money was captured for. Raises ``OrderNotCancellable``."""
        if self.status not in (OrderStatus.PENDING, OrderStatus.DECLINED):
            raise OrderNotCancellable(
                f"an order that is {self.status.value} cannot be cancelled; refund it instead"
            )
        self._cancelled(reason=reason)

    @event("Cancelled")
    def _cancelled(self, *, reason: str | None) -> None:
        self.status = OrderStatus.CANCELLED
