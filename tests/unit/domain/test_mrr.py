"""MRR definitions: published golden examples, classification rules, currency conversion, and
properties over random histories (the monthly identity, the MRR of a month equals the step
functions evaluated at its end, incremental recomputation equals a fold of the final state)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.fx import FxRateMissing, convert_minor, cross_rate
from domain.mrr import (
    CHURN,
    CONTRACTION,
    EXPANSION,
    NEW,
    REACTIVATION,
    Contributions,
    InvalidMonth,
    MrrPoint,
    classify,
    contributions,
    difference,
    month_of,
    monthly_recurring_minor,
    months_between,
    parse_month,
    replace_points,
)
from domain.mrr_report import monthly_report, quick_ratio

T0 = datetime(2025, 1, 15, 9, tzinfo=UTC)
GOLD, SILVER, GOLD_MONTHLY = "gold-yearly", "silver", "gold-monthly"


def at(days: int) -> datetime:
    return T0 + timedelta(days=days)


def change(start: datetime, *points: tuple[datetime, int, str]) -> dict:
    """An event's ``mrr`` payload, as subscriptions record it."""
    return {
        "from": start.isoformat(),
        "points": [[moment.isoformat(), mrr, plan] for moment, mrr, plan in points],
    }


def kinds(history) -> list[tuple[str, int, str]]:
    return [(m.kind, m.amount_minor, m.plan_id) for m in history.movements]


# Golden examples --------------------------------------------------------------------------------


def test_a_yearly_price_is_divided_by_twelve_half_to_even() -> None:
    assert monthly_recurring_minor(12_000, 1, "year") == 1_000  # $120/year → $10/month
    assert monthly_recurring_minor(50_000, 4, "year") == 16_667  # $2,000/year → $166.67
    assert monthly_recurring_minor(5_000, 3, "month") == 15_000
    assert monthly_recurring_minor(30, 1, "year") == 2  # 2.5 → 2 (half to even)
    assert monthly_recurring_minor(42, 1, "year") == 4  # 3.5 → 4


def test_the_published_customer_story_moves_new_expansion_contraction_churn_reactivation() -> None:
    gold_yearly = monthly_recurring_minor(50_000, 4, "year")  # 4 seats, $2,000 a year
    gold = replace_points([], change(at(0), (at(0), gold_yearly, GOLD)))
    silver = replace_points([], change(at(30), (at(30), 6_000, SILVER)))
    silver = replace_points(silver, change(at(90), (at(90), 0, SILVER)))  # cancelled
    # Gold cancelled at the end of its paid year: the point is at the period's end.
    gold = replace_points(gold, change(at(100), (at(365), 0, GOLD)))
    returned = replace_points(
        [], change(at(400), (at(400), monthly_recurring_minor(5_000, 3, "month"), GOLD_MONTHLY))
    )

    history = classify({"a-gold": gold, "b-silver": silver, "c-gold": returned})

    assert kinds(history) == [
        (NEW, 16_667, GOLD),
        (EXPANSION, 6_000, SILVER),
        (CONTRACTION, 6_000, SILVER),
        (CHURN, 16_667, GOLD),
        (REACTIVATION, 15_000, GOLD_MONTHLY),
    ]
    assert [m.at for m in history.movements] == [at(0), at(30), at(90), at(365), at(400)]
    assert history.movements[3].mrr_after_minor == 0


def test_a_hundred_monthly_and_fifty_yearly_subscribers_make_12_500_dollars() -> None:
    figures: Contributions = {}
    for i in range(150):
        mrr = (
            monthly_recurring_minor(10_000, 1, "month")
            if i < 100
            else monthly_recurring_minor(60_000, 1, "year")
        )
        points = replace_points([], change(at(i), (at(i), mrr, "m" if i < 100 else "y")))
        for key, row in contributions(classify({f"s{i}": points})).items():
            merged = figures.setdefault(key, {})
            for counter, value in row.items():
                merged[counter] = merged.get(counter, 0) + value
    report = _report(figures, "USD", date(2025, 1, 1), date(2025, 7, 1))

    assert report["months"][-1]["mrr_minor"] == 1_250_000
    assert report["months"][-1]["arr_minor"] == 15_000_000
    assert report["months"][-1]["customers"] == 150
    assert sum(m["new_customers"] for m in report["months"]) == 150


# Classification rules ---------------------------------------------------------------------------


