"""Customer commands: register a buyer, keep a tokenised card on file.

Card numbers and security codes reach this module only to be handed to the vault. They are
``secret`` fields of ``AttachPaymentMethod``, so the idempotency fingerprint never covers them: it
covers what the vault returned instead (brand, BIN, last four digits, expiry) — details the
ledger stores anyway — so no value derived from the full card number is kept anywhere (PCI DSS
3.3.1, 3.5.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

from application.commands import CommandResult, LedgerBase, Step
from application.idempotency import secret_field
from domain.customer import CardDetails, Customer
from domain.errors import NotFound


class CustomerNotFound(NotFound):
    code = "customer_not_found"


@dataclass(frozen=True)
class RegisterCustomer:
    email: str
    name: str
    country: str
    currency: str


@dataclass(frozen=True)
class AttachPaymentMethod:
    customer_id: UUID
    # What the vault returned; the number and security code themselves are never fingerprinted.
    brand: str
    bin: str
    last4: str
    exp_month: int
    exp_year: int
    card_number: str = secret_field(repr=False)
    cvc: str | None = secret_field(repr=False, default=None)


@dataclass(frozen=True)
class ReplaceCard:
    customer_id: UUID
    payment_method_id: UUID
    brand: str
    bin: str
    last4: str
    exp_month: int
    exp_year: int
    card_number: str = secret_field(repr=False)
    cvc: str | None = secret_field(repr=False, default=None)


def customer_body(customer: Customer) -> dict[str, Any]:
    return {
        "id": str(customer.id),
        "email": customer.email,
        "name": customer.name,
        "country": customer.country,
        "currency": customer.currency,
        "created_at": customer.created_on.isoformat(),
    }


def payment_method_body(method: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in method.items() if key != "token"}


class CustomerCommands(LedgerBase):
    def register_customer(
        self,
        *,
        tenant_id: str,
        email: str,
        name: str,
        country: str,
        currency: str,
        idempotency_key: str | None = None,
    ) -> CommandResult:
        """Register a customer.

        Raises ``InvalidEmail``, ``UnknownCountry``, ``UnknownCurrency``, ``InvalidInput``,
        ``IdempotencyKeyReused``.
        """
        command = RegisterCustomer(email=email, name=name, country=country, currency=currency)

        def prepare() -> Step:
            customer = Customer.register(
                tenant_id=tenant_id, email=email, name=name, country=country, currency=currency
            )
            return Step([customer], customer_body(customer))

        return self.run(tenant_id, idempotency_key, command, prepare)

    def attach_payment_method(
        self,
        *,
        tenant_id: str,
        customer_id: UUID,
        card_number: str,
        exp_month: int,
        exp_year: int,
        cvc: str | None = None,
        idempotency_key: str | None = None,
    ) -> CommandResult:
        """Tokenise a card in the vault and keep the token on the customer.

        Raises ``CustomerNotFound``, ``CardRejected``, ``IdempotencyKeyReused``,
        ``ConcurrentModification``.
        """
        self.get_customer(tenant_id, customer_id)  # an unknown customer is named before the card
        card = self.vault.tokenize(
            card_number=card_number, exp_month=exp_month, exp_year=exp_year, cvc=cvc
        )
        command = AttachPaymentMethod(
            customer_id=customer_id,
            brand=card.brand,
            bin=card.bin,
            last4=card.last4,
            exp_month=card.exp_month,
            exp_year=card.exp_year,
            card_number=card_number,
            cvc=cvc,
        )

        def prepare() -> Step:
            customer = self.get_customer(tenant_id, customer_id)
            payment_method_id = uuid4()
            customer.attach_payment_method(payment_method_id, card)
            return Step([customer], payment_method_body(customer.payment_method(payment_method_id)))

        return self.run(tenant_id, idempotency_key, command, prepare)

    def replace_card(
        self,
        *,
        tenant_id: str,
        customer_id: UUID,
        payment_method_id: UUID,
        card_number: str,
        exp_month: int,
        exp_year: int,
        cvc: str | None = None,
        idempotency_key: str | None = None,
    ) -> CommandResult:
        """Put a new card behind a payment method on file (``PUT`` of the method): charges
        naming the method use it from now on.

        Raises ``CustomerNotFound``, ``PaymentMethodNotFound``, ``CardRejected``,
        ``IdempotencyKeyReused``, ``ConcurrentModification``.
        """
        self.get_customer(tenant_id, customer_id).payment_method(payment_method_id)
        card = self.vault.tokenize(
            card_number=card_number, exp_month=exp_month, exp_year=exp_year, cvc=cvc
        )
        command = ReplaceCard(
            customer_id=customer_id,
            payment_method_id=payment_method_id,
            brand=card.brand,
            bin=card.bin,
            last4=card.last4,
            exp_month=card.exp_month,
            exp_year=card.exp_year,
            card_number=card_number,
            cvc=cvc,
        )

        def prepare() -> Step:
            customer = self.get_customer(tenant_id, customer_id)
            customer.replace_card(payment_method_id, card)
            return Step([customer], payment_method_body(customer.payment_method(payment_method_id)))

        return self.run(tenant_id, idempotency_key, command, prepare)

    def refresh_expiring_cards(
        self, *, tenant_id: str, customer_id: UUID, within_days: int = 31
    ) -> list[str]:
        """Ask the vault's account updater for the current details of the customer's cards
        that expire within ``within_days`` (or have expired), and keep what it returns; the
        ids of the payment methods updated. Raises ``CustomerNotFound``,
        ``ConcurrentModification``."""
        horizon = self.now() + timedelta(days=within_days)
        updated: list[str] = []

        def prepare() -> Step:
            customer = self.get_customer(tenant_id, customer_id)
            updated.clear()
            for method_id, method in list(customer.payment_methods.items()):
                if (method["exp_year"], method["exp_month"]) > (horizon.year, horizon.month):
                    continue
                card = self.vault.updated_card(
                    CardDetails(**{k: v for k, v in method.items() if k != "id"})
                )
                if card is not None:
                    customer.replace_card(method_id, card)
                    updated.append(method_id)
            return Step([customer], {"updated": list(updated)})

        self.run(tenant_id, None, None, prepare)
        return updated

    def get_customer(self, tenant_id: str, customer_id: UUID) -> Customer:
        """Raises ``CustomerNotFound``."""
        return self.get_owned(Customer, tenant_id, customer_id, CustomerNotFound)
