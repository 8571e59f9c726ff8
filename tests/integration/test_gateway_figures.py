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