def test_changes_of_one_instant_net_out_into_one_movement() -> None:
    gold = replace_points([], change(at(0), (at(0), 5_000, GOLD)))
    silver = replace_points([], change(at(0), (at(0), 2_000, SILVER)))
    # At day 10 one subscription is cancelled and the other doubles: +2,000 − 5,000 = −3,000.
    gold = replace_points(gold, change(at(10), (at(10), 0, GOLD)))
    silver = replace_points(silver, change(at(10), (at(10), 4_000, SILVER)))

    history = classify({"g": gold, "s": silver})

    assert kinds(history) == [(NEW, 7_000, GOLD), (CONTRACTION, 3_000, GOLD)]


def test_a_plan_change_moves_mrr_between_plans_and_is_attributed_where_revenue_moved() -> None:
    points = replace_points([], change(at(0), (at(0), 6_000, SILVER)))
    points = replace_points(points, change(at(5), (at(5), 10_000, GOLD)))  # upgrade
    points = replace_points(points, change(at(9), (at(9), 4_000, SILVER)))  # downgrade

    history = classify({"s": points})

    assert kinds(history) == [
        (NEW, 6_000, SILVER),
        (EXPANSION, 4_000, GOLD),
        (CONTRACTION, 6_000, GOLD),
    ]
    assert [(c.plan_id, c.delta_minor) for c in history.plan_changes] == [
        (SILVER, 6_000),
        (GOLD, 10_000),
        (SILVER, -6_000),
        (GOLD, -10_000),
        (SILVER, 4_000),
    ]


def test_an_import_after_live_data_is_classified_in_effective_time() -> None:
    live = replace_points([], change(at(100), (at(100), 3_000, SILVER)))
    # Recorded later, effective earlier: the customer had Gold from day 0 to day 50.
    imported = replace_points([], change(at(0), (at(0), 5_000, GOLD), (at(50), 0, GOLD)))

    history = classify({"live": live, "imported": imported})

    assert kinds(history) == [
        (NEW, 5_000, GOLD),
        (CHURN, 5_000, GOLD),
        (REACTIVATION, 3_000, SILVER),
    ]


def test_an_event_replaces_the_points_at_and_after_its_instant() -> None:
    points = replace_points([], change(at(0), (at(0), 1_000, GOLD), (at(30), 0, GOLD)))
    # A resume before the scheduled cancellation takes effect discards it.
    points = replace_points(points, change(at(20), (at(20), 1_000, GOLD)))

    assert points == [MrrPoint(at(0), 1_000, GOLD), MrrPoint(at(20), 1_000, GOLD)]
    assert kinds(classify({"s": points})) == [(NEW, 1_000, GOLD)]


def test_months_are_utc_calendar_months() -> None:
    assert month_of(datetime(2026, 1, 31, 23, 30, tzinfo=UTC)) == date(2026, 1, 1)
    late_evening_in_new_york = datetime.fromisoformat("2026-01-31T20:00:00-05:00")
    assert month_of(late_evening_in_new_york) == date(2026, 2, 1)
    assert parse_month("2026-02") == date(2026, 2, 1)
    assert months_between(date(2025, 11, 1), date(2026, 2, 1))[-2:] == [
        date(2026, 1, 1),
        date(2026, 2, 1),
    ]
    for bad in ("2026-13", "2026-1", "26-01", "2026/01", "2026-01-01"):
        with pytest.raises(InvalidMonth):
            parse_month(bad)


# Currency conversion ----------------------------------------------------------------------------


def test_rates_convert_directly_inversely_or_across_the_euro() -> None:
    quotes = {
        ("EUR", "USD"): Decimal("1.25"),
        ("EUR", "JPY"): Decimal("160"),
        ("USD", "GBP"): Decimal("0.8"),
    }
    assert cross_rate(quotes, "USD", "GBP") == Fraction(4, 5)
    assert cross_rate(quotes, "GBP", "USD") == Fraction(5, 4)
    assert cross_rate(quotes, "USD", "JPY") == Fraction(128)
    assert cross_rate(quotes, "EUR", "EUR") == 1
    assert cross_rate(quotes, "CHF", "USD") is None


def test_conversion_minds_the_exponents_and_rounds_half_to_even() -> None:
    assert convert_minor(1_000, "USD", "JPY", Fraction(150)) == 1_500  # $10 → ¥1,500
    assert convert_minor(1_500, "JPY", "USD", Fraction(1, 150)) == 1_000
    assert convert_minor(1, "USD", "EUR", Fraction(1, 2)) == 0  # 0.5 → 0
    assert convert_minor(3, "USD", "EUR", Fraction(1, 2)) == 2  # 1.5 → 2
    assert convert_minor(1_000, "USD", "KWD", Fraction(3, 10)) == 3_000


