"""The PaymentAttempt aggregate: one request to a gateway and its outcome.

Decline codes follow Stripe's words. *Hard* declines (a stolen card, an expired card) must never
be retried or cascaded to another gateway; *soft* ones (insufficient funds) may be: the list is
``domain.routing.HARD_DECLINE_CODES``.

A routed attempt (a tenant with gateways) names its gateway (merchant account), the processor
adapter and the account at the processor, and records the routing decision that chose it; a soft
decline that cascades records ``CascadedTo`` with the next attempt's id, so the chain of one
payment can be followed from its first attempt.
"""

from __future__ import annotations

from enum import Enum
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidTransition

# Re-exported: the decline codes were defined here before routing existed.
from domain.routing import HARD_DECLINE_CODES as HARD_DECLINE_CODES
from domain.routing import is_hard_decline as is_hard_decline


class AttemptStatus(str, Enum):
    REQUESTED = "requested"
    SUCCEEDED = "succeeded"
    DECLINED = "declined"
    # The gateway call failed or timed out: the processor may or may not have charged. Only a
    # repeat of the call with the same idempotency key (or reconciliation) resolves it.
    OUTCOME_UNKNOWN = "unknown"


class AttemptAlreadyResolved(InvalidTransition):
    code = "attempt_already_resolved"


class AttemptNotCascadable(InvalidTransition):
    code = "attempt_not_cascadable"


class PaymentAttempt(Aggregate):
    """A purchase or authorization sent to one gateway for one order."""

    class Requested(Aggregate.Created):
        """Version 2 adds the gateway (merchant account) id, the processor adapter, the account
        at the processor and the routing decision; all None for the tenant's default gateway."""

        class_version = 2
        tenant_id: str
        order_id: UUID
        payment_method_id: UUID
        kind: str
        gateway: str
        amount_minor: int
        currency: str
        gateway_id: str | None = None
        processor: str | None = None
        account_id: str | None = None
        routing: dict[str, Any] | None = None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state.update(gateway_id=None, processor=None, account_id=None, routing=None)

    @event(Requested)
    def __init__(
        self,
        # Before ``*``: eventsourcing 9.5 takes every keyword-only argument as required, even
        # with a default; these are optional (pass them by name).
        gateway_id: str | None = None,
        processor: str | None = None,
        account_id: str | None = None,
        routing: dict[str, Any] | None = None,
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
        self.gateway_id = gateway_id
        self.processor = processor
        self.account_id = account_id
        self.routing = routing
        self.cascaded_to: UUID | None = None

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

    def cascade_to(self, *, next_attempt_id: UUID) -> None:
        """A soft decline of this attempt goes on with another gateway's attempt.

        Raises ``AttemptNotCascadable``.
        """
        if self.status is not AttemptStatus.DECLINED or self.hard_decline:
            raise AttemptNotCascadable("only a soft-declined attempt cascades")
        if self.cascaded_to is not None:
            raise AttemptNotCascadable("the attempt already cascaded")
        self._cascaded_to(next_attempt_id=next_attempt_id)

    @event("CascadedTo")
    def _cascaded_to(self, *, next_attempt_id: UUID) -> None:
        self.cascaded_to = next_attempt_id

    @property
    def cascade_index(self) -> int:
        """0 for a payment's first attempt, 1 for the attempt after its first cascade, …"""
        return int((self.routing or {}).get("cascade_index", 0))

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
