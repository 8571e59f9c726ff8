"""Reconciliation of gateway calls whose outcome nobody learnt.

A purchase or authorization whose answer was lost (or whose process died between the intent and
the outcome) leaves its order ``processing``; a capture, void or refund leaves a call pending on
the order. A client that retries with its key finishes it; one that never does would leave it
there for ever. The reconciler finds such calls in the read model once they are older than the
claim lease (no request can still be running for them) and asks the ledger to finish them: the
call is repeated with its own gateway idempotency key, so the processor answers with the original
transaction, if any, and nothing moves twice.

A call that stays unknown is tried again on a schedule — 5 minutes, 1 hour, then daily — and
never holds up the others: each is tried on its own, and a failure is logged and skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

from psycopg.sql import SQL

from adapters.metrics import PAYMENTS_RECONCILED
from adapters.periodic import Periodic
from application.ledger import Ledger
from projections.order_summaries import OrderSummariesView

logger = logging.getLogger(__name__)

RETRY_DELAYS_S = (300.0, 3600.0, 86400.0)


class PaymentReconciler:
    def __init__(
        self,
        ledger: Ledger,
        orders: Callable[[], OrderSummariesView],
        *,
        after_s: float,
        interval_s: float,
        batch_size: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ledger = ledger
        self.orders = orders
        self.after_s = after_s
        self.batch_size = batch_size
        self._clock = clock
        # Call -> (unknown results so far, not before): the schedule of calls still unknown.
        self._retries: dict[str, tuple[int, float]] = {}
        self._periodic = Periodic("payment-reconciler", interval_s, self.reconcile)

    def stuck_attempts(self) -> list[UUID]:
        """The last attempts of orders still processing after ``after_s``, oldest first."""
        return [
            row["last_attempt_id"]
            for row in self._query(
                "SELECT last_attempt_id FROM {} WHERE status = 'processing'"
                " AND last_attempt_id IS NOT NULL"
                " AND updated_at < now() - make_interval(secs => %s)"
                " ORDER BY updated_at LIMIT %s"
            )
        ]

    def stuck_calls(self) -> list[tuple[UUID, str]]:
        """(order, call) of captures, voids and refunds pending after ``after_s``, oldest first."""
        return [
            (row["order_id"], row["call_id"])
            for row in self._query(
                "SELECT o.order_id, c.key AS call_id FROM {} o,"
                " jsonb_each(o.pending_calls) c"
                " WHERE o.pending_calls <> '{{}}'::jsonb"
                " AND (c.value->>'since')::timestamptz < now() - make_interval(secs => %s)"
                " ORDER BY c.value->>'since' LIMIT %s"
            )
        ]

    def _query(self, statement: str) -> list[dict[str, Any]]:
        view = self.orders()
        with view.datastore.cursor() as curs:
            # Fetch more than a batch: calls waiting for their next scheduled try are skipped.
            curs.execute(
                SQL(statement).format(view.table("orders")),
                (self.after_s, self.batch_size * 10),
            )
            return [dict(row) for row in curs.fetchall()]

    def reconcile(self) -> dict[str, int]:
        """Try every stuck call that is due; returns how many ended in each status."""
        due: list[tuple[str, Callable[[], str]]] = [
            (str(a), lambda a=a: self.ledger.reconcile_attempt(a)) for a in self.stuck_attempts()
        ] + [
            (c, lambda o=o, c=c: self.ledger.reconcile_call(o, c)) for o, c in self.stuck_calls()
        ]
        outcomes: dict[str, int] = {}
        for call_id, finish in [d for d in due if self._is_due(d[0])][: self.batch_size]:
            try:
                status = finish()
            except Exception:
                logger.warning("reconciling %s failed; trying again later", call_id, exc_info=True)
                status = "error"
            self._schedule(call_id, status)
            outcomes[status] = outcomes.get(status, 0) + 1
            PAYMENTS_RECONCILED.labels(status).inc()
        if outcomes:
            logger.warning("reconciled payment calls: %s", outcomes)
        return outcomes

    def _is_due(self, call_id: str) -> bool:
        return self._retries.get(call_id, (0, 0.0))[1] <= self._clock()

    def _schedule(self, call_id: str, status: str) -> None:
        if status not in ("unknown", "error"):
            self._retries.pop(call_id, None)
            return
        tries = self._retries.get(call_id, (0, 0.0))[0]
        delay_s = RETRY_DELAYS_S[min(tries, len(RETRY_DELAYS_S) - 1)]
        self._retries[call_id] = (tries + 1, self._clock() + delay_s)

    def start(self) -> None:
        self._periodic.start()

    def stop(self) -> None:
        self._periodic.stop()