def test_quick_ratio_is_a_two_place_decimal_or_null() -> None:
    assert quick_ratio(30_000, 12_000) == "2.50"
    assert quick_ratio(1, 3) == "0.33"
    assert quick_ratio(5_000, 0) is None


def test_a_missing_rate_names_the_currency_and_the_month() -> None:
    figures = {
        (date(2026, 3, 1), "p"): {"new_minor": 5_000, "mrr_delta_minor": 5_000, "new_customers": 1}
    }
    with pytest.raises(FxRateMissing) as raised:
        monthly_report(
            currency="USD",
            months=[date(2026, 3, 1)],
            opening={},
            figures={("EUR", m, p): row for (m, p), row in figures.items()},
            quotes={},
        )
    assert raised.value.code == "fx_rate_missing"
    assert "EUR" in raised.value.message and "2026-03" in raised.value.message


def test_a_rate_change_is_fx_adjustment_never_expansion() -> None:
    march, april = date(2026, 3, 1), date(2026, 4, 1)
    report = monthly_report(
        currency="USD",
        months=[march, april],
        opening={},
        figures={
            ("EUR", march, "p"): {
                "new_minor": 10_000,
                "mrr_delta_minor": 10_000,
                "new_customers": 1,
            }
        },
        quotes={march: {("EUR", "USD"): Decimal("1.10")}, april: {("EUR", "USD"): Decimal("1.20")}},
    )
    first, second = report["months"]
    assert (first["mrr_minor"], first["new_minor"], first["fx_adjustment_minor"]) == (
        11_000,
        11_000,
        0,
    )
    assert (second["mrr_minor"], second["expansion_minor"], second["fx_adjustment_minor"]) == (
        12_000,
        0,
        1_000,
    )


# Properties -------------------------------------------------------------------------------------

CURRENCIES = ("USD", "EUR", "JPY")
PLANS = ("p1", "p2", "p3")
FIRST_MONTH, LAST_MONTH = date(2025, 1, 1), date(2026, 6, 1)
MONTHS = months_between(FIRST_MONTH, LAST_MONTH)

instants = st.integers(min_value=0, max_value=540 * 24).map(
    lambda hours: datetime(2025, 1, 1, tzinfo=UTC) + timedelta(hours=hours)
)
point_lists = st.lists(
    st.tuples(
        instants, st.sampled_from([0, 0, 1, 999, 5_000, 16_667, 120_000]), st.sampled_from(PLANS)
    ),
    min_size=1,
    max_size=4,
)
# An event: which subscription (customer, currency fixed per subscription), from when, points.
events = st.tuples(st.integers(0, 5), instants, point_lists)
subscriptions_of = st.lists(
    st.tuples(st.integers(0, 2), st.sampled_from(CURRENCIES)), min_size=6, max_size=6
)
rate_lists = st.lists(
    st.decimals(min_value="0.5", max_value="200", places=4),
    min_size=len(MONTHS),
    max_size=len(MONTHS),
)


def _apply_history(subscriptions, history):
    """Yields the customer whose classification an event changed and the subscriptions' points."""
    points: dict[int, list[MrrPoint]] = defaultdict(list)
    for index, start, raw in history:
        points[index] = replace_points(
            points[index], change(start, *sorted(raw, key=lambda p: p[0]))
        )
        yield subscriptions[index], points


def _customer_points(subscriptions, points, key):
    return {
        str(i): points[i] for i, owner in enumerate(subscriptions) if owner == key and points.get(i)
    }


def _figures(rows_by_customer: dict) -> dict:
    figures: dict = {}
    for (_customer, currency), rows in rows_by_customer.items():
        for (month, plan), row in rows.items():
            merged = figures.setdefault((currency, month, plan), {})
            for counter, value in row.items():
                merged[counter] = merged.get(counter, 0) + value
    return figures


def _report(figures: Contributions, currency: str, first: date, last: date, **kwargs):
    return monthly_report(
        currency=currency,
        months=months_between(first, last),
        opening={},
        figures={(currency, m, p): row for (m, p), row in figures.items()},
        quotes={},
        **kwargs,
    )


def _quotes(rates) -> dict:
    # EUR per month from the drawn list; JPY at a fixed multiple to exercise cross rates.
    return {
        month: {("EUR", "USD"): rate, ("EUR", "JPY"): rate * 150}
        for month, rate in zip(MONTHS, rates, strict=True)
    } | {date(2024, 12, 1): {("EUR", "USD"): Decimal("1.1"), ("EUR", "JPY"): Decimal("160")}}


