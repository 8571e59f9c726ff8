"""Money: an integer count of a currency's minor units, and the ISO 4217 table of exponents.

Floats never hold money. Sums are only defined within one currency; mixing currencies raises
``CurrencyMismatch``. ``Decimal`` appears only at the edges (formatting major units).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from domain.errors import InvalidInput

# ISO 4217 active codes with their minor-unit exponents. Most currencies use 2; the exceptions
# are listed explicitly so that the table reads as the standard does.
_EXPONENT_0 = [
    "BIF",
    "CLP",
    "DJF",
    "GNF",
    "ISK",
    "JPY",
    "KMF",
    "KRW",
    "PYG",
    "RWF",
    "UGX",
    "UYI",
    "VND",
    "VUV",
    "XAF",
    "XOF",
    "XPF",
]
_EXPONENT_3 = ["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"]
_EXPONENT_4 = ["CLF", "UYW"]
_EXPONENT_2 = [
    "AED",
    "AFN",
    "ALL",
    "AMD",
    "ANG",
    "AOA",
    "ARS",
    "AUD",
    "AWG",
    "AZN",
    "BAM",
    "BBD",
    "BDT",
    "BGN",
    "BMD",
    "BND",
    "BOB",
    "BOV",
    "BRL",
    "BSD",
    "BTN",
    "BWP",
    "BYN",
    "BZD",
    "CAD",
    "CDF",
    "CHE",
    "CHF",
    "CHW",
    "CNY",
    "COP",
    "COU",
    "CRC",
    "CUP",
    "CVE",
    "CZK",
    "DKK",
    "DOP",
    "DZD",
    "EGP",
    "ERN",
    "ETB",
    "EUR",
    "FJD",
    "FKP",
    "GBP",
    "GEL",
    "GHS",
    "GIP",
    "GMD",
    "GTQ",
    "GYD",
    "HKD",
    "HNL",
    "HTG",
    "HUF",
    "IDR",
    "ILS",
    "INR",
    "IRR",
    "JMD",
    "KES",
    "KGS",
    "KHR",
    "KPW",
    "KYD",
    "KZT",
    "LAK",
    "LBP",
    "LKR",
    "LRD",
    "LSL",
    "MAD",
    "MDL",
    "MGA",
    "MKD",
    "MMK",
    "MNT",
    "MOP",
    "MRU",
    "MUR",
    "MVR",
    "MWK",
    "MXN",
    "MXV",
    "MYR",
    "MZN",
    "NAD",
    "NGN",
    "NIO",
    "NOK",
    "NPR",
    "NZD",
    "PAB",
    "PEN",
    "PGK",
    "PHP",
    "PKR",
    "PLN",
    "QAR",
    "RON",
    "RSD",
    "RUB",
    "SAR",
    "SBD",
    "SCR",
    "SDG",
    "SEK",
    "SGD",
    "SHP",
    "SLE",
    "SOS",
    "SRD",
    "SSP",
    "STN",
    "SVC",
    "SYP",
    "SZL",
    "THB",
    "TJS",
    "TMT",
    "TOP",
    "TRY",
    "TTD",
    "TWD",
    "TZS",
    "UAH",
    "USD",
    "USN",
    "UYU",
    "UZS",
    "VED",
    "VES",
    "WST",
    "XCD",
    "YER",
    "ZAR",
    "ZMW",
    "ZWG",
]

CURRENCY_EXPONENTS: dict[str, int] = {
    **{code: 0 for code in _EXPONENT_0},
    **{code: 2 for code in _EXPONENT_2},
    **{code: 3 for code in _EXPONENT_3},
    **{code: 4 for code in _EXPONENT_4},
}

# No single charge, refund or order total may exceed this many minor units. It is far above any
# real order (10^13 dollars) and keeps every sum comfortably inside a signed 64-bit column.
AMOUNT_MINOR_MAX = 10**15


class UnknownCurrency(InvalidInput):
    code = "unknown_currency"


class InvalidAmount(InvalidInput):
    code = "invalid_amount"


class CurrencyMismatch(InvalidInput):
    code = "currency_mismatch"


def validate_currency(currency: str, *, param: str = "currency") -> str:
    """Return the ISO 4217 code; raise ``UnknownCurrency`` for anything else."""
    if not isinstance(currency, str) or currency not in CURRENCY_EXPONENTS:
        raise UnknownCurrency("this is not an ISO 4217 currency code", param=param)
    return currency


def validate_amount_minor(
    amount_minor: int, *, param: str = "amount_minor", allow_zero: bool = True
) -> int:
    """Return the amount; raise ``InvalidAmount`` if negative, above the maximum or not an int."""
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise InvalidAmount("amounts are integers of minor units", param=param)
    if amount_minor < 0 or (amount_minor == 0 and not allow_zero):
        qualifier = "negative" if amount_minor < 0 else "zero"
        raise InvalidAmount(f"the amount may not be {qualifier}", param=param)
    if amount_minor > AMOUNT_MINOR_MAX:
        raise InvalidAmount(f"the amount exceeds {AMOUNT_MINOR_MAX} minor units", param=param)
    return amount_minor


@dataclass(frozen=True, slots=True)
class Money:
    """An amount of one currency in integer minor units (cents, yen, fils)."""

    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        validate_currency(self.currency)
        if isinstance(self.amount_minor, bool) or not isinstance(self.amount_minor, int):
            raise InvalidAmount("amounts are integers of minor units", param="amount_minor")

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    @property
    def exponent(self) -> int:
        return CURRENCY_EXPONENTS[self.currency]

    def _same_currency(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatch(
                f"cannot combine {self.currency} with {other.currency}", param="currency"
            )

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount_minor + other.amount_minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount_minor - other.amount_minor, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount_minor < other.amount_minor

    def __le__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount_minor <= other.amount_minor

    def __mul__(self, factor: int) -> Money:
        if isinstance(factor, bool) or not isinstance(factor, int):
            raise TypeError("money multiplies by integers only")
        return Money(self.amount_minor * factor, self.currency)

    def split(self, parts: int) -> list[Money]:
        """Split into ``parts`` amounts that add up exactly.

        Remainder rule: the first ``amount_minor % parts`` shares get one extra minor unit.
        """
        if parts <= 0:
            raise InvalidAmount("a split needs at least one part", param="parts")
        share, remainder = divmod(self.amount_minor, parts)
        return [Money(share + (1 if i < remainder else 0), self.currency) for i in range(parts)]

    def to_major(self) -> Decimal:
        """The amount in major units, for display at the edges only."""
        return Decimal(self.amount_minor).scaleb(-self.exponent)

    def __str__(self) -> str:
        return f"{self.to_major():.{self.exponent}f} {self.currency}"
