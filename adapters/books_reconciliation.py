"""The daily job: yesterday's payments of every tenant reconciled with the processor's books.

Once per UTC day, ``delay_s`` after midnight (the processor's day is complete by then), the job
compares each tenant's calls of the previous day with the processor's transactions
(``application.reconciliation``), settles what the processor can settle through the ledger's
reconciliation commands, and logs one line per tenant with the counts per class; a tenant with
mismatches left for staff is logged as a warning. The report itself is not stored: it is
recomputed on demand by ``GET /v1/reports/reconciliation``.

It runs in every worker process, each once a day: a second run finds the first one's settled
items matched, and its commands are idempotent, so nothing moves twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from adapters.periodic import Periodic
from application.ledger import Ledger
from application.reconciliation import BooksReconciliation, books_reconciliation
from domain.reconciliation import ReconciliationClass

logger = logging.getLogger(__name__)

# What the settling commands answer once they have recorded the processor's outcome.
SETTLED = frozenset({"succeeded", "declined", "resolved"})


class DailyBooksReconciliation:
    def __init__(
        self,
        reconciliation: BooksReconciliation,
        *,
        interval_s: float,
        delay_s: float,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.reconciliation = reconciliation
        self.delay = timedelta(seconds=delay_s)
        self._now = now
        self.last_day: date | None = None
        self._periodic = Periodic("books-reconciliation", interval_s, self.run_if_due)

    @classmethod
    def of(
        cls, ledger: Ledger, sandbox_book: object | None, *, interval_s: float, delay_s: float
    ) -> DailyBooksReconciliation | None:
        """The job for the configured processor, reading each routed gateway's account at its own
        processor when that one offers a listing (``books_reconciliation``); None if the
        configured processor offers no transaction listing."""
        reconciliation = books_reconciliation(ledger, sandbox_book)
        if reconciliation is None:
            logger.info("the processor offers no transaction listing: no daily reconciliation")
            return None
        return cls(reconciliation, interval_s=interval_s, delay_s=delay_s)

    def run_if_due(self) -> dict[str, dict[str, int]]:
        """Reconcile yesterday once it is complete, if not yet done by this process."""
        day = (self._now() - self.delay).date() - timedelta(days=1)
        if self.last_day is not None and day <= self.last_day:
            return {}
        counts = self.run(day)
        self.last_day = day
        return counts

    def run(self, day: date) -> dict[str, dict[str, int]]:
        """Reconcile ``day`` for every tenant with activity on it and settle what can be;
        returns the counts per tenant. A tenant that fails is logged and the others go on."""
        counts: dict[str, dict[str, int]] = {}
        # The log is scanned once for every tenant.
        orders = self.reconciliation.intent_orders(day)
        for tenant_id in sorted(self.reconciliation.tenants_on(day, orders)):
            try:
                report = self.reconciliation.report(
                    tenant_id, day, settle=True, intent_orders=orders
                )
            except Exception:
                logger.warning("reconciling %s for %s failed", day, tenant_id, exc_info=True)
                continue
            counts[tenant_id] = report.result.counts
            mismatched = sum(
                n for name, n in counts[tenant_id].items() if name != ReconciliationClass.MATCHED
            )
            settled = sum(1 for status in report.resolutions.values() if status in SETTLED)
            logger.log(
                logging.WARNING if mismatched > settled else logging.INFO,
                "reconciled %s for %s: %s; settled %s",
                day,
                tenant_id,
                counts[tenant_id],
                report.resolutions and {str(k): v for k, v in report.resolutions.items()},
            )
        return counts

    def start(self) -> None:
        self._periodic.start()

    def stop(self) -> None:
        self._periodic.stop()
