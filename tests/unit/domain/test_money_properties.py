"""Properties of Money: splits never create or lose a minor unit; sums stay in one currency."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.money import AMOUNT_MINOR_MAX, CURRENCY_EXPONENTS, CurrencyMismatch, Money

FAST = settings(max_examples=100, deadline=None)

currencies = st.sampled_from(sorted(CURRENCY_EXPONENTS))
amounts_minor = st.integers(min_value=-AMOUNT_MINOR_MAX, max_value=AMOUNT_MINOR_MAX)
parts_counts = st.integers(min_value=1, max_value=500)


@FAST
@given(amount_minor=amounts_minor, currency=currencies, parts=parts_counts)
def test_a_split_of_any_amount_into_any_parts_sums_exactly(
    amount_minor: int, currency: str, parts: int
) -> None:
    shares = Money(amount_minor, currency).split(parts)

    assert len(shares) == parts
    assert sum(share.amount_minor for share in shares) == amount_minor
    assert {share.currency for share in shares} == {currency}


@FAST
@given(amount_minor=amounts_minor, currency=currencies, parts=parts_counts)
def test_the_shares_of_a_split_differ_by_at_most_one_minor_unit_largest_first(
    amount_minor: int, currency: str, parts: int
) -> None:
    shares = [share.amount_minor for share in Money(amount_minor, currency).split(parts)]

    assert max(shares) - min(shares) <= 1
    assert shares == sorted(shares, reverse=True)
    # The remainder rule: exactly `amount % parts` shares carry the extra minor unit.
    assert shares.count(max(shares)) == (amount_minor % parts or parts)


@FAST
@given(a=amounts_minor, b=amounts_minor, currency=currencies)
def test_adding_then_subtracting_the_same_money_gives_back_the_original(
    a: int, b: int, currency: str
) -> None:
    first, second = Money(a, currency), Money(b, currency)

    assert first + second == second + first
    assert (first + second) - second == first
    assert (first + second).amount_minor == a + b


@FAST
@given(pair=st.lists(currencies, min_size=2, max_size=2, unique=True), amount_minor=amounts_minor)
def test_any_two_different_currencies_never_combine(pair: list[str], amount_minor: int) -> None:
    currency, other = pair
    with pytest.raises(CurrencyMismatch):
        Money(amount_minor, currency) + Money(amount_minor, other)


@FAST
@given(amount_minor=amounts_minor, currency=currencies)
def test_major_units_scaled_back_by_the_exponent_give_the_exact_minor_units(
    amount_minor: int, currency: str
) -> None:
    money = Money(amount_minor, currency)

    assert money.to_major().scaleb(money.exponent) == amount_minor
