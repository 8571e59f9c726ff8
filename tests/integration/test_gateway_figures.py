"""Gateway figures, the same contract in memory and on PostgreSQL: an outcome counts once,
volume per month and currency, recent outcomes after a reset, and concurrent records never fail."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from adapters.bootstrap import Services
from adapters.gateway_figures import MemoryGatewayFigures, PgGatewayFigures

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(params=["memory", "postgres"])
def figures(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryGatewayFigures()
        return
    services: Services = request.getfixturevalue("services")
    store = PgGatewayFigures(services.ledger.factory.datastore)  # type: ignore[attr-defined]
    store.create_tables()
    yield store


def record(figures: Any, gateway_id: str, approved: bool, **fields: Any) -> None:
    values = {
        "gateway_id": gateway_id,
        "attempt_id": uuid4(),
        "segment": "USD:visa",
        "approved": approved,
        "currency": "USD",
        "amount_minor": 100,
        "month": "2026-11",
        "at": T0,
        **fields,
    }
    figures.record(**values)


def test_an_outcome_counts_once_per_attempt(figures: Any) -> None:
    attempt_id = uuid4()
    for _ in range(3):
        record(figures, "g1", True, attempt_id=attempt_id)

    health = figures.health(["g1"], month="2026-11", since={}, outcomes_max=50)["g1"]

    assert health.approved_minor_by_currency == {"USD": 100}
    assert health.outcomes == (("USD:visa", True),)


def test_volume_is_per_month_and_currency_and_outcomes_are_the_latest_after_since(
    figures: Any,
) -> None:
    record(figures, "g1", True, currency="EUR", amount_minor=7)
    record(figures, "g1", True, month="2026-10", amount_minor=1000)
    record(figures, "g1", False, segment="USD:mastercard")
    record(figures, "g1", True, at=T0 + timedelta(hours=1))
    record(figures, "g2", True, amount_minor=5)

    both = figures.health(["g1", "g2", "g3"], month="2026-11", since={"g1": T0}, outcomes_max=50)
    latest_two = figures.health(["g1"], month="2026-11", since={}, outcomes_max=2)["g1"]

    assert both["g1"].approved_minor_by_currency == {"EUR": 7, "USD": 100}
    assert both["g1"].outcomes == (("USD:visa", True),)  # only after the reset moment
    assert both["g2"].approved_minor_by_currency == {"USD": 5}
    assert both["g3"].approved_minor_by_currency == {} and both["g3"].outcomes == ()
    assert latest_two.outcomes == (("USD:mastercard", False), ("USD:visa", True))


def test_concurrent_records_of_one_gateway_all_count(figures: Any) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: record(figures, "hot", True), range(40)))

    health = figures.health(["hot"], month="2026-11", since={}, outcomes_max=100)["hot"]

    assert health.approved_minor_by_currency == {"USD": 4000}
    assert len(health.outcomes) == 40


def test_a_chargeback_counts_once_against_its_gateway_from_since_with_approved_outcomes(
    figures: Any,
) -> None:
    for _ in range(3):
        figures.record_chargeback(gateway_id="g1", chargeback_id="cb-1", at=T0)
    figures.record_chargeback(gateway_id="g1", chargeback_id="cb-old", at=T0 - timedelta(days=1))
    figures.record_chargeback(gateway_id="g2", chargeback_id="cb-2", at=T0)
    record(figures, "g1", True)
    record(figures, "g1", True, at=T0 + timedelta(hours=1))
    record(figures, "g1", False)
    record(figures, "g1", True, at=T0 - timedelta(days=1))

    counts = figures.chargeback_counts("g1", since=T0)
    unseen = figures.chargeback_counts("g3", since=T0)

    assert (counts.chargebacks, counts.settled_transactions) == (1, 2)
    assert (unseen.chargebacks, unseen.settled_transactions) == (0, 0)


def test_approved_volume_is_per_gateway_and_currency_of_one_month(figures: Any) -> None:
    record(figures, "g1", True, currency="EUR", amount_minor=7)
    record(figures, "g1", True, amount_minor=30)
    record(figures, "g1", False, amount_minor=1000)
    record(figures, "g1", True, month="2026-10", amount_minor=500)

    volume = figures.approved_volume(["g1", "g2"], month="2026-11")

    assert volume == {"g1": {"EUR": 7, "USD": 30}, "g2": {}}


# --- cap reservations --------------------------------------------------------------------------


def reserve(figures: Any, attempt_id: Any, amount_minor: int, **fields: Any) -> bool:
    values = {
        "gateway_id": "g1",
        "attempt_id": attempt_id,
        "month": "2026-11",
        "currency": "USD",
        "amount_minor": amount_minor,
        "cap_minor": 5_000,
        **fields,
    }
    return bool(figures.reserve(**values))


def committed(figures: Any, gateway_id: str = "g1") -> dict[str, int]:
    health = figures.health([gateway_id], month="2026-11", since={}, outcomes_max=50)
    volume = figures.approved_volume([gateway_id], month="2026-11")[gateway_id]
    assert health[gateway_id].approved_minor_by_currency == volume  # one figure for both reads
    return dict(volume)


def test_a_reservation_holds_the_cap_once_per_attempt_until_its_outcome(figures: Any) -> None:
    first, second = uuid4(), uuid4()

    assert reserve(figures, first, 3_000)
    assert reserve(figures, first, 3_000)  # the same attempt again: already held, not twice
    assert committed(figures) == {"USD": 3_000}
    assert not reserve(figures, second, 2_001)  # 5,001 would pass the cap
    assert reserve(figures, second, 2_000)  # exactly the cap
    assert not reserve(figures, uuid4(), 1)
    assert not reserve(figures, uuid4(), 6_000, gateway_id="g2")  # alone over the cap
    assert reserve(figures, uuid4(), 5_000, currency="EUR")  # per currency
    assert reserve(figures, uuid4(), 5_000, month="2026-12")  # per month
    assert committed(figures) == {"USD": 5_000, "EUR": 5_000}
    assert committed(figures, "g2") == {}


def test_an_approval_keeps_its_reservation_and_a_decline_or_release_frees_it_once(
    figures: Any,
) -> None:
    approved, declined, abandoned, unknown = uuid4(), uuid4(), uuid4(), uuid4()
    for attempt_id in (approved, declined, abandoned):
        assert reserve(figures, attempt_id, 1_000)
    assert reserve(figures, unknown, 1_000)  # its outcome is never learnt here: it keeps it

    for _ in range(2):
        record(figures, "g1", True, attempt_id=approved, amount_minor=1_000)
        record(figures, "g1", False, attempt_id=declined, amount_minor=1_000)
        figures.release(abandoned)
    figures.release(approved)  # settled: a release changes nothing
    figures.release(uuid4())  # never reserved: nothing

    assert committed(figures) == {"USD": 2_000}  # the approval (once) and the unknown one
    assert not reserve(figures, declined, 1_000)  # a released reservation is not taken again
    assert reserve(figures, uuid4(), 3_000)
    assert committed(figures) == {"USD": 5_000}


def test_an_approval_without_a_reservation_still_counts(figures: Any) -> None:
    record(figures, "g1", True, amount_minor=4_000)

    assert not reserve(figures, uuid4(), 1_001)
    assert committed(figures) == {"USD": 4_000}


def test_concurrent_reservations_never_take_a_gateway_over_its_cap(figures: Any) -> None:
    with ThreadPoolExecutor(8) as pool:
        held = list(pool.map(lambda _: reserve(figures, uuid4(), 300), range(40)))
    same = uuid4()
    with ThreadPoolExecutor(8) as pool:
        again = list(pool.map(lambda _: reserve(figures, same, 200, gateway_id="g2"), range(16)))

    assert sum(held) == 16  # 16 x 300 = 4,800; a 17th would be 5,100
    assert committed(figures) == {"USD": 4_800}
    assert all(again)
    assert committed(figures, "g2") == {"USD": 200}  # one attempt, reserved once
