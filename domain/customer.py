"""The Customer aggregate: who buys, and the tokenised payment methods they keep on file.

A payment method is held as a vault token with brand, last4, BIN and expiry. A primary account
number (PAN) never reaches this module, its events or the event store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.countries import validate_country
from domain.errors import InvalidInput, InvalidTransition
from domain.money import validate_currency

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


class InvalidEmail(InvalidInput):
    code = "invalid_email"


class PaymentMethodAlreadyAttached(InvalidTransition):
    code = "payment_method_already_attached"


class PaymentMethodNotFound(InvalidInput):
    code = "payment_method_not_found"


@dataclass(frozen=True, slots=True)
class CardDetails:
    """What the vault returns for a card: safe to store, useless to a thief."""

    token: str
    brand: str
    last4: str
    bin: str
    exp_month: int
    exp_year: int


class Customer(Aggregate):
    """A buyer of one tenant."""

    @classmethod
    def register(
        cls, *, tenant_id: str, email: str, name: str, country: str, currency: str
    ) -> Customer:
        """Register a customer.

        Raises ``InvalidEmail``, ``UnknownCountry``, ``UnknownCurrency``, ``InvalidInput``.
        """
        if not isinstance(email, str):
            raise InvalidEmail("an email address is a string", param="email")
        if not isinstance(name, str):
            raise InvalidInput("a name is a string", param="name")
        email = email.strip()
        if len(email) > 254 or not _EMAIL.match(email):
            raise InvalidEmail("this is not an email address", param="email")
        name = name.strip()
        if not name or len(name) > 200:
            raise InvalidInput("a name has 1 to 200 characters", param="name")
        validate_country(country)
        validate_currency(currency)
        return cls(tenant_id=tenant_id, email=email, name=name, country=country, currency=currency)

    @event("Registered")
    def __init__(self, *, tenant_id: str, email: str, name: str, country: str, currency: str):
        self.tenant_id = tenant_id
        self.email = email
        self.name = name
        self.country = country
        self.currency = currency
        self.payment_methods: dict[str, dict] = {}

    def attach_payment_method(self, payment_method_id: UUID, card: CardDetails) -> None:
        """Keep a tokenised card on file. Raises ``PaymentMethodAlreadyAttached``."""
        if str(payment_method_id) in self.payment_methods:
            raise PaymentMethodAlreadyAttached(
                "this payment method is already attached", param="payment_method_id"
            )
        self._payment_method_attached(
            payment_method_id=payment_method_id,
            token=card.token,
            brand=card.brand,
            last4=card.last4,
            bin=card.bin,
            exp_month=card.exp_month,
            exp_year=card.exp_year,
        )

    @event("PaymentMethodAttached")
    def _payment_method_attached(
        self,
        *,
        payment_method_id: UUID,
        token: str,
        brand: str,
        last4: str,
        bin: str,
        exp_month: int,
        exp_year: int,
    ) -> None:
        self.payment_methods[str(payment_method_id)] = {
            "id": str(payment_method_id),
            "token": token,
            "brand": brand,
            "last4": last4,
            "bin": bin,
            "exp_month": exp_month,
            "exp_year": exp_year,
        }

    def replace_card(self, payment_method_id: UUID | str, card: CardDetails) -> None:
        """A new card behind a payment method on file (a reissued or replaced card): charges
        that name the method use it from now on. Raises ``PaymentMethodNotFound``."""
        self.payment_method(payment_method_id)
        self._card_replaced(
            payment_method_id=str(payment_method_id),
            token=card.token,
            brand=card.brand,
            last4=card.last4,
            bin=card.bin,
            exp_month=card.exp_month,
            exp_year=card.exp_year,
        )

    @event("CardReplaced")
    def _card_replaced(
        self,
        *,
        payment_method_id: str,
        token: str,
        brand: str,
        last4: str,
        bin: str,
        exp_month: int,
        exp_year: int,
    ) -> None:
        self.payment_methods[payment_method_id] = {
            "id": payment_method_id,
            "token": token,
            "brand": brand,
            "last4": last4,
            "bin": bin,
            "exp_month": exp_month,
            "exp_year": exp_year,
        }

    def payment_method(self, payment_method_id: UUID | str) -> dict:
        """The stored card, by id. Raises ``PaymentMethodNotFound``."""
        try:
            return self.payment_methods[str(payment_method_id)]
        except KeyError:
            raise PaymentMethodNotFound(
                "the customer has no such payment method", param="payment_method_id"
            ) from None
