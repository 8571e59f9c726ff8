"""Gateway figures for routing: approved volume per month and currency, recent outcomes, and
chargebacks.

``PgGatewayFigures`` keeps them in three PostgreSQL tables: ``gateway_outcomes`` (one row per
routed attempt, unique on the attempt, so a repeated record is a no-op), ``gateway_volume``
(a counter per gateway, month and currency, incremented in the same statement as the outcome's
insert, only when that insert happened) and ``gateway_chargebacks`` (one row per chargeback,
unique on its id). An increment locks one counter row for an instant: concurrent payments
through one gateway wait on each other for microseconds, and never fail.
``MemoryGatewayFigures`` does the same in memory for unit tests.

The chargeback breaker's settled transactions are the gateway's approved outcomes (purchases
and authorizations) recorded in the window: counted from ``gateway_outcomes`` when a
chargeback is opened, which is rare enough for a count over one gateway's month of rows.

Monthly caps hold under concurrency through reservations: when a routed attempt's intent is
recorded, ``reserve`` adds its amount to the month's ``gateway_volume`` counter in the same
statement that checks the cap (an upsert whose update is conditional on the cap: the counter
row's lock orders concurrent reservations, and each sees the one before it), and keeps one row
per attempt in ``gateway_reservations`` (so a second reservation of the same attempt adds
nothing). The counter is therefore the gateway's *committed* volume: approved outcomes plus
reservations still held. An approval settles the reservation (its amount is already counted), a
decline or ``release`` frees it (once), an unknown outcome keeps it until the outcome is learnt.

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

from domain.routing import ChargebackCounts, GatewayHealth

_BEGINNING = datetime.fromisoformat("0001-01-01T00:00:00+00:00")


@dataclass(frozen=True, slots=True)
class _Outcome:
    gateway_id: str
    segment: str
    approved: bool
    at: datetime


@dataclass(slots=True)
class _Reservation:
    gateway_id: str
    month: str
    currency: str
    amount_minor: int
    state: str  # held, settled (approved) or released


class MemoryGatewayFigures:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._outcomes: dict[UUID, _Outcome] = {}  # in recording order
        self._volume: dict[tuple[str, str, str], int] = {}
        self._chargebacks: dict[str, tuple[str, datetime]] = {}  # id: (gateway_id, at)
        self._reservations: dict[UUID, _Reservation] = {}

    def reserve(
        self,
        *,
        gateway_id: str,
        attempt_id: UUID,
        month: str,
        currency: str,
        amount_minor: int,
        cap_minor: int,
    ) -> bool:
        with self._lock:
            held = self._reservations.get(attempt_id)
            if held is not None:
                return held.state != "released"
            key = (gateway_id, month, currency)
            committed = self._volume.get(key, 0)
            if committed + amount_minor > cap_minor:
                return False
            self._volume[key] = committed + amount_minor
            self._reservations[attempt_id] = _Reservation(
                gateway_id, month, currency, amount_minor, "held"
            )
            return True

    def release(self, attempt_id: UUID) -> None:
        with self._lock:
            self._release(attempt_id)

    def _release(self, attempt_id: UUID) -> None:
        held = self._reservations.get(attempt_id)
        if held is None or held.state != "held":
            return
        held.state = "released"
        key = (held.gateway_id, held.month, held.currency)
        self._volume[key] = self._volume.get(key, 0) - held.amount_minor

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
            held = self._reservations.get(attempt_id)
            if not approved:
                self._release(attempt_id)
            elif held is not None and held.state == "held":
                held.state = "settled"  # its amount is already counted
            else:
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

    def approved_volume(
        self, gateway_ids: Sequence[str], *, month: str
    ) -> dict[str, dict[str, int]]:
        with self._lock:
            volume = dict(self._volume)
        result: dict[str, dict[str, int]] = {gateway_id: {} for gateway_id in gateway_ids}
        for (gateway_id, of_month, currency), amount in volume.items():
            if gateway_id in result and of_month == month:
                result[gateway_id][currency] = amount
        return result

    def record_chargeback(self, *, gateway_id: str, chargeback_id: str, at: datetime) -> None:
        with self._lock:
            self._chargebacks.setdefault(chargeback_id, (gateway_id, at))

    def chargeback_counts(self, gateway_id: str, *, since: datetime) -> ChargebackCounts:
        with self._lock:
            return ChargebackCounts(
                chargebacks=sum(
                    1
                    for gateway, at in self._chargebacks.values()
                    if gateway == gateway_id and at >= since
                ),
                settled_transactions=sum(
                    1
                    for o in self._outcomes.values()
                    if o.gateway_id == gateway_id and o.approved and o.at >= since
                ),
            )


class PgGatewayFigures:
    def __init__(self, datastore: PostgresDatastore) -> None:
        self.datastore = datastore
        schema = Identifier(datastore.schema or "public")
        self.outcomes: Composed = SQL("{}.{}").format(schema, Identifier("gateway_outcomes"))
        self.volume: Composed = SQL("{}.{}").format(schema, Identifier("gateway_volume"))
        self.chargebacks: Composed = SQL("{}.{}").format(schema, Identifier("gateway_chargebacks"))
        self.reservations: Composed = SQL("{}.{}").format(
            schema, Identifier("gateway_reservations")
        )

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
            curs.execute(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    " attempt_id uuid PRIMARY KEY,"
                    " gateway_id text NOT NULL,"
                    " month text NOT NULL,"
                    " currency text NOT NULL,"
                    " amount_minor bigint NOT NULL,"
                    " state text NOT NULL,"
                    " reserved_at timestamptz NOT NULL DEFAULT now())"
                ).format(self.reservations)
            )
            curs.execute(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    " chargeback_id text PRIMARY KEY,"
                    " gateway_id text NOT NULL,"
                    " recorded_at timestamptz NOT NULL)"
                ).format(self.chargebacks)
            )
            curs.execute(
                SQL(
                    "CREATE INDEX IF NOT EXISTS gateway_chargebacks_gateway_idx"
                    " ON {} (gateway_id, recorded_at)"
                ).format(self.chargebacks)
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
        # One statement in autocommit mode, and only if the outcome is new: a held reservation
        # of the attempt is settled (approved: already counted) or released (declined: its
        # amount leaves the counter); an approval without one adds its amount.
        statement = SQL(
            "WITH inserted AS ("
            " INSERT INTO {outcomes} (attempt_id, gateway_id, segment, approved, recorded_at)"
            " VALUES (%(attempt_id)s, %(gateway_id)s, %(segment)s, %(approved)s, %(at)s)"
            " ON CONFLICT (attempt_id) DO NOTHING RETURNING approved),"
            " reserved AS ("
            " UPDATE {reservations} r"
            " SET state = CASE WHEN i.approved THEN 'settled' ELSE 'released' END"
            " FROM inserted i WHERE r.attempt_id = %(attempt_id)s AND r.state = 'held'"
            " RETURNING r.state, r.gateway_id, r.month, r.currency, r.amount_minor),"
            " freed AS ("
            " UPDATE {volume} v SET approved_minor = v.approved_minor - f.amount_minor"
            " FROM reserved f WHERE f.state = 'released' AND v.gateway_id = f.gateway_id"
            " AND v.month = f.month AND v.currency = f.currency)"
            " INSERT INTO {volume} AS v (gateway_id, month, currency, approved_minor)"
            " SELECT %(gateway_id)s, %(month)s, %(currency)s, %(amount_minor)s"
            " FROM inserted WHERE inserted.approved AND NOT EXISTS (SELECT FROM reserved)"
            " ON CONFLICT (gateway_id, month, currency)"
            " DO UPDATE SET approved_minor = v.approved_minor + EXCLUDED.approved_minor"
        ).format(outcomes=self.outcomes, volume=self.volume, reservations=self.reservations)
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

    def reserve(
        self,
        *,
        gateway_id: str,
        attempt_id: UUID,
        month: str,
        currency: str,
        amount_minor: int,
        cap_minor: int,
    ) -> bool:
        params = {
            "attempt_id": attempt_id,
            "gateway_id": gateway_id,
            "month": month,
            "currency": currency,
            "amount_minor": amount_minor,
            "cap_minor": cap_minor,
        }
        with self.datastore.transaction(commit=True) as curs:
            # A concurrent reservation of the same attempt waits here for this one's commit.
            curs.execute(
                SQL(
                    "INSERT INTO {} (attempt_id, gateway_id, month, currency, amount_minor, state)"
                    " VALUES (%(attempt_id)s, %(gateway_id)s, %(month)s, %(currency)s,"
                    " %(amount_minor)s, 'held')"
                    " ON CONFLICT (attempt_id) DO NOTHING RETURNING attempt_id"
                ).format(self.reservations),
                params,
            )
            if curs.fetchone() is None:
                curs.execute(
                    SQL("SELECT state FROM {} WHERE attempt_id = %(attempt_id)s").format(
                        self.reservations
                    ),
                    params,
                )
                row = curs.fetchone()
                return row is not None and row["state"] != "released"
            # The update locks the counter row and checks the cap on its latest version.
            curs.execute(
                SQL(
                    "INSERT INTO {} AS v (gateway_id, month, currency, approved_minor)"
                    " SELECT %(gateway_id)s, %(month)s, %(currency)s, %(amount_minor)s"
                    " WHERE %(amount_minor)s <= %(cap_minor)s"
                    " ON CONFLICT (gateway_id, month, currency)"
                    " DO UPDATE SET approved_minor = v.approved_minor + EXCLUDED.approved_minor"
                    " WHERE v.approved_minor + EXCLUDED.approved_minor <= %(cap_minor)s"
                    " RETURNING approved_minor"
                ).format(self.volume),
                params,
            )
            if curs.fetchone() is not None:
                return True
            curs.execute(
                SQL("DELETE FROM {} WHERE attempt_id = %(attempt_id)s").format(self.reservations),
                params,
            )
            return False

    def release(self, attempt_id: UUID) -> None:
        # One statement: the state changes once, so the amount leaves the counter once.
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                SQL(
                    "WITH released AS ("
                    " UPDATE {reservations} SET state = 'released'"
                    " WHERE attempt_id = %(attempt_id)s AND state = 'held'"
                    " RETURNING gateway_id, month, currency, amount_minor)"
                    " UPDATE {volume} v SET approved_minor = v.approved_minor - r.amount_minor"
                    " FROM released r WHERE v.gateway_id = r.gateway_id AND v.month = r.month"
                    " AND v.currency = r.currency"
                ).format(reservations=self.reservations, volume=self.volume),
                {"attempt_id": attempt_id},
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

    def approved_volume(
        self, gateway_ids: Sequence[str], *, month: str
    ) -> dict[str, dict[str, int]]:
        ids = list(gateway_ids)
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL(
                    "SELECT gateway_id, currency, approved_minor FROM {}"
                    " WHERE gateway_id = ANY(%s) AND month = %s"
                ).format(self.volume),
                (ids, month),
            )
            rows = curs.fetchall()
        result: dict[str, dict[str, int]] = {gateway_id: {} for gateway_id in ids}
        for row in rows:
            result[row["gateway_id"]][row["currency"]] = int(row["approved_minor"])
        return result

    def record_chargeback(self, *, gateway_id: str, chargeback_id: str, at: datetime) -> None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                SQL(
                    "INSERT INTO {} (chargeback_id, gateway_id, recorded_at)"
                    " VALUES (%s, %s, %s) ON CONFLICT (chargeback_id) DO NOTHING"
                ).format(self.chargebacks),
                (chargeback_id, gateway_id, at),
            )

    def chargeback_counts(self, gateway_id: str, *, since: datetime) -> ChargebackCounts:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL(
                    "SELECT (SELECT count(*) FROM {chargebacks}"
                    "  WHERE gateway_id = %(gateway_id)s AND recorded_at >= %(since)s)"
                    "  AS chargebacks,"
                    " (SELECT count(*) FROM {outcomes}"
                    "  WHERE gateway_id = %(gateway_id)s AND approved"
                    "  AND recorded_at >= %(since)s) AS settled_transactions"
                ).format(chargebacks=self.chargebacks, outcomes=self.outcomes),
                {"gateway_id": gateway_id, "since": since},
            )
            row = curs.fetchone()
        assert row is not None
        return ChargebackCounts(
            chargebacks=int(row["chargebacks"]),
            settled_transactions=int(row["settled_transactions"]),
        )
