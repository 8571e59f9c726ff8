"""Outbound needs of the application, as Protocols implemented in ``adapters/``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Protocol, runtime_checkable
from uuid import UUID

from domain.customer import CardDetails
from domain.errors import InvalidInput
from domain.reconciliation import ProcessorTransaction


class CardRejected(InvalidInput):
    """The vault refused to tokenise a card (bad number, past expiry)."""

    code = "invalid_card"


class Vault(Protocol):
    """Turns a card number into a token; the number itself never leaves the vault."""

    def tokenize(
        self, *, card_number: str, exp_month: int, exp_year: int, cvc: str | None
    ) -> CardDetails:
        """Raises ``CardRejected``."""
        ...

    def updated_card(self, card: CardDetails) -> CardDetails | None:
        """The account updater: the issuer's current details of a card on file (a reissued
        card's new expiry, a replacement token), or None when it has nothing newer."""
        ...


@dataclass(frozen=True, slots=True)
class GatewayOutcome:
    """The processor's answer. A call that raises instead has an unknown outcome."""

    succeeded: bool
    transaction_id: str | None
    decline_code: str | None = None
    message: str = ""


class PaymentGateway(Protocol):
    """A payment processor. A repeated ``idempotency_key`` returns the first call's outcome and
    never moves money again. Any exception (timeout, connection lost) means the outcome is
    unknown: the call may or may not have taken effect.
    """

    name: str

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
        """Authorize and capture ``amount_minor`` on the card behind ``token``."""
        ...

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
        """Give back part or all of the captured charge ``transaction_id``."""
        ...

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
        """Reserve ``amount_minor`` on the card; nothing is captured yet."""
        ...

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
        """Capture part or all of the authorization ``transaction_id`` (once)."""
        ...

    def void(
        self, *, account_id: str, transaction_id: str, idempotency_key: UUID, reference: str
    ) -> GatewayOutcome:
        """Release an uncaptured authorization."""
        ...

    def status(self, *, account_id: str, idempotency_key: UUID) -> GatewayOutcome | None:
        """The outcome of the transaction made with this idempotency key; None if the processor
        has none (the call never reached it). Raises like any call when it cannot tell."""
        ...


@runtime_checkable
class ProcessorBooks(Protocol):
    """A processor's own record of what it executed: its dashboard, or its listing API.

    Reconciliation compares it with our events; it is read, never written.
    """

    def transactions_on(
        self, day: date, account_id: str | None = None
    ) -> list[ProcessorTransaction]:
        """The transactions the processor created on this UTC day, oldest first; of one merchant
        account (``account_id``) or of every account it keeps. Raises like any call to the
        processor when it cannot be read."""
        ...