@settings(max_examples=150, deadline=None)
@given(
    subscriptions=subscriptions_of,
    history=st.lists(events, max_size=14),
    rates=rate_lists,
    target=st.sampled_from(CURRENCIES),
    split=st.integers(1, 17),
)
def test_every_month_is_the_previous_one_plus_movements_plus_fx(
    subscriptions, history, rates, target, split
) -> None:
    # Incrementally, as the projection does: after each event, recompute the customer and add
    # the difference between its new and old contributions.
    incremental: dict = {}
    for key, points in _apply_history(subscriptions, history):
        new = contributions(classify(_customer_points(subscriptions, points, key)))
        rows = incremental.setdefault(key, {})
        for k, row in difference(new, rows).items():
            merged = rows.setdefault(k, {})
            for counter, value in row.items():
                merged[counter] = merged.get(counter, 0) + value
        incremental[key] = {
            k: {c: v for c, v in r.items() if v} for k, r in rows.items() if any(r.values())
        }
    final_points = dict(points) if history else {}
    folded = {
        key: contributions(classify(_customer_points(subscriptions, final_points, key)))
        for key in set(subscriptions)
    }
    folded = {k: v for k, v in folded.items() if v}
    assert {k: v for k, v in incremental.items() if v} == folded

    quotes = _quotes(rates)
    figures = _figures(folded)
    # The report from a later first month opens with the MRR before it.
    cut = MONTHS[min(split, len(MONTHS) - 1)]
    opening = {}
    for (currency, month, plan), row in figures.items():
        if month < cut:
            merged = opening.setdefault((currency, plan), {})
            for counter, value in row.items():
                merged[counter] = merged.get(counter, 0) + value
    late = monthly_report(
        currency=target,
        months=months_between(cut, LAST_MONTH),
        opening=opening,
        figures={k: v for k, v in figures.items() if k[1] >= cut},
        quotes=quotes,
        by_plan=True,
    )
    full = monthly_report(
        currency=target,
        months=MONTHS,
        opening={},
        figures={k: v for k, v in figures.items() if k[1] >= FIRST_MONTH},
        quotes=quotes,
        by_plan=True,
    )
    assert late["months"] == full["months"][-len(late["months"]) :]
    assert late["opening_mrr_minor"] == full["months"][-len(late["months"]) - 1]["mrr_minor"]

    previous = full["opening_mrr_minor"]
    for month, row in zip(MONTHS, full["months"], strict=True):
        assert (
            row["mrr_minor"]
            == previous
            + row["new_minor"]
            + row["expansion_minor"]
            - row["contraction_minor"]
            - row["churn_minor"]
            + row["reactivation_minor"]
            + row["fx_adjustment_minor"]
        )
        previous = row["mrr_minor"]
        # Oracle: each subscription's step function at the end of the month, per currency,
        # converted at the month's rate.
        end = datetime(*(month.year + month.month // 12, month.month % 12 + 1, 1), tzinfo=UTC)
        native: dict[str, int] = defaultdict(int)
        paying: dict[tuple, int] = defaultdict(int)
        for i, (customer, currency) in enumerate(subscriptions):
            mrr = _value_at(final_points.get(i, []), end)
            native[currency] += mrr
            paying[(customer, currency)] += mrr
        expected = sum(
            _convert(amount, currency, target, quotes[month]) for currency, amount in native.items()
        )
        assert row["mrr_minor"] == expected
        assert row["customers"] == sum(1 for v in paying.values() if v > 0)
        if all(c == target for _, c in subscriptions):
            assert row["fx_adjustment_minor"] == 0
        for plan_row in row["plans"]:
            p = plan_row
            assert p["mrr_minor"] - _plan_previous(full, month, p["plan_id"]) == (
                p["new_minor"]
                + p["expansion_minor"]
                - p["contraction_minor"]
                - p["churn_minor"]
                + p["reactivation_minor"]
                + p["plan_change_minor"]
                + p["fx_adjustment_minor"]
            )


def _plan_previous(report, month, plan_id) -> int:
    index = MONTHS.index(month)
    if index == 0:
        return 0
    for p in report["months"][index - 1]["plans"]:
        if p["plan_id"] == plan_id:
            return p["mrr_minor"]
    return 0


def _value_at(points: list[MrrPoint], moment: datetime) -> int:
    value = 0
    for point in points:
        if point.at < moment:
            value = point.mrr_minor
    return value


def _convert(amount: int, currency: str, target: str, quotes) -> int:
    if amount == 0:
        return 0
    return convert_minor(amount, currency, target, cross_rate(quotes, currency, target))
