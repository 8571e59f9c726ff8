"""Money: integer minor units, ISO 4217 exponents, one currency per sum, exact splits."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from decimal import Decimal

import pytest

from domain.errors import InvalidInput
from domain.money import (
    AMOUNT_MINOR_MAX,
    CURRENCY_EXPONENTS,
    CurrencyMismatch,
    InvalidAmount,
    Money,
    UnknownCurrency,
    validate_amount_minor,
    validate_currency,
)

# ISO 4217 exponents -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "exponent"),
    [
        ("JPY", 0),
        ("KRW", 0),
        ("CLP", 0),
        ("USD", 2),
        ("EUR", 2),
        ("GBP", 2),
        ("KWD", 3),
        ("BHD", 3),
        ("TND", 3),
        ("CLF", 4),
    ],
)
def test_each_currency_uses_its_iso_4217_exponent(currency: str, exponent: int) -> None:
    assert Money(1, currency).exponent == exponent
    assert CURRENCY_EXPONENTS[currency] == exponent


def test_yen_amounts_have_no_minor_units() -> None:
    yen = Money(1234, "JPY")

    assert yen.to_major() == Decimal("1234")
    assert str(yen) == "1234 JPY"


def test_dollar_amounts_have_two_decimal_places() -> None:
    dollars = Money(1234, "USD")

    assert dollars.to_major() == Decimal("12.34")
    assert str(dollars) == "12.34 USD"
    assert str(Money(5, "USD")) == "0.05 USD"


def test_kuwaiti_dinar_amounts_have_three_decimal_places() -> None:
    dinars = Money(1234, "KWD")

    assert dinars.to_major() == Decimal("1.234")
    assert str(dinars) == "1.234 KWD"


def test_every_currency_in_the_table_has_an_exponent_between_zero_and_four() -> None:
    assert len(CURRENCY_EXPONENTS) > 150
    assert set(CURRENCY_EXPONENTS.values()) == {0, 2, 3, 4}
    assert all(len(code) == 3 and code.isupper() for code in CURRENCY_EXPONENTS)


# Unknown currencies -----------------------------------------------------------------------


@pytest.mark.parametrize("currency", ["XYZ", "usd", "US", "USDT", "", None, 840])
def test_money_in_an_unknown_currency_raises_unknown_currency(currency: object) -> None:
    with pytest.raises(UnknownCurrency) as raised:
        Money(100, currency)  # type: ignore[arg-type]

    assert raised.value.code == "unknown_currency"
    assert raised.value.param == "currency"


def test_validate_currency_returns_a_known_code_and_names_the_blamed_parameter() -> None:
    assert validate_currency("EUR") == "EUR"
    with pytest.raises(UnknownCurrency) as raised:
        validate_currency("EURO", param="payment.currency")
    assert raised.value.param == "payment.currency"


# Invalid amounts --------------------------------------------------------------------------


@pytest.mark.parametrize("amount", [1.0, 0.5, Decimal("1"), "100", None, True, False])
def test_money_of_a_non_integer_amount_raises_invalid_amount(amount: object) -> None:
    with pytest.raises(InvalidAmount) as raised:
        Money(amount, "USD")  # type: ignore[arg-type]

    assert raised.value.code == "invalid_amount"
    assert isinstance(raised.value, InvalidInput)


@pytest.mark.parametrize("amount", [-1, -(10**15), AMOUNT_MINOR_MAX + 1, 10**30])
def test_validating_a_negative_or_absurd_amount_raises_invalid_amount(amount: int) -> None:
    with pytest.raises(InvalidAmount) as raised:
        validate_amount_minor(amount)

    assert raised.value.param == "amount_minor"


@pytest.mark.parametrize("amount", [1.0, 99.99, True, False, "5", None])
def test_validating_a_float_bool_or_text_amount_raises_invalid_amount(amount: object) -> None:
    with pytest.raises(InvalidAmount):
        validate_amount_minor(amount)  # type: ignore[arg-type]


def test_the_largest_allowed_amount_is_ten_to_the_fifteen_minor_units() -> None:
    assert AMOUNT_MINOR_MAX == 10**15
    assert validate_amount_minor(AMOUNT_MINOR_MAX) == AMOUNT_MINOR_MAX


def test_zero_is_a_valid_amount_unless_the_caller_forbids_it() -> None:
    assert validate_amount_minor(0) == 0
    with pytest.raises(InvalidAmount, match="zero"):
        validate_amount_minor(0, allow_zero=False)


def test_an_invalid_amount_names_the_parameter_the_caller_blamed() -> None:
    with pytest.raises(InvalidAmount) as raised:
        validate_amount_minor(-5, param="lines[2].unit_price_minor")

    assert raised.value.param == "lines[2].unit_price_minor"


# Arithmetic within one currency -----------------------------------------------------------


def test_adding_and_subtracting_money_of_one_currency_keeps_the_currency() -> None:
    total = Money(1050, "EUR") + Money(250, "EUR")

    assert total == Money(1300, "EUR")
    assert total - Money(300, "EUR") == Money(1000, "EUR")


def test_money_compares_by_amount_within_one_currency() -> None:
    assert Money(1, "USD") < Money(2, "USD")
    assert Money(2, "USD") <= Money(2, "USD")
    assert not Money(3, "USD") <= Money(2, "USD")


def test_multiplying_money_by_an_integer_scales_the_amount() -> None:
    assert Money(250, "USD") * 3 == Money(750, "USD")


@pytest.mark.parametrize("factor", [1.5, True, "2"])
def test_multiplying_money_by_anything_but_an_integer_raises_type_error(factor: object) -> None:
    with pytest.raises(TypeError):
        Money(250, "USD") * factor  # type: ignore[operator]


@pytest.mark.parametrize(
    "combine",
    [
        lambda a, b: a + b,
        lambda a, b: a - b,
        lambda a, b: a < b,
        lambda a, b: a <= b,
    ],
    ids=["add", "subtract", "less_than", "less_or_equal"],
)
def test_mixing_currencies_raises_currency_mismatch(combine) -> None:
    with pytest.raises(CurrencyMismatch) as raised:
        combine(Money(100, "USD"), Money(100, "EUR"))

    assert raised.value.code == "currency_mismatch"


def test_combining_money_with_a_plain_number_raises_type_error() -> None:
    with pytest.raises(TypeError):
        Money(100, "USD") + 100  # type: ignore[operator]


def test_money_of_different_currencies_is_never_equal() -> None:
    assert Money(100, "USD") != Money(100, "EUR")


def test_money_is_immutable() -> None:
    money = Money(100, "USD")

    with pytest.raises(FrozenInstanceError):
        money.amount_minor = 200  # type: ignore[misc]


def test_zero_money_has_no_minor_units() -> None:
    assert Money.zero("JPY") == Money(0, "JPY")


# Splits -----------------------------------------------------------------------------------


def test_splitting_gives_the_remainder_to_the_first_shares_one_unit_each() -> None:
    shares = Money(100, "USD").split(3)

    assert [share.amount_minor for share in shares] == [34, 33, 33]
    assert sum(share.amount_minor for share in shares) == 100


def test_splitting_a_few_units_into_many_parts_leaves_the_last_parts_empty() -> None:
    shares = Money(2, "JPY").split(5)

    assert [share.amount_minor for share in shares] == [1, 1, 0, 0, 0]
    assert all(share.currency == "JPY" for share in shares)


def test_splitting_an_even_amount_gives_equal_shares() -> None:
    assert Money(900, "KWD").split(3) == [Money(300, "KWD")] * 3


def test_splitting_into_one_part_returns_the_whole_amount() -> None:
    assert Money(12345, "USD").split(1) == [Money(12345, "USD")]


@pytest.mark.parametrize("parts", [0, -1])
def test_splitting_into_no_parts_raises_invalid_amount(parts: int) -> None:
    with pytest.raises(InvalidAmount) as raised:
        Money(100, "USD").split(parts)

    assert raised.value.param == "parts"
