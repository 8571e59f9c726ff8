"""What the report read models share: lookup rows, and figures that only grow by increments.

A report keeps two kinds of tables. *Lookup* tables remember what later events need to know
(which gateway an attempt went to, which country a customer lives in); a row is written whole.
*Figure* tables hold counters per tenant, UTC day and dimensions; a batch adds the increments it
folded (``INSERT … ON CONFLICT DO UPDATE SET n = n + EXCLUDED.n``), so a figure row is the sum of
every event's contribution whatever the batch boundaries were: a rebuild with other batch sizes
writes identical rows.

A report joins aggregates: a capture on an order names the attempt whose gateway it needs.
Events of one save may reach the log in any order of their aggregates, so a batch applies the
events that *define* a lookup (an aggregate's creation: a customer registered, an attempt
requested) before the others; being first events of their aggregates, nothing of theirs is
reordered, and every figure is a sum, which does not depend on order. Across saves the log
order is the application's: an attempt's intent is saved before the gateway is called, so its
``Requested`` always precedes its capture. A dimension the report still cannot learn (an
attempt or customer it never saw) is the word ``unknown``, not a parked event: the money still
counts, under a name that says what is missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL

from domain.order import Order
from projections.base import BatchView

# The order events that move a report's money (what it must load the order for).
ORDER_MONEY_EVENTS = (
    Order.PaymentCaptured,
    Order.Refunded,
    Order.ChargebackOpened,
    Order.ChargebackResolved,
)

UNKNOWN = "unknown"
# Increments keyed by a figure row's key (a tuple of the key columns' values).
Increments = dict[tuple[Any, ...], dict[str, int]]


def utc_day(moment: datetime) -> date:
    """The UTC calendar day of an event's timestamp (reports are by UTC day)."""
    return moment.astimezone(UTC).date()


def defining_first(events: Sequence[Any], definitions: tuple[type, ...]) -> list[Any]:
    """The batch with the lookup-defining events first, each part in log order."""
    defining = [e for e in events if isinstance(e, definitions)]
    return [*defining, *(e for e in events if not isinstance(e, definitions))]


def add(increments: Increments, key: tuple[Any, ...], **amounts: int) -> None:
    """Add ``amounts`` to the increments of the figure row ``key``."""
    row = increments.setdefault(key, {})
    for name, amount in amounts.items():
        row[name] = row.get(name, 0) + amount


@dataclass
class Lookup:
    """Rows of one lookup table known to a batch (loaded or new), and which ones to write."""

    rows: dict[UUID, dict[str, Any]] = field(default_factory=dict)
    changed: set[UUID] = field(default_factory=set)

    def put(self, key: UUID, row: dict[str, Any]) -> None:
        self.rows[key] = row
        self.changed.add(key)

    def update(self, key: UUID, **values: Any) -> None:
        self.rows[key].update(values)
        self.changed.add(key)

    def written(self) -> list[dict[str, Any]]:
        """The changed rows, in key order (so two folds of one log write in the same order)."""
        return [self.rows[key] for key in sorted(self.changed)]


class ReportView(BatchView):
    """A ``BatchView`` with lookup loads and incremented figure rows."""

    def load(self, curs: Cursor[DictRow], suffix: str, key: str, ids: Iterable[UUID]) -> Lookup:
        """The rows of lookup table ``suffix`` whose ``key`` is one of ``ids``."""
        ids = sorted(set(ids))
        if not ids:
            return Lookup()
        curs.execute(
            SQL("SELECT * FROM {} WHERE " + key + " = ANY(%s)").format(self.table(suffix)), (ids,)
        )
        return Lookup(rows={row[key]: dict(row) for row in curs.fetchall()})

    def increment(
        self,
        curs: Cursor[DictRow],
        suffix: str,
        key_columns: Sequence[str],
        counters: Sequence[str],
        increments: Mapping[tuple[Any, ...], Mapping[str, int]],
    ) -> None:
        """Add each key's increments to its figure row, creating rows at zero plus them."""
        if not increments:
            return
        columns = (*key_columns, *counters)
        statement = SQL(
            "INSERT INTO {} AS f ("
            + ", ".join(columns)
            + ") VALUES ("
            + ", ".join(["%s"] * len(columns))
            + ") ON CONFLICT ("
            + ", ".join(key_columns)
            + ") DO UPDATE SET "
            + ", ".join(f"{c} = f.{c} + EXCLUDED.{c}" for c in counters)
        ).format(self.table(suffix))
        curs.executemany(
            statement,
            [
                (*key, *(increments[key].get(c, 0) for c in counters))
                for key in sorted(increments, key=_sort_key)
            ],
        )


def _sort_key(key: tuple[Any, ...]) -> tuple[str, ...]:
    # Keys mix dates and strings; their text orders them the same way every time.
    return tuple(str(part) for part in key)
