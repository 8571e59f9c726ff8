"""Gateway figures for routing: approved volume per month and currency, and recent outcomes.

``PgGatewayFigures`` keeps them in two PostgreSQL tables: ``gateway_outcomes`` (one row per
routed attempt, unique on the attempt, so a repeated record is a no-op) and ``gateway_volume``
(a counter per gateway, month and currency, incremented in the same statement as the outcome's
insert, only when that insert happened). An increment locks one counter row for an instant:
concurrent payments through one gateway wait on each other for microseconds, and never fail.
``MemoryGatewayFigures`` does the same in memory for unit tests.

The tables are derived data: every routed outcome is also a ``PaymentAttempt`` event, and every
routing decision records the figures it used.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from eventsourcing.postgres import PostgresDatastore
from psycopg.sql import SQL, Composed, Identifier

from domain.routing import GatewayHealth

_BEGINNING = datetime.fromisoformat("0001-01-01T00:00:00+00:00")


@dataclass(frozen=True, slots=True)
class _Outcome:
    gateway_id: str
    segment: str
    approved: bool
    at: datetime


class MemoryGatewayFigures:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._outcomes: dict[UUID, _Outcome] = {}  # in recording order
        self._volume: dict[tuple[str, str, str], int] = {}

    def record(
        self,
        *,
        gateway_id: str,
        attempt_id: UUID,
        segment: str,
        approved: bool,
        currency: str,
        amount_minor: int,
        month: str,
        at: datetime,
    ) -> None:
        with self._lock:
            if attempt_id in self._outcomes:
                return
            self._outcomes[attempt_id] = _Outcome(gateway_id, segment, approved, at)
            if approved:
                key = (gateway_id, month, currency)
                self._volume[key] = self._volume.get(key, 0) + amount_minor

    def health(
        self,
        gateway_ids: Sequence[str],
        *,
        month: str,
        since: Mapping[str, datetime | None],
        outcomes_max: int,
    ) -> dict[str, GatewayHealth]:
        with self._lock:
            outcomes = list(self._outcomes.values())
            volume = dict(self._volume)
        result = {}
        for gateway_id in gateway_ids:
            after = since.get(gateway_id) or _BEGINNING
            recent = [
                (o.segment, o.approved)
                for o in outcomes
                if o.gateway_id == gateway_id and o.at > after
            ]
            result[gateway_id] = GatewayHealth(
                approved_minor_by_currency={
                    currency: amount
                    for (gateway, of_month, currency), amount in volume.items()
                    if gateway == gateway_id and of_month == month
                },
                outcomes=tuple(recent[-outcomes_max:]),
            )
        return result


class PgGatewayFigures:
    def __init__(self, datastore: PostgresDatastore) -> None:
        self.datastore = datastore
        schema = Identifier(datastore.schema or "public")
        self.outcomes: Composed = SQL("{}.{}").format(schema, Identifier("gateway_outcomes"))
        self.volume: Composed = SQL("{}.{}").format(schema, Identifier("gateway_volume"))

    def create_tables(self) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    " seq bigserial PRIMARY KEY,"
                    " attempt_id uuid NOT NULL UNIQUE,"
                    " gateway_id text NOT NULL,"
                    " segment text NOT NULL,"
                    " approved boolean NOT NULL,"
                    " recorded_at timestamptz NOT NULL)"
                ).format(self.outcomes)
            )
            curs.execute(
                SQL(
                    "CREATE INDEX IF NOT EXISTS gateway_outcomes_gateway_idx"
                    " ON {} (gateway_id, seq)"
                ).format(self.outcomes)
            )
            curs.execute(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    " gateway_id text NOT NULL,"
                    " month text NOT NULL,"
                    " currency text NOT NULL,"
                    " approved_minor bigint NOT NULL,"
                    " PRIMARY KEY (gateway_id, month, currency))"
                ).format(self.volume)
            )

    def record(
        self,
        *,
        gateway_id: str,
        attempt_id: UUID,
        segment: str,
        approved: bool,
        currency: str,
        amount_minor: int,
        month: str,
        at: datetime,
    ) -> None:
        # One statement in autocommit mode: the volume grows only if the outcome is new.
        statement = SQL(
            "WITH inserted AS ("
            " INSERT INTO {outcomes} (attempt_id, gateway_id, segment, approved, recorded_at)"
            " VALUES (%(attempt_id)s, %(gateway_id)s, %(segment)s, %(approved)s, %(at)s)"
            " ON CONFLICT (attempt_id) DO NOTHING RETURNING approved)"
            " INSERT INTO {volume} AS v (gateway_id, month, currency, approved_minor)"
            " SELECT %(gateway_id)s, %(month)s, %(currency)s, %(amount_minor)s"
            " FROM inserted WHERE inserted.approved"
            " ON CONFLICT (gateway_id, month, currency)"
            " DO UPDATE SET approved_minor = v.approved_minor + EXCLUDED.approved_minor"
        ).format(outcomes=self.outcomes, volume=self.volume)
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                statement,
                {
                    "attempt_id": attempt_id,
                    "gateway_id": gateway_id,
                    "segment": segment,
                    "approved": approved,
                    "at": at,
                    "month": month,
                    "currency": currency,
                    "amount_minor": amount_minor,
                },
            )

    def health(
        self,
        gateway_ids: Sequence[str],
        *,
        month: str,
        since: Mapping[str, datetime | None],
        outcomes_max: int,
    ) -> dict[str, GatewayHealth]:
        ids = list(gateway_ids)
        afters = [since.get(gateway_id) or _BEGINNING for gateway_id in ids]
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL(
                    "SELECT gateway_id, currency, approved_minor FROM {}"
                    " WHERE gateway_id = ANY(%s) AND month = %s"
                ).format(self.volume),
                (ids, month),
            )
            volumes = curs.fetchall()
            curs.execute(
                SQL(
                    "SELECT s.gateway_id, o.segment, o.approved"
                    " FROM unnest(%s::text[], %s::timestamptz[]) AS s(gateway_id, since)"
                    " CROSS JOIN LATERAL (SELECT seq, segment, approved FROM {}"
                    "  WHERE gateway_id = s.gateway_id AND recorded_at > s.since"
                    "  ORDER BY seq DESC LIMIT %s) o"
                    " ORDER BY s.gateway_id, o.seq"
                ).format(self.outcomes),
                (ids, afters, outcomes_max),
            )
            outcomes = curs.fetchall()
        approved: dict[str, dict[str, int]] = {gateway_id: {} for gateway_id in ids}
        for row in volumes:
            approved[row["gateway_id"]][row["currency"]] = int(row["approved_minor"])
        recent: dict[str, list[tuple[str, bool]]] = {gateway_id: [] for gateway_id in ids}
        for row in outcomes:
            recent[row["gateway_id"]].append((row["segment"], bool(row["approved"])))
        return {
            gateway_id: GatewayHealth(
                approved_minor_by_currency=approved[gateway_id],
                outcomes=tuple(recent[gateway_id]),
            )
            for gateway_id in ids
        }
