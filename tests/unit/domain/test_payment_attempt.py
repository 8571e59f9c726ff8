"""The PaymentAttempt aggregate: one gateway request, resolved exactly once."""

from __future__ import annotations

from uuid import uuid4

import pytest

from domain.payment_attempt import (
    HARD_DECLINE_CODES,
    AttemptAlreadyResolved,
    AttemptStatus,
    PaymentAttempt,
    is_hard_decline,
)


def request_attempt() -> PaymentAttempt:
    return PaymentAttempt(
        tenant_id="tenant-a",
        order_id=uuid4(),
        payment_method_id=uuid4(),
        kind="purchase",
        gateway="sandbox",
        amount_minor=1999,
        currency="USD",
    )


def test_a_new_attempt_is_requested_and_unresolved() -> None:
    attempt = request_attempt()

    assert attempt.status is AttemptStatus.REQUESTED
    assert attempt.transaction_id is None
    assert attempt.decline_code is None
    assert attempt.hard_decline is False
    assert (attempt.amount_minor, attempt.currency) == (1999, "USD")


def test_an_approved_attempt_succeeds_with_the_gateway_transaction_id() -> None:
    attempt = request_attempt()

    attempt.succeed(transaction_id="ch_123")

    assert attempt.status is AttemptStatus.SUCCEEDED
    assert attempt.transaction_id == "ch_123"


def test_an_expired_card_is_a_hard_decline() -> None:
    attempt = request_attempt()

    attempt.decline(
        decline_code="expired_card", message="Your card has expired.", transaction_id="ch_1"
    )

    assert attempt.status is AttemptStatus.DECLINED
    assert attempt.decline_code == "expired_card"
    assert attempt.hard_decline is True
    assert attempt.transaction_id == "ch_1"


def test_insufficient_funds_is_a_soft_decline() -> None:
    attempt = request_attempt()

    attempt.decline(decline_code="insufficient_funds", message="", transaction_id=None)

    assert attempt.status is AttemptStatus.DECLINED
    assert attempt.hard_decline is False


@pytest.mark.parametrize(
    ("decline_code", "hard"),
    [
        ("expired_card", True),
        ("stolen_card", True),
        ("lost_card", True),
        ("fraudulent", True),
        ("incorrect_cvc", True),
        ("insufficient_funds", False),
        ("generic_decline", False),
        ("processing_error", False),
    ],
)
def test_hard_declines_are_the_ones_never_to_retry(decline_code: str, hard: bool) -> None:
    assert is_hard_decline(decline_code) is hard
    assert (decline_code in HARD_DECLINE_CODES) is hard


@pytest.mark.parametrize(
    "resolve_first",
    [
        lambda attempt: attempt.succeed(transaction_id="ch_1"),
        lambda attempt: attempt.decline(
            decline_code="generic_decline", message="", transaction_id=None
        ),
    ],
    ids=["succeeded", "declined"],
)
@pytest.mark.parametrize(
    "resolve_again",
    [
        lambda attempt: attempt.succeed(transaction_id="ch_2"),
        lambda attempt: attempt.decline(
            decline_code="insufficient_funds", message="", transaction_id=None
        ),
    ],
    ids=["succeed", "decline"],
)
def test_resolving_an_attempt_twice_raises_attempt_already_resolved(
    resolve_first, resolve_again
) -> None:
    attempt = request_attempt()
    resolve_first(attempt)
    before = (attempt.version, attempt.status, attempt.transaction_id, attempt.decline_code)

    with pytest.raises(AttemptAlreadyResolved) as raised:
        resolve_again(attempt)

    assert raised.value.code == "attempt_already_resolved"
    assert (attempt.version, attempt.status, attempt.transaction_id, attempt.decline_code) == before
