"""The ``mrr`` read model: monthly recurring revenue movements per customer, and monthly sums.

Definitions are in ``domain.mrr`` (classification, plan attribution) and ``domain.mrr_report``
(months, currency conversion, ``fx_adjustment_minor``); this module only keeps their inputs.

Every ``Subscription`` event may carry ``mrr``: the subscription's step function from an
effective instant on. Effective instants of one customer's subscriptions can arrive out of time
order (an import after live data), so whenever any subscription of a customer changes, the
customer's movements in that currency are classified again from all its subscriptions' points,
and the monthly sums are adjusted by the difference between the customer's new and old
contributions. Whatever the batch boundaries, the tables end up the same: a rebuild in other
batches writes identical rows.

Tables:
- ``subscriptions``: each subscription's tenant, customer, currency and MRR points;
- ``customers``: per customer and currency, what it contributes to ``figures`` (so the next
  recomputation can take it back out);
- ``movements``: per customer and currency, each classified movement (for audits: who churned
  in March?), replaced whole when the customer is recomputed;
- ``figures``: per tenant, currency, month and plan, the sums of ``domain.mrr.COUNTERS``; the
  report reads ~months × currencies × plans rows of it. All-zero rows are deleted.

The report never reads the clock: a cancellation at period end is a churn in the month the
period ends, even if that month is still ahead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol
from uuid import UUID

import orjson
from eventsourcing.utils import get_topic
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

from domain.mrr import (
    COUNTERS,
    Contributions,
    MrrPoint,
    add_months,
    classify,
    contributions,
    difference,
    instant,
    month_of,
    months_between,
    replace_points,
)
from domain.mrr_report import Quotes, monthly_report
from domain.subscription import EVENT_CLASSES, Subscription
from projections.base import BatchProjection
from projections.report_rows import ReportView

FIGURE_KEYS = ("tenant_id", "currency", "month", "plan_id")
_SUBSCRIPTION_COLUMNS = ("subscription_id", "tenant_id", "customer_id", "currency", "points")
CustomerKey = tuple[UUID, str]  # customer id, currency


class MrrView(ReportView):
    base_name = "mrr"
    table_suffixes = ("subscriptions", "customers", "movements", "figures")

    def table_statements(self) -> Iterable[Composed]:
        yield SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " subscription_id uuid PRIMARY KEY,"
            " tenant_id text NOT NULL,"
            " customer_id uuid NOT NULL,"
            " currency text NOT NULL,"
            " points jsonb NOT NULL)"
        ).format(self.table("subscriptions"))
        yield SQL("CREATE INDEX IF NOT EXISTS {} ON {} (customer_id)").format(
            Identifier(f"{self.name}_subscriptions_customer_idx"), self.table("subscriptions")
        )
        yield SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " customer_id uuid NOT NULL,"
            " currency text NOT NULL,"
            " tenant_id text NOT NULL,"
            " contributions jsonb NOT NULL,"
            " PRIMARY KEY (customer_id, currency))"
        ).format(self.table("customers"))
        yield SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " customer_id uuid NOT NULL,"
            " currency text NOT NULL,"
            " at timestamptz NOT NULL,"
            " tenant_id text NOT NULL,"
            " month date NOT NULL,"
            " kind text NOT NULL,"
            " amount_minor bigint NOT NULL,"
            " plan_id text NOT NULL,"
            " mrr_after_minor bigint NOT NULL,"
            " PRIMARY KEY (customer_id, currency, at))"
        ).format(self.table("movements"))
        yield SQL("CREATE INDEX IF NOT EXISTS {} ON {} (tenant_id, month)").format(
            Identifier(f"{self.name}_movements_month_idx"), self.table("movements")
        )
        yield SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " tenant_id text NOT NULL,"
            " currency text NOT NULL,"
            " month date NOT NULL,"
            " plan_id text NOT NULL,"
            + "".join(f" {c} bigint NOT NULL," for c in COUNTERS)
            + " PRIMARY KEY (tenant_id, currency, month, plan_id))"
        ).format(self.table("figures"))

    # Reads inside a batch ---------------------------------------------------------------------

    def subscriptions_of(
        self, curs: Cursor[DictRow], *, ids: Iterable[UUID] = (), customers: Iterable[UUID] = ()
    ) -> dict[UUID, dict[str, Any]]:
        ids, customers = sorted(set(ids)), sorted(set(customers))
        if not ids and not customers:
            return {}
        curs.execute(
            SQL("SELECT * FROM {} WHERE subscription_id = ANY(%s) OR customer_id = ANY(%s)").format(
                self.table("subscriptions")
            ),
            (ids, customers),
        )
        return {row["subscription_id"]: _subscription(row) for row in curs.fetchall()}

    def contributions_of(
        self, curs: Cursor[DictRow], keys: Iterable[CustomerKey]
    ) -> dict[CustomerKey, Contributions]:
        keys = sorted(set(keys))
        if not keys:
            return {}
        curs.execute(
            SQL(
                "SELECT c.* FROM {} c"
                " JOIN unnest(%s::uuid[], %s::text[]) AS k(customer_id, currency)"
                " USING (customer_id, currency)"
            ).format(self.table("customers")),
            ([k[0] for k in keys], [k[1] for k in keys]),
        )
        return {
            (row["customer_id"], row["currency"]): {
                (date.fromisoformat(month), plan_id): counters
                for month, plan_id, counters in row["contributions"]
            }
            for row in curs.fetchall()
        }

    # Writes -----------------------------------------------------------------------------------

    def write(self, curs: Cursor[DictRow], changes: MrrChanges) -> None:
        if changes.subscriptions:
            rows = [changes.subscriptions[key] for key in sorted(changes.subscriptions)]
            self.upsert(
                curs,
                "subscriptions",
                _SUBSCRIPTION_COLUMNS,
                [{**row, "points": _points_json(row["points"])} for row in rows],
                jsonb_columns=frozenset({"points"}),
            )
        if changes.customers:
            self._write_customers(curs, changes)
        increments = changes.figures
        self.increment(curs, "figures", FIGURE_KEYS, COUNTERS, increments)
        if increments:
            curs.executemany(
                SQL(
                    "DELETE FROM {} WHERE tenant_id = %s AND currency = %s AND month = %s"
                    " AND plan_id = %s AND " + " AND ".join(f"{c} = 0" for c in COUNTERS)
                ).format(self.table("figures")),
                sorted(increments, key=lambda k: tuple(map(str, k))),
            )

    def _write_customers(self, curs: Cursor[DictRow], changes: MrrChanges) -> None:
        keys = sorted(changes.customers)
        curs.executemany(
            SQL(
                "INSERT INTO {} (customer_id, currency, tenant_id, contributions)"
                " VALUES (%s, %s, %s, %s::jsonb) ON CONFLICT (customer_id, currency)"
                " DO UPDATE SET contributions = EXCLUDED.contributions"
            ).format(self.table("customers")),
            [
                (
                    *key,
                    changes.customers[key].tenant_id,
                    _contributions_json(changes.customers[key].contributions),
                )
                for key in keys
            ],
        )
        curs.execute(
            SQL(
                "DELETE FROM {} m USING unnest(%s::uuid[], %s::text[]) AS k(customer_id, currency)"
                " WHERE m.customer_id = k.customer_id AND m.currency = k.currency"
            ).format(self.table("movements")),
            ([k[0] for k in keys], [k[1] for k in keys]),
        )
        movements = [
            (
                customer_id,
                currency,
                m.at,
                changes.customers[(customer_id, currency)].tenant_id,
                month_of(m.at),
                m.kind,
                m.amount_minor,
                m.plan_id,
                m.mrr_after_minor,
            )
            for customer_id, currency in keys
            for m in changes.customers[(customer_id, currency)].movements
        ]
        if movements:
            with curs.copy(
                SQL(
                    "COPY {} (customer_id, currency, at, tenant_id, month, kind, amount_minor,"
                    " plan_id, mrr_after_minor) FROM STDIN"
                ).format(self.table("movements"))
            ) as copy:
                for row in movements:
                    copy.write_row(row)

    # Queries ----------------------------------------------------------------------------------

    def sums(
        self, tenant_id: str, first: date, last: date
    ) -> tuple[dict[tuple[str, str], dict[str, int]], dict[tuple[str, date, str], dict[str, int]]]:
        """The counters summed before ``first`` per (currency, plan), and per (currency, month,
        plan) from ``first`` to ``last`` (months, both included): one query."""
        sums = ", ".join(f"sum({c})::bigint AS {c}" for c in COUNTERS)
        statement = SQL(
            "SELECT currency, plan_id, CASE WHEN month < %s THEN NULL ELSE month END AS m, "
            + sums
            + " FROM {} WHERE tenant_id = %s AND month <= %s GROUP BY currency, plan_id, m"
        ).format(self.table("figures"))
        with self.datastore.cursor() as curs:
            curs.execute(statement, (first, tenant_id, last))
            rows = curs.fetchall()
        opening: dict[tuple[str, str], dict[str, int]] = {}
        figures: dict[tuple[str, date, str], dict[str, int]] = {}
        for row in rows:
            counters = {c: int(row[c]) for c in COUNTERS}
            if row["m"] is None:
                opening[(row["currency"], row["plan_id"])] = counters
            else:
                figures[(row["currency"], row["m"], row["plan_id"])] = counters
        return opening, figures

    def movements(self, tenant_id: str, customer_id: UUID) -> list[dict[str, Any]]:
        """A customer's movements in every currency, in time order (for audits)."""
        with self.datastore.cursor() as curs:
            curs.execute(
                SQL(
                    "SELECT * FROM {} WHERE tenant_id = %s AND customer_id = %s"
                    " ORDER BY at, currency"
                ).format(self.table("movements")),
                (tenant_id, customer_id),
            )
            return [dict(row) for row in curs.fetchall()]


