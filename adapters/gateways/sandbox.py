"""The sandbox vault and gateway: deterministic, offline, driven by Stripe's public test cards.

The vault checks a card number (Luhn, brand by BIN range, expiry) and returns a token that names
the sandbox behaviour of the card, like Stripe's ``tok_chargeDeclined``. The number itself is
dropped here: it is not stored, logged or put in the token.

Test cards beyond the approving ones (``TEST_CARD_BEHAVIOURS``):
- soft declines: ``4000000000000002`` (generic_decline), ``4000000000009995``
  (insufficient_funds); hard declines: ``4000000000000069`` (expired_card), ``…0127``
  (incorrect_cvc), ``4000000000009987`` (lost_card), ``…9979`` (stolen_card),
  ``4100000000000019`` (fraudulent);
- ``4000000000000259``, the dispute card: it is charged like any good card; staff (or a webhook)
  open the chargeback on the order afterwards;
- ``4000000000000911``, the timeout card: the charge is made and kept in the books, but the
  first call raises ``TimeoutError`` (the answer is lost); a repeat of the call with the same
  idempotency key, or ``status``, answers with the charge — the unknown-outcome path end to end.

Decline injection per merchant account (for cascades): a card transaction on an account whose
id ends with ``+decline_<code>`` (say a gateway registered with ``processor_account:
"acct_eu+decline_insufficient_funds"``) is declined with ``<code>`` whatever the card.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

from adapters.gateways.sandbox_book import MemorySandboxBook, SandboxBook, SandboxTransaction
from application.ports import CardRejected, GatewayOutcome
from domain.customer import CardDetails

# Stripe test card number → (behaviour, decline code or None).
TEST_CARD_BEHAVIOURS: dict[str, str] = {
    "4242424242424242": "succeeds",
    "5555555555554444": "succeeds",
    "4000000000000002": "generic_decline",
    "4000000000009995": "insufficient_funds",
    "4000000000000069": "expired_card",
    "4000000000000127": "incorrect_cvc",
    "4000000000000259": "succeeds",  # the dispute card: charged, then disputed by staff
    "4012888888881881": "generic_decline",
    "4000000000009987": "lost_card",
    "4000000000009979": "stolen_card",
    "4100000000000019": "fraudulent",
    "4000000000000911": "timeout",
}

# An account id ending with this and a decline code declines every card transaction with it.
ACCOUNT_DECLINE_MARK = "+decline_"

DECLINE_MESSAGES = {
    "generic_decline": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
    "expired_card": "Your card has expired.",
    "incorrect_cvc": "Your card's security code is incorrect.",
    "lost_card": "Your card was declined.",
    "stolen_card": "Your card was declined.",
    "fraudulent": "Your card was declined.",
    "charge_not_found": "No succeeded charge with this id.",
    "currency_mismatch": "A refund is in the charge's currency.",
    "amount_too_large": "The amount exceeds what is left of the transaction.",
    "not_an_authorization": "Only an authorization can be captured or voided.",
    "authorization_already_used": "The authorization was already captured or voided.",
}


def luhn_valid(number: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(number)):
        digit = ord(char) - 48
        if index % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def card_brand(number: str) -> str:
    """The card network, from the issuer identification number ranges."""
    prefix2, prefix4, prefix6 = int(number[:2]), int(number[:4]), int(number[:6])
    if number[0] == "4":
        return "visa"
    if 51 <= prefix2 <= 55 or 222100 <= prefix6 <= 272099:
        return "mastercard"
    if prefix2 in (34, 37):
        return "amex"
    if prefix4 == 6011 or prefix2 == 65 or 644 <= int(number[:3]) <= 649:
        return "discover"
    if 3528 <= prefix4 <= 3589:
        return "jcb"
    if prefix2 in (36, 38, 39) or 300 <= int(number[:3]) <= 305:
        return "diners"
    if prefix2 == 62:
        return "unionpay"
    return "unknown"


class SandboxVault:
    """Tokenises cards without keeping them."""

    def __init__(self, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._now = now

    def tokenize(
        self, *, card_number: str, exp_month: int, exp_year: int, cvc: str | None
    ) -> CardDetails:
        number = card_number.replace(" ", "").replace("-", "")
        if (
            not (number.isascii() and number.isdigit())
            or not 12 <= len(number) <= 19
            or not luhn_valid(number)
        ):
            raise CardRejected("the card number is not valid", param="card_number")
        if cvc is not None and (not (cvc.isascii() and cvc.isdigit()) or len(cvc) not in (3, 4)):
            raise CardRejected("the security code has 3 or 4 digits", param="cvc")
        if not 1 <= exp_month <= 12:
            raise CardRejected("the expiry month is 1 to 12", param="exp_month")
        today = self._now()
        if (exp_year, exp_month) < (today.year, today.month) or exp_year > today.year + 50:
            raise CardRejected("the card's expiry date is not valid", param="exp_year")
        behaviour = TEST_CARD_BEHAVIOURS.get(number, "succeeds")
        return CardDetails(
            token=f"tok_sandbox_{behaviour}_{secrets.token_hex(8)}",
            brand=card_brand(number),
            last4=number[-4:],
            bin=number[:6],
            exp_month=exp_month,
            exp_year=exp_year,
        )

    def updated_card(self, card: CardDetails) -> CardDetails | None:
        """The sandbox's account updater, deterministic from the card number (which the
        token's behaviour stands for): a lost, stolen or fraudulent card's account is closed
        (None); any other card is reissued with the same number four years later — and the
        expired test card (``4000000000000069``) comes back as a good card."""
        behaviour = card.token.removeprefix("tok_sandbox_").rsplit("_", 1)[0]
        if behaviour in ("lost_card", "stolen_card", "fraudulent"):
            return None
        if behaviour == "expired_card":
            behaviour = "succeeds"
        return CardDetails(
            token=f"tok_sandbox_{behaviour}_{secrets.token_hex(8)}",
            brand=card.brand,
            last4=card.last4,
            bin=card.bin,
            exp_month=card.exp_month,
            exp_year=card.exp_year + 4,
        )


class SandboxGateway:
    """A processor with its own books: approves or declines from the token's behaviour.

    Every charge and refund it executes is kept in its ``SandboxBook`` (what a processor's
    dashboard shows); a repeated idempotency key returns the original transaction, never a new
    one. Reconciliation and tests compare the ledger against these books.
    """

    name = "sandbox"

    def __init__(self, book: SandboxBook | None = None, now: Callable[[], datetime] | None = None):
        self.book: SandboxBook = book if book is not None else MemorySandboxBook()
        self._now = now or (lambda: datetime.now(UTC))

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
        return self._card_transaction(
            "charge", account_id, token, amount_minor, currency, idempotency_key, reference
        )

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
        return self._card_transaction(
            "authorization", account_id, token, amount_minor, currency, idempotency_key, reference
        )

    def _card_transaction(
        self,
        kind: str,
        account_id: str,
        token: str,
        amount_minor: int,
        currency: str,
        idempotency_key: UUID,
        reference: str,
    ) -> GatewayOutcome:
        behaviour = account_decline_code(account_id) or _behaviour(token)
        succeeds = behaviour in ("succeeds", "timeout")
        charge = SandboxTransaction(
            id=_transaction_id("ch" if kind == "charge" else "au", idempotency_key),
            account_id=account_id,
            kind=kind,
            status="succeeded" if succeeds else "declined",
            idempotency_key=idempotency_key,
            amount_minor=amount_minor,
            currency=currency,
            reference=reference,
            decline_code=None if succeeds else behaviour,
            charge_id=None,
            created_at=self._now(),
        )
        transaction = self.book.add_charge(charge)
        if behaviour == "timeout" and transaction is charge:
            # Charged, and the answer lost on the way back (only the first time).
            raise TimeoutError("the sandbox processor charged but its answer was lost")
        return _outcome(transaction)

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
        def refusal(auth: SandboxTransaction, done: list[SandboxTransaction]) -> str | None:
            if auth.kind != "authorization":
                return "not_an_authorization"
            if done:
                return "authorization_already_used"  # captured once, or voided
            return "amount_too_large" if amount_minor > auth.amount_minor else None

        return self._follow_up(
            "capture",
            account_id,
            transaction_id,
            amount_minor,
            currency,
            idempotency_key,
            reference,
            refusal,
        )

    def void(
        self, *, account_id: str, transaction_id: str, idempotency_key: UUID, reference: str
    ) -> GatewayOutcome:
        def refusal(auth: SandboxTransaction, done: list[SandboxTransaction]) -> str | None:
            if auth.kind != "authorization":
                return "not_an_authorization"
            return "authorization_already_used" if done else None

        return self._follow_up(
            "void", account_id, transaction_id, 0, None, idempotency_key, reference, refusal
        )

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
        def refusal(charge: SandboxTransaction, done: list[SandboxTransaction]) -> str | None:
            if charge.kind not in ("charge", "capture"):
                return "charge_not_found"
            refunded_minor = sum(t.amount_minor for t in done if t.kind == "refund")
            return (
                "amount_too_large" if amount_minor > charge.amount_minor - refunded_minor else None
            )

        return self._follow_up(
            "refund",
            account_id,
            transaction_id,
            amount_minor,
            currency,
            idempotency_key,
            reference,
            refusal,
        )

    def status(self, *, account_id: str, idempotency_key: UUID) -> GatewayOutcome | None:
        transaction = self.book.find(idempotency_key)
        if transaction is None or transaction.account_id != account_id:
            return None
        return _outcome(transaction)

    def _follow_up(
        self,
        kind: str,
        account_id: str,
        parent_id: str,
        amount_minor: int,
        currency: str | None,
        idempotency_key: UUID,
        reference: str,
        refusal: Callable[[SandboxTransaction, list[SandboxTransaction]], str | None],
    ) -> GatewayOutcome:
        """A capture, void or refund of ``parent_id``, decided while the parent is locked."""

        def build(
            parent: SandboxTransaction | None, done: list[SandboxTransaction]
        ) -> SandboxTransaction:
            if parent is None or parent.account_id != account_id or parent.status != "succeeded":
                decline_code: str | None = "charge_not_found"
            elif currency is not None and parent.currency != currency:
                decline_code = "currency_mismatch"
            else:
                decline_code = refusal(parent, done)
            return SandboxTransaction(
                id=_transaction_id(kind[:2], idempotency_key),
                account_id=account_id,
                kind=kind,
                status="declined" if decline_code else "succeeded",
                idempotency_key=idempotency_key,
                amount_minor=amount_minor,
                currency=currency or (parent.currency if parent else ""),
                reference=reference,
                decline_code=decline_code,
                charge_id=parent_id,
                created_at=self._now(),
            )

        return _outcome(self.book.add_follow_up(idempotency_key, parent_id, build))


def _transaction_id(prefix: str, idempotency_key: UUID) -> str:
    return f"{prefix}_sandbox_" + hashlib.sha256(idempotency_key.bytes).hexdigest()[:24]


def _outcome(transaction: SandboxTransaction) -> GatewayOutcome:
    if transaction.status == "succeeded":
        return GatewayOutcome(succeeded=True, transaction_id=transaction.id)
    code = transaction.decline_code or "generic_decline"
    return GatewayOutcome(
        succeeded=False,
        transaction_id=transaction.id,
        decline_code=code,
        message=DECLINE_MESSAGES.get(code, "The transaction was declined."),
    )


def account_decline_code(account_id: str) -> str | None:
    """The decline injected for every card transaction of this account, if any."""
    _, mark, code = account_id.rpartition(ACCOUNT_DECLINE_MARK)
    return code if mark and code else None


def _behaviour(token: str) -> str:
    prefix = "tok_sandbox_"
    if not token.startswith(prefix):
        return "generic_decline"
    behaviour = token[len(prefix) :].rsplit("_", 1)[0]
    known = behaviour in ("succeeds", "timeout") or behaviour in DECLINE_MESSAGES
    return behaviour if known else "succeeds"
