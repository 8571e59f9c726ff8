"""FX rates and conversion between currencies' minor units.

A rate is ``quote`` units per one ``base`` unit on a day (``EUR``/``USD`` 1.0842: one euro buys
1.0842 dollars), a ``Decimal`` at the edges and an exact ``Fraction`` inside: a conversion rounds
once, half to even, to the target currency's minor unit. Converting between two currencies uses
their own pair, its inverse, or both currencies' euro rates (the ECB publishes euro rates).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from fractions import Fraction
from typing import Any

from domain.errors import InvalidInput
from domain.money import CURRENCY_EXPONENTS

EURO = "EUR"
RATE_DIGITS_MAX = 18  # significant digits a rate may have
RATE_MAX = Decimal(10) ** 9


class InvalidFxRate(InvalidInput):
    code = "invalid_fx_rate"


@dataclass(frozen=True, slots=True)
class FxRate:
    day: date
    base: str
    quote: str
    rate: Decimal

    def as_dict(self) -> dict[str, Any]:
        return {"date": self.day, "base": self.base, "quote": self.quote, "rate": str(self.rate)}


def validated_rate(day: date, base: str, quote: str, rate: Decimal) -> FxRate:
    """An FX rate; raises ``InvalidFxRate`` for an unknown currency, a pair of one currency, or a
    rate that is not a positive decimal below 10^9 with at most 18 significant digits."""
    for name, code in (("base", base), ("quote", quote)):
        if code not in CURRENCY_EXPONENTS:
            raise InvalidFxRate(f"{name} is not an ISO 4217 currency code", param=name)
    if base == quote:
        raise InvalidFxRate("a rate converts between two different currencies", param="quote")
    if not rate.is_finite() or rate <= 0 or rate >= RATE_MAX:
        raise InvalidFxRate(f"a rate is a positive decimal below {RATE_MAX}", param="rate")
    if len(rate.normalize().as_tuple().digits) > RATE_DIGITS_MAX:
        raise InvalidFxRate(
            f"a rate has at most {RATE_DIGITS_MAX} significant digits", param="rate"
        )
    return FxRate(day, base, quote, rate)


class FxRateMissing(InvalidInput):
    """No rate converts a currency with MRR to the report's currency on a month's first day."""

    code = "fx_rate_missing"

    def __init__(self, currency: str, target: str, month: date) -> None:
        super().__init__(
            f"no FX rate from {currency} to {target} was published on or before "
            f"{month.isoformat()} (needed for {month:%Y-%m})",
            param="currency",
        )
        self.currency, self.target, self.month = currency, target, month


def cross_rate(
    quotes: Mapping[tuple[str, str], Decimal], source: str, target: str
) -> Fraction | None:
    """Units of ``target`` per unit of ``source`` from rates keyed ``(base, quote)`` (quote
    units per base unit): the pair itself, its inverse, or across the euro. None if unknown."""

    def direct(base: str, quote: str) -> Fraction | None:
        if base == quote:
            return Fraction(1)
        if (base, quote) in quotes:
            return Fraction(quotes[(base, quote)])
        if (quote, base) in quotes and quotes[(quote, base)]:
            return 1 / Fraction(quotes[(quote, base)])
        return None

    rate = direct(source, target)
    if rate is None:
        to_source, to_target = direct(EURO, source), direct(EURO, target)
        if to_source and to_target is not None:
            rate = to_target / to_source
    return rate


def convert_minor(amount_minor: int, source: str, target: str, rate: Fraction) -> int:
    """``amount_minor`` of ``source`` in minor units of ``target``, exactly, rounded half to even
    (the one rounding rule of every conversion; exponents differ: JPY 0, USD 2, KWD 3)."""
    if source == target:
        return amount_minor
    scale = Fraction(10) ** (CURRENCY_EXPONENTS[target] - CURRENCY_EXPONENTS[source])
    return round(amount_minor * rate * scale)
