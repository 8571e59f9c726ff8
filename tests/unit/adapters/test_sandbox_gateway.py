"""The sandbox vault and gateway: card checks, tokens without numbers, Stripe test-card outcomes."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from adapters.gateways.sandbox import (
    SandboxGateway,
    SandboxVault,
    account_decline_code,
    card_brand,
    luhn_valid,
)
from application.ports import CardRejected
from domain.gateway import tenant_account_id

TODAY = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)
EXP_YEAR = TODAY.year + 3


@pytest.fixture
def vault() -> SandboxVault:
    return SandboxVault(now=lambda: TODAY)


CHARGE = {"account_id": "acme", "reference": "order-1"}


def tokenize(vault: SandboxVault, card_number: str, **overrides) -> object:
    fields = {"exp_month": 12, "exp_year": EXP_YEAR, "cvc": "123", **overrides}
    return vault.tokenize(card_number=card_number, **fields)


# Card checks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        ("4242424242424242", True),
        ("5555555555554444", True),
        ("378282246310005", True),
        ("4242424242424241", False),
        ("4242424242424243", False),
        ("1234567812345678", False),
    ],
)
def test_luhn_check_accepts_only_numbers_with_a_correct_check_digit(
    number: str, valid: bool
) -> None:
    assert luhn_valid(number) is valid


@pytest.mark.parametrize(
    ("number", "brand"),
    [
        ("4242424242424242", "visa"),
        ("5555555555554444", "mastercard"),
        ("2223003122003222", "mastercard"),
        ("378282246310005", "amex"),
        ("371449635398431", "amex"),
        ("6011111111111117", "discover"),
        ("6445644564456445", "discover"),
        ("3566002020360505", "jcb"),
        ("30569309025904", "diners"),
        ("36227206271667", "diners"),
        ("6200000000000005", "unionpay"),
        ("9999999999999995", "unknown"),
    ],
)
def test_the_brand_is_detected_from_the_issuer_number_range(number: str, brand: str) -> None:
    assert card_brand(number) == brand


def test_tokenizing_a_card_returns_brand_last4_bin_and_expiry(vault: SandboxVault) -> None:
    card = tokenize(vault, "5555555555554444", exp_month=3, exp_year=EXP_YEAR)

    assert card.brand == "mastercard"
    assert card.last4 == "4444"
    assert card.bin == "555555"
    assert (card.exp_month, card.exp_year) == (3, EXP_YEAR)


@pytest.mark.parametrize(
    "number",
    ["4242 4242 4242 4242", "4242-4242-4242-4242", "4242424242424242"],
)
def test_spaces_and_dashes_in_a_card_number_are_ignored(vault: SandboxVault, number: str) -> None:
    card = tokenize(vault, number)

    assert (card.brand, card.last4, card.bin) == ("visa", "4242", "424242")


@pytest.mark.parametrize(
    "number",
    [
        "4242424242424241",  # bad check digit
        "42424242424",  # too short
        "42424242424242424242",  # too long
        "4242abcd42424242",
        "",
    ],
)
def test_an_invalid_card_number_raises_card_rejected(vault: SandboxVault, number: str) -> None:
    with pytest.raises(CardRejected) as raised:
        tokenize(vault, number)

    assert raised.value.param == "card_number"
    assert raised.value.code == "invalid_card"


def test_a_card_that_expired_last_month_raises_card_rejected(vault: SandboxVault) -> None:
    with pytest.raises(CardRejected) as raised:
        tokenize(vault, "4242424242424242", exp_month=TODAY.month - 1, exp_year=TODAY.year)

    assert raised.value.param == "exp_year"


def test_a_card_that_expired_last_year_raises_card_rejected(vault: SandboxVault) -> None:
    with pytest.raises(CardRejected):
        tokenize(vault, "4242424242424242", exp_month=12, exp_year=TODAY.year - 1)


def test_a_card_expiring_this_month_is_still_accepted(vault: SandboxVault) -> None:
    card = tokenize(vault, "4242424242424242", exp_month=TODAY.month, exp_year=TODAY.year)

    assert card.exp_month == TODAY.month


def test_an_expiry_more_than_fifty_years_ahead_raises_card_rejected(vault: SandboxVault) -> None:
    with pytest.raises(CardRejected):
        tokenize(vault, "4242424242424242", exp_year=TODAY.year + 51)


@pytest.mark.parametrize("exp_month", [0, 13, -1])
def test_an_expiry_month_outside_1_to_12_raises_card_rejected(
    vault: SandboxVault, exp_month: int
) -> None:
    with pytest.raises(CardRejected) as raised:
        tokenize(vault, "4242424242424242", exp_month=exp_month)

    assert raised.value.param == "exp_month"


@pytest.mark.parametrize("cvc", ["", "12", "12345", "abc", "12a"])
def test_a_security_code_that_is_not_3_or_4_digits_raises_card_rejected(
    vault: SandboxVault, cvc: str
) -> None:
    with pytest.raises(CardRejected) as raised:
        tokenize(vault, "4242424242424242", cvc=cvc)

    assert raised.value.param == "cvc"


@pytest.mark.parametrize("cvc", [None, "123", "1234"])
def test_a_missing_or_well_formed_security_code_is_accepted(vault: SandboxVault, cvc) -> None:
    assert tokenize(vault, "4242424242424242", cvc=cvc).last4 == "4242"


@pytest.mark.parametrize("number", ["42424242424242\u06643", "\u00b2242424242424249"])
def test_a_card_number_with_non_ascii_digits_raises_card_rejected(
    vault: SandboxVault, number: str
) -> None:
    with pytest.raises(CardRejected):
        tokenize(vault, number)


# Tokens -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    ["4242424242424242", "4242 4242 4242 4242", "4000000000000002", "5555555555554444"],
)
def test_a_token_never_contains_the_card_number(vault: SandboxVault, number: str) -> None:
    digits = number.replace(" ", "")

    token = tokenize(vault, number).token

    assert token.startswith("tok_sandbox_")
    assert digits not in token
    assert digits[6:] not in token  # not even the part after the BIN


def test_each_tokenization_of_the_same_card_gives_a_new_token(vault: SandboxVault) -> None:
    tokens = {tokenize(vault, "4242424242424242").token for _ in range(5)}

    assert len(tokens) == 5


# Gateway outcomes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "succeeded", "decline_code"),
    [
        ("4242424242424242", True, None),
        ("5555555555554444", True, None),
        ("4000000000000002", False, "generic_decline"),
        ("4000000000009995", False, "insufficient_funds"),
        ("4000000000000069", False, "expired_card"),
        ("4000000000000127", False, "incorrect_cvc"),
        ("4012888888881881", False, "generic_decline"),
        ("4000000000009987", False, "lost_card"),
        ("4000000000009979", False, "stolen_card"),
        ("4100000000000019", False, "fraudulent"),
        ("4000000000000259", True, None),  # the dispute card: charged, disputed later
        ("4111111111111111", True, None),  # any other valid number succeeds
    ],
)
def test_each_stripe_test_card_gets_its_documented_outcome(
    vault: SandboxVault, number: str, succeeded: bool, decline_code: str | None
) -> None:
    token = tokenize(vault, number).token

    outcome = SandboxGateway().purchase(
        token=token, amount_minor=1000, currency="USD", idempotency_key=uuid4(), **CHARGE
    )

    assert outcome.succeeded is succeeded
    assert outcome.decline_code == decline_code
    assert outcome.transaction_id is not None
    assert outcome.transaction_id.startswith("ch_sandbox_")
    if not succeeded:
        assert outcome.message


def test_an_insufficient_funds_decline_says_so(vault: SandboxVault) -> None:
    token = tokenize(vault, "4000000000009995").token

    outcome = SandboxGateway().purchase(
        token=token, amount_minor=1000, currency="USD", idempotency_key=uuid4(), **CHARGE
    )

    assert outcome.message == "Your card has insufficient funds."


def test_a_token_from_another_vault_is_declined() -> None:
    outcome = SandboxGateway().purchase(
        token="tok_visa", amount_minor=1000, currency="USD", idempotency_key=uuid4(), **CHARGE
    )

    assert outcome.succeeded is False
    assert outcome.decline_code == "generic_decline"


def test_the_same_idempotency_key_gives_the_same_transaction_id(vault: SandboxVault) -> None:
    gateway = SandboxGateway()
    token = tokenize(vault, "4242424242424242").token
    key = UUID("12345678-1234-4234-8234-123456789abc")

    first = gateway.purchase(
        token=token, amount_minor=1000, currency="USD", idempotency_key=key, **CHARGE
    )
    second = gateway.purchase(
        token=token, amount_minor=1000, currency="USD", idempotency_key=key, **CHARGE
    )

    assert first == second


def test_different_idempotency_keys_give_different_transaction_ids(vault: SandboxVault) -> None:
    gateway = SandboxGateway()
    token = tokenize(vault, "4242424242424242").token

    first = gateway.purchase(
        token=token, amount_minor=1000, currency="USD", idempotency_key=uuid4(), **CHARGE
    )
    second = gateway.purchase(
        token=token, amount_minor=1000, currency="USD", idempotency_key=uuid4(), **CHARGE
    )

    assert first.transaction_id != second.transaction_id


def test_the_sandbox_gateway_is_named_sandbox() -> None:
    assert SandboxGateway.name == "sandbox"


def test_the_timeout_card_charges_but_loses_the_first_answer(vault: SandboxVault) -> None:
    gateway = SandboxGateway()
    token = tokenize(vault, "4000000000000911").token
    key = uuid4()
    request = {"token": token, "amount_minor": 1000, "currency": "USD", "idempotency_key": key}

    with pytest.raises(TimeoutError):
        gateway.purchase(**request, **CHARGE)
    status = gateway.status(account_id="acme", idempotency_key=key)
    repeat = gateway.purchase(**request, **CHARGE)

    assert status is not None and status.succeeded
    assert repeat == status
    assert [t.status for _, t in gateway.book.transactions("acme")] == ["succeeded"]


def test_an_account_marked_with_a_decline_code_declines_every_card(vault: SandboxVault) -> None:
    gateway = SandboxGateway()
    token = tokenize(vault, "4242424242424242").token
    declining = {"account_id": "eu+decline_insufficient_funds", "reference": "order-1"}

    declined = gateway.purchase(
        token=token, amount_minor=1000, currency="USD", idempotency_key=uuid4(), **declining
    )
    approved = gateway.purchase(
        token=token, amount_minor=1000, currency="USD", idempotency_key=uuid4(), **CHARGE
    )

    assert (declined.succeeded, declined.decline_code) == (False, "insufficient_funds")
    assert approved.succeeded
    assert len(gateway.book.transactions("eu+decline_insufficient_funds")) == 1


def test_a_tenant_scoped_account_keeps_its_decline_mark_and_its_own_books(
    vault: SandboxVault,
) -> None:
    gateway = SandboxGateway()
    token = tokenize(vault, "4242424242424242").token
    scoped = tenant_account_id("acme", "sandbox", "eu+decline_do_not_honor")

    declined = gateway.purchase(
        token=token,
        amount_minor=1000,
        currency="USD",
        idempotency_key=uuid4(),
        account_id=scoped,
        reference="order-1",
    )

    assert scoped == "acme/eu+decline_do_not_honor"
    assert account_decline_code(scoped) == "do_not_honor"
    assert (declined.succeeded, declined.decline_code) == (False, "do_not_honor")
    assert [t.account_id for _, t in gateway.book.transactions(["acme", scoped])] == [scoped]
    assert gateway.book.transactions("eu+decline_do_not_honor") == []
