"""The ECB's CSV files read as euro rates: the daily file and the historical one, ``N/A`` cells
and currencies no longer in ISO 4217 skipped, a malformed file named by its line."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from adapters.fx_rates import InvalidRatesFile, parse_ecb_csv
from domain.fx import FxRate

DAILY = "Date, USD, JPY, BGN, CZK, \n21 November 2025, 1.0412, 161.14, 1.9558, 25.316, \n"
HISTORICAL = (
    "Date,USD,JPY,CYP,HRK,\n2025-11-21,1.0412,161.14,N/A,N/A,\n2025-11-20,1.0500,160.02,N/A,,\n\n"
)


def test_the_daily_file_gives_one_rate_per_currency_against_the_euro() -> None:
    rates = parse_ecb_csv(DAILY)
    assert rates[:2] == [
        FxRate(date(2025, 11, 21), "EUR", "USD", Decimal("1.0412")),
        FxRate(date(2025, 11, 21), "EUR", "JPY", Decimal("161.14")),
    ]
    assert [r.quote for r in rates] == ["USD", "JPY", "BGN", "CZK"]


def test_the_historical_file_skips_missing_cells_and_retired_currencies() -> None:
    rates = parse_ecb_csv(HISTORICAL)
    # CYP (the Cypriot pound) is no longer an ISO 4217 code; HRK still is, but has no rates here.
    assert [(r.day.isoformat(), r.quote, str(r.rate)) for r in rates] == [
        ("2025-11-21", "USD", "1.0412"),
        ("2025-11-21", "JPY", "161.14"),
        ("2025-11-20", "USD", "1.0500"),
        ("2025-11-20", "JPY", "160.02"),
    ]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("USD,JPY\n1.0,2.0\n", "line 1"),
        ("Date,USD\nyesterday,1.0\n", "line 2"),
        ("Date,USD\n2025-11-21,1.0\n2025-11-20,-1\n", "line 3"),
        ("Date,USD\n2025-11-21,abc\n", "line 2"),
    ],
)
def test_a_malformed_file_names_the_line(text: str, line: str) -> None:
    with pytest.raises(InvalidRatesFile, match=line):
        parse_ecb_csv(text)
