"""The ``subscriptions`` read model: one row per subscription and per plan.

For ``GET /v1/subscriptions``, ``GET /v1/plans`` and the billing scheduler's due query. A
subscription's row holds its whole state (``state``, what the API renders) as the aggregate's
events state it: ``Started`` carries the initial state, every later event the fields it changes,
and the row copies them (``state.update(changes)``). The other columns are copies of state fields
for filtering and indexing; nothing here re-derives a billing rule. ``due_at`` is when the
scheduler should next look at a subscription (a renewal, a dunning retry, a charge left
unanswered); the aggregate itself decides, when loaded, what if anything is due.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.utils import get_topic
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed

from domain.plan import Plan
from domain.subscription import EVENT_CLASSES, Subscription
from projections.base import BatchProjection, BatchView

_SUBSCRIPTION_COLUMNS = (
    "subscription_id",
    "tenant_id",
    "customer_id",
    "plan_id",
    "status",
    "currency",
    "quantity",
    "amount_minor",
    "interval",
    "interval_count",
    "mrr_minor",
    "period_start",
    "period_end",
    "trial_end",
    "paid_through",
    "cancel_at_period_end",
    "due_at",
    "pending_charge",
    "dunning",
    "scheduled_change",
    "ended_at",
    "ended_reason",
    "state",
    "created_at",
    "updated_at",
)
_SUBSCRIPTION_JSONB = frozenset({"pending_charge", "dunning", "scheduled_change", "state"})
# Columns copied from the state as they are, and those copied as instants (ISO in the state).
_STATE_VALUES = (
    "status",
    "currency",
    "quantity",
    "amount_minor",
    "interval",
    "interval_count",
    "mrr_minor",
    "cancel_at_period_end",
    "pending_charge",
    "dunning",
    "scheduled_change",
    "ended_reason",
)
_STATE_INSTANTS = ("period_start", "period_end", "trial_end", "paid_through", "due_at", "ended_at")
_PLAN_COLUMNS = (
    "plan_id",
    "tenant_id",
    "code",
    "name",
    "currency",
    "amount_minor",
    "interval",
    "interval_count",
    "trial_days",
    "setup_fee_minor",
    "created_at",
    "updated_at",
)


def subscription_columns(row: dict[str, Any]) -> dict[str, Any]:
    """A row's indexed columns, copied from its ``state``."""
    state = row["state"]
    columns = {name: state.get(name) for name in _STATE_VALUES}
    for name in _STATE_INSTANTS:
        value = state.get(name)
        columns[name] = None if value is None else datetime.fromisoformat(value)
    columns["plan_id"] = UUID(state["plan_id"])
    return {**row, **columns}


