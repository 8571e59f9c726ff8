"""Outbound needs of the application, as Protocols implemented in ``adapters/``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from domain.customer import CardDetails
from domain.errors import InvalidInput


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


@dataclass(frozen=True, slots=True)
class GatewayOutcome:
    succeeded: bool
    transaction_id: str | None
    decline_code: str | None = None
    message: str = ""


class PaymentGateway(Protocol):
    """A payment processor; a repeated ``idempotency_key`` returns the first outcome."""

    name: str

    def purchase(
        self, *, token: str, amount_minor: int, currency: str, idempotency_key: UUID
    ) -> GatewayOutcome: ...