class FxQuotes(Protocol):
    """Where the report finds its rates (``adapters.fx_rates.PgFxRates``)."""

    def quotes(
        self, tenant_id: str, days: Sequence[date], currencies: Iterable[str]
    ) -> Mapping[date, Quotes]: ...


def mrr_report(
    view: MrrView,
    rates: FxQuotes,
    tenant_id: str,
    *,
    currency: str,
    first: date,
    last: date,
    by_plan: bool = False,
) -> dict[str, Any]:
    """The MRR report of ``tenant_id`` in ``currency`` from month ``first`` to ``last`` (see
    ``domain.mrr_report.monthly_report``). Raises ``FxRateMissing``."""
    opening, figures = view.sums(tenant_id, first, last)
    currencies = {c for c, _ in opening} | {c for c, _, _ in figures}
    quotes: Mapping[date, Quotes] = {}
    if currencies - {currency}:
        days = [add_months(first, -1), *months_between(first, last)]
        quotes = rates.quotes(tenant_id, days, currencies | {currency})
    report = monthly_report(
        currency=currency,
        months=months_between(first, last),
        opening=opening,
        figures=figures,
        quotes=quotes,
        by_plan=by_plan,
    )
    return {"from": f"{first:%Y-%m}", "to": f"{last:%Y-%m}", **report}


