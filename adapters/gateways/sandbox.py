"""The sandbox vault and gateway: deterministic, offline, driven by Stripe's public test cards.

The vault checks a card number (Luhn, brand by BIN range, expiry) and returns a token that names
the sandbox behaviour of the card, like Stripe's ``tok_chargeDeclined``. The number itself is
dropped here: it is not stored, logged or put in the token.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

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
    "4000000000000259": "succeeds",  # disputed later; disputes come with a later issue
    "4012888888881881": "generic_decline",
}

DECLINE_MESSAGES = {
    "generic_decline": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
    "expired_card": "Your card has expired.",
    "incorrect_cvc": "Your card's security code is incorrect.",
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


class SandboxGateway:
    """Approves or declines from the token's behaviour; the same idempotency key, same answer."""

    name = "sandbox"

    def purchase(
        self, *, token: str, amount_minor: int, currency: str, idempotency_key: UUID
    ) -> GatewayOutcome:
        transaction_id = "ch_sandbox_" + hashlib.sha256(idempotency_key.bytes).hexdigest()[:24]
        behaviour = _behaviour(token)
        if behaviour == "succeeds":
            return GatewayOutcome(succeeded=True, transaction_id=transaction_id)
        return GatewayOutcome(
            succeeded=False,
            transaction_id=transaction_id,
            decline_code=behaviour,
            message=DECLINE_MESSAGES.get(behaviour, "Your card was declined."),
        )


def _behaviour(token: str) -> str:
    prefix = "tok_sandbox_"
    if not token.startswith(prefix):
        return "generic_decline"
    behaviour = token[len(prefix) :].rsplit("_", 1)[0]
    return behaviour if behaviour == "succeeds" or behaviour in DECLINE_MESSAGES else "succeeds"