class SubscriptionsView(BatchView):
    base_name = "subscriptions"
    table_suffixes = ("subscriptions", "plans")

    def table_statements(self) -> Iterable[Composed]:
        subscriptions = self.table("subscriptions")
        yield SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " subscription_id uuid PRIMARY KEY,"
            " tenant_id text NOT NULL,"
            " customer_id uuid NOT NULL,"
            " plan_id uuid NOT NULL,"
            " status text NOT NULL,"
            " currency text NOT NULL,"
            " quantity integer NOT NULL,"
            " amount_minor bigint NOT NULL,"
            " interval text NOT NULL,"
            " interval_count integer NOT NULL,"
            " mrr_minor bigint NOT NULL,"
            " period_start timestamptz,"
            " period_end timestamptz,"
            " trial_end timestamptz,"
            " paid_through timestamptz,"
            " cancel_at_period_end boolean NOT NULL,"
            " due_at timestamptz,"
            " pending_charge jsonb,"
            " dunning jsonb,"
            " scheduled_change jsonb,"
            " ended_at timestamptz,"
            " ended_reason text,"
            " state jsonb NOT NULL,"
            " created_at timestamptz NOT NULL,"
            " updated_at timestamptz NOT NULL)"
        ).format(subscriptions)
        for suffix, columns in (
            ("tenant", "tenant_id, created_at DESC, subscription_id DESC"),
            ("customer", "tenant_id, customer_id, created_at DESC, subscription_id DESC"),
            ("status", "tenant_id, status, created_at DESC, subscription_id DESC"),
        ):
            yield SQL("CREATE INDEX IF NOT EXISTS {} ON {} (" + columns + ")").format(
                SQL(f'"{self.name}_subscriptions_{suffix}_idx"'), subscriptions
            )
        # Only the few subscriptions the scheduler has something to look at are indexed.
        yield SQL("CREATE INDEX IF NOT EXISTS {} ON {} (due_at) WHERE due_at IS NOT NULL").format(
            SQL(f'"{self.name}_subscriptions_due_idx"'), subscriptions
        )
        plans = self.table("plans")
        yield SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " plan_id uuid PRIMARY KEY,"
            " tenant_id text NOT NULL,"
            " code text NOT NULL,"
            " name text NOT NULL,"
            " currency text NOT NULL,"
            " amount_minor bigint NOT NULL,"
            " interval text NOT NULL,"
            " interval_count integer NOT NULL,"
            " trial_days integer NOT NULL,"
            " setup_fee_minor bigint NOT NULL,"
            " created_at timestamptz NOT NULL,"
            " updated_at timestamptz NOT NULL)"
        ).format(plans)
        yield SQL(
            "CREATE INDEX IF NOT EXISTS {} ON {} (tenant_id, created_at DESC, plan_id DESC)"
        ).format(SQL(f'"{self.name}_plans_tenant_idx"'), plans)

    def load(
        self, curs: Cursor[DictRow], suffix: str, key: str, ids: Iterable[UUID]
    ) -> dict[UUID, dict[str, Any]]:
        ids = list(ids)
        if not ids:
            return {}
        curs.execute(
            SQL("SELECT * FROM {} WHERE " + key + " = ANY(%s)").format(self.table(suffix)), (ids,)
        )
        return {row[key]: dict(row) for row in curs.fetchall()}

    def write(self, curs: Cursor[DictRow], changes: tuple[dict, dict]) -> None:
        subscriptions, plans = changes
        if subscriptions:
            self.upsert(
                curs,
                "subscriptions",
                _SUBSCRIPTION_COLUMNS,
                (subscription_columns(row) for row in subscriptions.values()),
                jsonb_columns=_SUBSCRIPTION_JSONB,
            )
        if plans:
            self.upsert(curs, "plans", _PLAN_COLUMNS, plans.values())

    # Queries ----------------------------------------------------------------------------------

    def get(self, tenant_id: str, subscription_id: UUID) -> dict[str, Any] | None:
        return self._one("subscriptions", "subscription_id", tenant_id, subscription_id)

    def plan(self, tenant_id: str, plan_id: UUID) -> dict[str, Any] | None:
        return self._one("plans", "plan_id", tenant_id, plan_id)

    def _one(self, suffix: str, key: str, tenant_id: str, id_: UUID) -> dict[str, Any] | None:
        # One SELECT needs no transaction: a pooled connection in autocommit mode.
        with self.datastore.cursor() as curs:
            curs.execute(
                SQL("SELECT * FROM {} WHERE " + key + " = %s AND tenant_id = %s").format(
                    self.table(suffix)
                ),
                (id_, tenant_id),
            )
            row = curs.fetchone()
        return dict(row) if row else None

    def list(
        self,
        tenant_id: str,
        *,
        customer_id: UUID | None = None,
        status: str | None = None,
        after: tuple[datetime, UUID] | None = None,
        limit: int = 20,
    ) -> list[dict[str, Any]]:
        """Newest first; ``after`` is the (created_at, subscription_id) of the last row seen."""
        conditions = ["tenant_id = %s"]
        params: list[Any] = [tenant_id]
        if customer_id is not None:
            conditions.append("customer_id = %s")
            params.append(customer_id)
        if status is not None:
            conditions.append("status = %s")
            params.append(status)
        return self._page("subscriptions", "subscription_id", conditions, params, after, limit)

    def plans(
        self,
        tenant_id: str,
        *,
        after: tuple[datetime, UUID] | None = None,
        limit: int = 20,
    ) -> list[dict[str, Any]]:
        """A tenant's plans, newest first; ``after`` is the (created_at, plan_id) last seen."""
        return self._page("plans", "plan_id", ["tenant_id = %s"], [tenant_id], after, limit)

    def _page(
        self,
        suffix: str,
        key: str,
        conditions: list[str],
        params: list[Any],
        after: tuple[datetime, UUID] | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        if after is not None:
            conditions.append(f"(created_at, {key}) < (%s, %s)")
            params.extend(after)
        params.append(limit)
        statement = SQL(
            "SELECT * FROM {} WHERE " + " AND ".join(conditions) + " "
            f"ORDER BY created_at DESC, {key} DESC LIMIT %s"
        ).format(self.table(suffix))
        with self.datastore.cursor() as curs:
            curs.execute(statement, params)
            return [dict(row) for row in curs.fetchall()]

    def billable_customers(
        self,
        *,
        tenant_id: str | None = None,
        after: tuple[str, UUID] | None = None,
        limit: int = 500,
    ) -> list[tuple[str, UUID]]:
        """(tenant, customer) of every customer with a live (trialing, active or past-due)
        subscription, of every tenant (or of ``tenant_id``), in key order after ``after``."""
        conditions = ["status IN ('trialing', 'active', 'past_due')"]
        params: list[Any] = []
        if tenant_id is not None:
            conditions.append("tenant_id = %s")
            params.append(tenant_id)
        if after is not None:
            conditions.append("(tenant_id, customer_id) > (%s, %s)")
            params.extend(after)
        params.append(limit)
        statement = SQL(
            "SELECT DISTINCT tenant_id, customer_id FROM {} WHERE "
            + " AND ".join(conditions)
            + " ORDER BY tenant_id, customer_id LIMIT %s"
        ).format(self.table("subscriptions"))
        with self.datastore.cursor() as curs:
            curs.execute(statement, params)
            return [(row["tenant_id"], row["customer_id"]) for row in curs.fetchall()]

    def due(
        self, now: datetime, limit: int, *, tenant_id: str | None = None
    ) -> list[tuple[str, UUID]]:
        """(tenant, subscription) of every subscription to look at by ``now``, of every tenant
        (or of ``tenant_id``), the longest due first."""
        return [(t, s) for t, s, _ in self.due_entries(now, limit, tenant_id=tenant_id)]

    def due_entries(
        self, now: datetime, limit: int, *, tenant_id: str | None = None
    ) -> list[tuple[str, UUID, datetime]]:
        """As ``due``, with each subscription's ``due_at``."""
        conditions = ["due_at IS NOT NULL", "due_at <= %s"]
        params: list[Any] = [now]
        if tenant_id is not None:
            conditions.append("tenant_id = %s")
            params.append(tenant_id)
        params.append(limit)
        statement = SQL(
            "SELECT tenant_id, subscription_id, due_at FROM {}"
            " WHERE " + " AND ".join(conditions) + " ORDER BY due_at, subscription_id LIMIT %s"
        ).format(self.table("subscriptions"))
        with self.datastore.cursor() as curs:
            curs.execute(statement, params)
            return [
                (row["tenant_id"], row["subscription_id"], row["due_at"]) for row in curs.fetchall()
            ]


class SubscriptionsProjection(BatchProjection[SubscriptionsView]):
    name = "subscriptions"
    topics = tuple(get_topic(cls) for cls in (*EVENT_CLASSES, Plan.Created, Plan.PriceChanged))

    def fold(self, events: Sequence[Any]) -> tuple[dict, dict]:
        created = {
            e.originator_id for e in events if isinstance(e, (Subscription.Started, Plan.Created))
        }
        subscription_ids = {
            e.originator_id for e in events if isinstance(e, Subscription.Event)
        } - created
        plan_ids = {e.originator_id for e in events if isinstance(e, Plan.Event)} - created
        with self.view.reading() as curs:
            subscriptions = self.view.load(
                curs, "subscriptions", "subscription_id", subscription_ids
            )
            plans = self.view.load(curs, "plans", "plan_id", plan_ids)
        for domain_event in events:
            self.apply(domain_event, subscriptions, plans)
        return subscriptions, plans

    @singledispatchmethod
    def apply(self, domain_event: Any, subscriptions: dict, plans: dict) -> None:
        """Events of other kinds change nothing here."""

    @apply.register
    def _(self, e: Subscription.Started, subscriptions: dict, plans: dict) -> None:
        subscriptions[e.originator_id] = {
            "subscription_id": e.originator_id,
            "tenant_id": e.tenant_id,
            "customer_id": e.customer_id,
            "state": dict(e.state),
            "created_at": e.effective_at,
            "updated_at": e.timestamp,
        }

    @apply.register
    def _(self, e: Subscription.Event, subscriptions: dict, plans: dict) -> None:
        # Every event after ``Started`` states the fields it changes.
        row = subscriptions[e.originator_id]
        row["state"] = {**row["state"], **e.changes}
        row["updated_at"] = e.timestamp

    @apply.register
    def _(self, e: Plan.Created, subscriptions: dict, plans: dict) -> None:
        plans[e.originator_id] = {
            "plan_id": e.originator_id,
            "tenant_id": e.tenant_id,
            "code": e.code,
            "name": e.name,
            "currency": e.currency,
            "amount_minor": e.amount_minor,
            "interval": e.interval,
            "interval_count": e.interval_count,
            "trial_days": e.trial_days,
            "setup_fee_minor": e.setup_fee_minor,
            "created_at": e.timestamp,
            "updated_at": e.timestamp,
        }

    @apply.register
    def _(self, e: Plan.PriceChanged, subscriptions: dict, plans: dict) -> None:
        plans[e.originator_id].update(amount_minor=e.amount_minor, updated_at=e.timestamp)
