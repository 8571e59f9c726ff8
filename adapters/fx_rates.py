"""FX rates: reference data in a plain PostgreSQL table, and the ECB's CSV format.

A rate (``domain.fx.FxRate``) is kept as ``numeric`` and read as ``Decimal``, never a float.
Rates are scoped: ``ledger fx import FILE`` records platform-wide rates (the ECB's, for every
tenant); ``POST /v1/fx-rates`` records a tenant's own. A lookup sees both, the tenant's winning
on the same day. Recording a rate again for the same day replaces it (a correction), so a repeated
import or request changes nothing.

Lookup: the rate *of a day* is the latest rate published on or before it (weekends and holidays
have none). Converting between two currencies uses their own pair, its inverse, or both
currencies' euro rates (``domain.fx.cross_rate``).

The ECB's files (``eurofxref.csv``: ``Date, USD, JPY, …`` then one row ``22 November 2024,
1.0412, 161.14, …,``; ``eurofxref-hist.csv``: dates ``2024-11-22``, ``N/A`` where a currency
was not quoted) hold euro rates: each column is a quote currency, the base is always ``EUR``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from eventsourcing.postgres import PostgresDatastore
from psycopg.sql import SQL, Identifier

from domain.fx import FxRate, InvalidFxRate, validated_rate
from domain.money import CURRENCY_EXPONENTS

PLATFORM_SCOPE = ""  # rates every tenant sees (the ECB's)


class InvalidRatesFile(ValueError):
    """The file is not in the ECB's CSV format (the message names the line)."""


def parse_ecb_csv(text: str) -> list[FxRate]:
    """Euro rates from the ECB's CSV (daily or historical file). ``N/A`` and empty cells are
    skipped, as are columns of currencies no longer in ISO 4217 (``CYP``). Raises
    ``InvalidRatesFile``."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header or header[0].strip().lower() != "date":
        raise InvalidRatesFile("line 1: the header starts with 'Date'")
    columns = [name.strip().upper() for name in header[1:]]
    rates: list[FxRate] = []
    for line, cells in enumerate(reader, start=2):
        if not any(cell.strip() for cell in cells):
            continue
        day = _ecb_day(cells[0].strip(), line)
        for currency, cell in zip(columns, cells[1:], strict=False):
            value = cell.strip()
            if not currency or currency not in CURRENCY_EXPONENTS or value in ("", "N/A"):
                continue
            try:
                rates.append(validated_rate(day, "EUR", currency, Decimal(value)))
            except (InvalidOperation, InvalidFxRate):
                raise InvalidRatesFile(f"line {line}: {currency} is not a rate") from None
    return rates


def _ecb_day(text: str, line: int) -> date:
    for pattern in ("%Y-%m-%d", "%d %B %Y"):
        try:
            return datetime.strptime(text, pattern).date()
        except ValueError:
            continue
    raise InvalidRatesFile(f"line {line}: {text!r} is not a date (2024-11-22 or 22 November 2024)")


class PgFxRates:
    """The ``fx_rates`` table: one row per scope, pair and day."""

    def __init__(self, datastore: PostgresDatastore) -> None:
        self.datastore = datastore
        self.table = SQL("{}.{}").format(
            Identifier(datastore.schema or "public"), Identifier("fx_rates")
        )

    def create_tables(self) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    " base text NOT NULL,"
                    " quote text NOT NULL,"
                    " rate_date date NOT NULL,"
                    " scope text NOT NULL,"
                    " rate numeric NOT NULL CHECK (rate > 0),"
                    " PRIMARY KEY (base, quote, rate_date, scope))"
                ).format(self.table)
            )

    def record(self, rates: Iterable[FxRate], *, scope: str = PLATFORM_SCOPE) -> int:
        """Record (or correct) rates in one transaction; return how many."""
        rows = sorted({(r.base, r.quote, r.day): r for r in rates}.values(), key=_order)
        with self.datastore.transaction(commit=True) as curs:
            curs.executemany(
                SQL(
                    "INSERT INTO {} (base, quote, rate_date, scope, rate)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (base, quote, rate_date, scope)"
                    " DO UPDATE SET rate = EXCLUDED.rate"
                ).format(self.table),
                [(r.base, r.quote, r.day, scope, r.rate) for r in rows],
            )
        return len(rows)

    def import_file(self, path: Path) -> int:
        """Record the ECB CSV file's rates platform-wide. Raises ``InvalidRatesFile``."""
        return self.record(parse_ecb_csv(path.read_text(encoding="utf-8-sig")))

    def on(self, tenant_id: str, day: date) -> list[FxRate]:
        """The rate of ``day`` of every pair the tenant sees: the latest on or before it."""
        with self.datastore.cursor() as curs:
            curs.execute(
                SQL(
                    "SELECT DISTINCT ON (base, quote) base, quote, rate_date, rate FROM {}"
                    " WHERE scope IN (%s, %s) AND rate_date <= %s"
                    " ORDER BY base, quote, rate_date DESC, (scope = %s) DESC"
                ).format(self.table),
                (tenant_id, PLATFORM_SCOPE, day, tenant_id),
            )
            return [
                FxRate(row["rate_date"], row["base"], row["quote"], row["rate"])
                for row in curs.fetchall()
            ]

    def quotes(
        self, tenant_id: str, days: Sequence[date], currencies: Iterable[str]
    ) -> Mapping[date, Mapping[tuple[str, str], Decimal]]:
        """For each day, the rate of that day of every pair among ``currencies`` and the euro
        (one query: an index lookup per day and pair)."""
        codes = sorted({*currencies, "EUR"})
        pairs = [(b, q) for b in codes for q in codes if b != q]
        result: dict[date, dict[tuple[str, str], Decimal]] = {day: {} for day in days}
        if not days or not pairs:
            return result
        with self.datastore.cursor() as curs:
            curs.execute(
                SQL(
                    "SELECT d.day, p.base, p.quote, r.rate"
                    " FROM unnest(%s::date[]) AS d(day)"
                    " CROSS JOIN unnest(%s::text[], %s::text[]) AS p(base, quote)"
                    " CROSS JOIN LATERAL (SELECT f.rate FROM {} f"
                    "  WHERE f.base = p.base AND f.quote = p.quote AND f.rate_date <= d.day"
                    "  AND f.scope IN (%s, %s)"
                    "  ORDER BY f.rate_date DESC, (f.scope = %s) DESC LIMIT 1) AS r"
                ).format(self.table),
                (
                    list(days),
                    [b for b, _ in pairs],
                    [q for _, q in pairs],
                    tenant_id,
                    PLATFORM_SCOPE,
                    tenant_id,
                ),
            )
            for row in curs.fetchall():
                result[row["day"]][(row["base"], row["quote"])] = row["rate"]
        return result


def _order(rate: FxRate) -> tuple[str, str, date]:
    return (rate.base, rate.quote, rate.day)
