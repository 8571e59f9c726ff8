"""The PaymentAttempt aggregate: one request to a gateway and its outcome.

Decline codes follow Stripe's words. *Hard* declines (a stolen card, an expired card) must never
be retried or cascaded to another gateway; *soft* ones (insufficient funds) may be.
"""

from __future__ import annotations

from enum import Enum
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidTransition

HARD_DECLINE_CODES = frozenset(
    {
        "expired_card",
        "incorrect_cvc",
        "incorrect_number",
        "invalid_account",
        "lost_card",
        "stolen_card",
        "fraudulent",
        "pickup_card",
        "restricted_card",
    }
)


def is_hard_decline(decline_code: str) -> bool:
    return decline_code in HARD_DECLINE_CODES


class AttemptStatus(str, Enum):
    REQUESTED = "requested"
    SUCCEEDED = "succeeded"
    DECLINED = "declined"
    # The gateway call failed or timed out: the processor may or may not have charged. Only a
    # repeat of the call with the same idempotency key (or reconciliation) resolves it.
    OUTCOME_UNKNOWN = "unknown"


class AttemptAlreadyResolved(InvalidTransition):
    code = "attempt_already_resolved"


class PaymentAttempt(Aggregate):
    """A purchase or authorization sent to one gateway for one order."""

    @event("Requested")
    def __init__(
        self,
        *,
        tenant_id: str,
        order_id: UUID,
        payment_method_id: UUID,
        kind: str,
        gateway: str,
        amount_minor: int,
        currency: str,
    ):
        self.tenant_id = tenant_id
        self.order_id = order_id
        self.payment_method_id = payment_method_id
        self.kind = kind
        self.gateway = gateway
        self.amount_minor = amount_minor
        self.currency = currency
        self.status = AttemptStatus.REQUESTED
        self.transaction_id: str | None = None
        self.decline_code: str | None = None
        self.hard_decline = False
        self.capture_transaction_id: str | None = None
        self.captured_minor = 0
        self.voided = False

    def succeed(self, *, transaction_id: str) -> None:
        """Record the gateway's approval. Raises ``AttemptAlreadyResolved``."""
        self._require_requested()
        self._succeeded(transaction_id=transaction_id)

    @event("Succeeded")
    def _succeeded(self, *, transaction_id: str) -> None:
        self.status = AttemptStatus.SUCCEEDED
        self.transaction_id = transaction_id

    def decline(self, *, decline_code: str, message: str, transaction_id: str | None) -> None:
        """Record the gateway's refusal. Raises ``AttemptAlreadyResolved``."""
        self._require_requested()
        self._declined(
            decline_code=decline_code,
            hard=is_hard_decline(decline_code),
            message=message,
            transaction_id=transaction_id,
        )

    @event("Declined")
    def _declined(
        self, *, decline_code: str, hard: bool, message: str, transaction_id: str | None
    ) -> None:
        self.status = AttemptStatus.DECLINED
        self.decline_code = decline_code
        self.hard_decline = hard
        self.transaction_id = transaction_id

    def record_outcome_unknown(self, *, reason: str) -> None:
        """Record that the gateway's answer was lost. Raises ``AttemptAlreadyResolved``."""
        if self.status is not AttemptStatus.REQUESTED:
            raise AttemptAlreadyResolved(f"the attempt is already {self.status.value}")
        self._outcome_unknown(reason=reason[:500])

    @event("OutcomeUnknown")
    def _outcome_unknown(self, *, reason: str) -> None:
        self.status = AttemptStatus.OUTCOME_UNKNOWN

    def record_capture(self, *, transaction_id: str, amount_minor: int) -> None:
        """The gateway captured this authorization; refunds go against ``transaction_id``."""
        self._captured(transaction_id=transaction_id, amount_minor=amount_minor)

    @event("Captured")
    def _captured(self, *, transaction_id: str, amount_minor: int) -> None:
        self.capture_transaction_id = transaction_id
        self.captured_minor = amount_minor

    def record_void(self) -> None:
        self._voided()

    @event("Voided")
    def _voided(self) -> None:
        self.voided = True

    @property
    def money_transaction_id(self) -> str | None:
        """The transaction that moved the money (a purchase, or an authorization's capture)."""
        return self.capture_transaction_id or self.transaction_id

    @property
    def resolved(self) -> bool:
        return self.status in (AttemptStatus.SUCCEEDED, AttemptStatus.DECLINED)

    def _require_requested(self) -> None:
        # An unknown outcome is resolved by repeating the call with the same idempotency key.
        if self.resolved:
            raise AttemptAlreadyResolved(f"the attempt has already {self.status.value}")