@dataclass
class CustomerRecomputed:
    tenant_id: str
    contributions: Contributions
    movements: list[Any]


@dataclass
class MrrChanges:
    subscriptions: dict[UUID, dict[str, Any]] = field(default_factory=dict)
    customers: dict[CustomerKey, CustomerRecomputed] = field(default_factory=dict)
    # Increments keyed by (tenant, currency, month, plan).
    figures: dict[tuple[str, str, date, str], dict[str, int]] = field(default_factory=dict)


class MrrProjection(BatchProjection[MrrView]):
    name = "mrr"
    topics = tuple(get_topic(cls) for cls in EVENT_CLASSES)

    def fold(self, events: Sequence[Any]) -> MrrChanges:
        started = {e.originator_id for e in events if isinstance(e, Subscription.Started)}
        changed_ids = {e.originator_id for e in events if getattr(e, "mrr", None) is not None}
        with self.view.reading() as curs:
            subscriptions = self.view.subscriptions_of(curs, ids=changed_ids - started)
            changes = MrrChanges()
            touched: set[CustomerKey] = set()
            for e in events:
                if isinstance(e, Subscription.Started):
                    subscriptions[e.originator_id] = {
                        "subscription_id": e.originator_id,
                        "tenant_id": e.tenant_id,
                        "customer_id": e.customer_id,
                        "currency": e.currency,
                        "points": [],
                    }
                if getattr(e, "mrr", None) is None:
                    continue
                row = subscriptions[e.originator_id]
                row["points"] = replace_points(row["points"], e.mrr)
                changes.subscriptions[e.originator_id] = row
                touched.add((row["customer_id"], row["currency"]))
            # Every subscription of a recomputed customer, the batch's own versions first.
            siblings = self.view.subscriptions_of(curs, customers={k[0] for k in touched})
            old = self.view.contributions_of(curs, touched)
        for subscription_id, row in siblings.items():
            subscriptions.setdefault(subscription_id, row)
        self._recompute(changes, touched, subscriptions, old)
        return changes

    def _recompute(
        self,
        changes: MrrChanges,
        touched: set[CustomerKey],
        subscriptions: Mapping[UUID, dict[str, Any]],
        old: Mapping[CustomerKey, Contributions],
    ) -> None:
        by_customer: dict[CustomerKey, dict[str, list[MrrPoint]]] = {k: {} for k in touched}
        tenants: dict[CustomerKey, str] = {}
        for subscription_id, row in subscriptions.items():
            key = (row["customer_id"], row["currency"])
            if key in by_customer:
                by_customer[key][str(subscription_id)] = row["points"]
                tenants[key] = row["tenant_id"]
        for key in sorted(touched):
            history = classify(by_customer[key])
            new = contributions(history)
            tenant_id = tenants[key]
            changes.customers[key] = CustomerRecomputed(tenant_id, new, history.movements)
            for (month, plan_id), row in difference(new, old.get(key, {})).items():
                figure = changes.figures.setdefault((tenant_id, key[1], month, plan_id), {})
                for counter, value in row.items():
                    figure[counter] = figure.get(counter, 0) + value


def _subscription(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **row,
        "points": [MrrPoint(instant(at), int(mrr), str(plan)) for at, mrr, plan in row["points"]],
    }


def _points_json(points: Sequence[MrrPoint]) -> list[list[Any]]:
    return [[p.at.isoformat(), p.mrr_minor, p.plan_id] for p in points]


def _contributions_json(rows: Contributions) -> str:
    return orjson.dumps(
        [[month.isoformat(), plan_id, rows[(month, plan_id)]] for month, plan_id in sorted(rows)],
        option=orjson.OPT_SORT_KEYS,
    ).decode()
