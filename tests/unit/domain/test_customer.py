"""The Customer aggregate: registration rules and payment methods kept as vault tokens."""

from __future__ import annotations

from uuid import uuid4

import pytest

from domain.countries import COUNTRY_CODES, UnknownCountry, validate_country
from domain.customer import (
    CardDetails,
    Customer,
    InvalidEmail,
    PaymentMethodAlreadyAttached,
    PaymentMethodNotFound,
)
from domain.errors import InvalidInput
from domain.money import UnknownCurrency

CARD = CardDetails(
    token="tok_sandbox_succeeds_0123456789abcdef",
    brand="visa",
    last4="4242",
    bin="424242",
    exp_month=12,
    exp_year=2030,
)


def register(**overrides: str) -> Customer:
    fields = {
        "tenant_id": "tenant-a",
        "email": "ada@example.com",
        "name": "Ada Lovelace",
        "country": "GB",
        "currency": "GBP",
        **overrides,
    }
    return Customer.register(**fields)


def test_registering_a_customer_keeps_the_trimmed_email_and_name() -> None:
    customer = register(email="  ada@example.com ", name=" Ada Lovelace ")

    assert customer.email == "ada@example.com"
    assert customer.name == "Ada Lovelace"
    assert customer.country == "GB"
    assert customer.currency == "GBP"
    assert customer.tenant_id == "tenant-a"
    assert customer.payment_methods == {}


@pytest.mark.parametrize(
    "email",
    [
        "",
        "   ",
        "ada",
        "ada@example",
        "@example.com",
        "ada@@example.com",
        "ada lovelace@example.com",
        "ada@exa mple.com",
        "a" * 65 + "@example.com",
        "ada@" + "e" * 250 + ".com",
    ],
)
def test_registering_with_an_invalid_email_raises_invalid_email(email: str) -> None:
    with pytest.raises(InvalidEmail) as raised:
        register(email=email)

    assert raised.value.param == "email"
    assert raised.value.code == "invalid_email"


def test_a_64_character_local_part_is_a_valid_email() -> None:
    assert register(email="a" * 64 + "@example.com").email.startswith("a" * 64)


@pytest.mark.parametrize("name", ["", "   ", "n" * 201])
def test_registering_with_an_empty_or_overlong_name_raises_invalid_input(name: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        register(name=name)

    assert raised.value.param == "name"


@pytest.mark.parametrize("country", ["XX", "gb", "GBR", "UK", ""])
def test_registering_in_an_unknown_country_raises_unknown_country(country: str) -> None:
    with pytest.raises(UnknownCountry) as raised:
        register(country=country)

    assert raised.value.param == "country"
    assert raised.value.code == "unknown_country"


def test_the_country_list_is_iso_3166_alpha_2() -> None:
    assert len(COUNTRY_CODES) == 249
    assert validate_country("US") == "US"
    with pytest.raises(UnknownCountry):
        validate_country(None)  # type: ignore[arg-type]


def test_registering_with_an_unknown_currency_raises_unknown_currency() -> None:
    with pytest.raises(UnknownCurrency):
        register(currency="GBX")


def test_attaching_a_payment_method_keeps_the_token_and_card_details() -> None:
    customer = register()
    payment_method_id = uuid4()

    customer.attach_payment_method(payment_method_id, CARD)

    assert customer.payment_method(payment_method_id) == {
        "id": str(payment_method_id),
        "token": CARD.token,
        "brand": "visa",
        "last4": "4242",
        "bin": "424242",
        "exp_month": 12,
        "exp_year": 2030,
    }


def test_a_payment_method_can_be_looked_up_by_its_id_as_text() -> None:
    customer = register()
    payment_method_id = uuid4()
    customer.attach_payment_method(payment_method_id, CARD)

    assert customer.payment_method(str(payment_method_id))["last4"] == "4242"


def test_attaching_the_same_payment_method_twice_raises_already_attached() -> None:
    customer = register()
    payment_method_id = uuid4()
    customer.attach_payment_method(payment_method_id, CARD)
    version = customer.version

    with pytest.raises(PaymentMethodAlreadyAttached):
        customer.attach_payment_method(payment_method_id, CARD)
    assert customer.version == version


def test_looking_up_an_unknown_payment_method_raises_payment_method_not_found() -> None:
    customer = register()
    customer.attach_payment_method(uuid4(), CARD)

    with pytest.raises(PaymentMethodNotFound) as raised:
        customer.payment_method(uuid4())

    assert raised.value.param == "payment_method_id"


def test_a_customer_rebuilt_from_its_events_has_the_same_payment_methods() -> None:
    customer = register()
    customer.attach_payment_method(uuid4(), CARD)
    customer.attach_payment_method(uuid4(), CARD)

    rebuilt = None
    for event in customer.collect_events():
        rebuilt = event.mutate(rebuilt)

    assert rebuilt is not None
    assert rebuilt.payment_methods == customer.payment_methods
    assert rebuilt.email == customer.email
