"""Card-scheme retry limits: how often one card (token) was sent to a gateway, per tenant.

The schemes fine merchants who retry a card too often: Visa allows 15 attempts per card in 30
days; Mastercard 10 in 30 days (its rule is for recurring payments; it is applied to every
Mastercard attempt here, the safe side). ``CardUsage`` counts attempts of one card (keyed by
``card_digest``, so re-attaching the card under a new vault token does not reset it) —
first attempts, cascades and retries alike — and refuses one more above the limit. It is saved
in the same transaction as the attempt's intent, and its version is checked at save: two
concurrent attempts of one card cannot both take the last allowed one.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidTransition

# Brand -> (attempts allowed, per window).
SCHEME_LIMITS: dict[str, tuple[int, timedelta]] = {
    "visa": (15, timedelta(days=30)),
    "mastercard": (10, timedelta(days=30)),
}
_WINDOW_LONGEST = max(window for _, window in SCHEME_LIMITS.values())
_NAMESPACE = uuid5(NAMESPACE_URL, "https://commerce-ledger/card-usage")


class CardAttemptLimitReached(InvalidTransition):
    """The card scheme's retry limit for this card is reached: no attempt is sent."""

    code = "card_attempt_limit_reached"


def card_digest(method: dict, owner: str) -> str:
    """A digest of what identifies the card itself (brand, BIN, last 4, expiry) for its
    ``owner`` (the customer), whatever vault token it was given: the same card attached twice is
    one card to the schemes. Two cards that share all of these are counted together (the safe
    side). Nothing here is secret: the fields are kept on the customer in clear."""
    identity = ":".join(
        [
            owner,
            *(str(method[field]) for field in ("brand", "bin", "last4", "exp_month", "exp_year")),
        ]
    )
    return hashlib.sha256(identity.encode()).hexdigest()


class CardUsage(Aggregate):
    """Recent attempts of one card of one tenant."""

    @staticmethod
    def create_id(tenant_id: str, token_hash: str) -> UUID:
        return uuid5(_NAMESPACE, f"{tenant_id}:{token_hash}")

    @event("Created")
    def __init__(self, *, tenant_id: str, token_hash: str):
        self.tenant_id = tenant_id
        self.token_hash = token_hash
        self.attempted_at: list[datetime] = []

    @classmethod
    def start(cls, tenant_id: str, card_hash: str) -> CardUsage:
        return cls(tenant_id=tenant_id, token_hash=card_hash)

    def attempts_within(self, window: timedelta, now: datetime) -> int:
        return sum(1 for moment in self.attempted_at if moment > now - window)

    def count_attempt(self, *, brand: str, attempt_id: UUID, at: datetime) -> None:
        """Count one more attempt of the card. Raises ``CardAttemptLimitReached``."""
        limit = SCHEME_LIMITS.get(brand)
        if limit is not None:
            allowed, window = limit
            if self.attempts_within(window, at) >= allowed:
                raise CardAttemptLimitReached(
                    f"{brand} allows {allowed} attempts per card in {window.days} days; "
                    "this card reached it",
                    param="payment.payment_method_id",
                )
        self._attempt_counted(brand=brand, attempt_id=attempt_id, at=at)

    @event("AttemptCounted")
    def _attempt_counted(self, *, brand: str, attempt_id: UUID, at: datetime) -> None:
        # Attempts older than the longest window never count again: the state stays small.
        self.attempted_at = [m for m in self.attempted_at if m > at - _WINDOW_LONGEST]
        self.attempted_at.append(at)
