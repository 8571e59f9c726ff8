"""The account updater: cards about to expire are refreshed before a renewal fails on them.

Once a day (``account_updater_interval_s``) the worker asks the vault (``Vault.updated_card``;
the sandbox answers deterministically from the card number) for the current details of every
card, expiring within ``within_days``, of a customer with a live subscription (trialing, active
or past due: from the subscriptions read model). A refreshed card is kept on the customer
(``Customer.CardReplaced``) and the customer's past-due subscriptions paid with it are retried
at once, as after ``PUT /v1/customers/{id}/payment-methods/{pm}``. ``POST
/v1/billing/account-updater/run`` (admin) runs it for one tenant, now.

Safe to repeat: a card the vault has nothing newer for is left as it is, and each retry runs
under its period's and retry's own idempotency key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from uuid import UUID

from adapters.periodic import Periodic
from application.ledger import Ledger
from domain.errors import DomainError

logger = logging.getLogger(__name__)

PAGE_SIZE = 500


def run_account_updater(
    ledger: Ledger,
    subscriptions: Any,
    *,
    tenant_id: str | None = None,
    within_days: int = 31,
) -> dict[str, int]:
    """Refresh the expiring cards of customers with live subscriptions (of ``tenant_id``, or
    of every tenant); retry what became payable. Returns ``{customers, cards_updated,
    retried}``."""
    counts = {"customers": 0, "cards_updated": 0, "retried": 0}
    after: tuple[str, UUID] | None = None
    while True:
        page = subscriptions.billable_customers(tenant_id=tenant_id, after=after, limit=PAGE_SIZE)
        for tenant, customer_id in page:
            counts["customers"] += 1
            try:
                updated = ledger.refresh_expiring_cards(
                    tenant_id=tenant, customer_id=customer_id, within_days=within_days
                )
            except DomainError as error:
                logger.warning("account updater: customer %s: %s", customer_id, error.code)
                continue
            counts["cards_updated"] += len(updated)
            if not updated:
                continue
            past_due = subscriptions.list(
                tenant, customer_id=customer_id, status="past_due", limit=100
            )
            for method_id in updated:
                counts["retried"] += ledger.retry_past_due(
                    tenant_id=tenant,
                    subscription_ids=[row["subscription_id"] for row in past_due],
                    payment_method_id=method_id,
                )
        if len(page) < PAGE_SIZE:
            return counts
        after = page[-1]


class AccountUpdater:
    """Runs ``run_account_updater`` for every tenant once per interval, in the worker."""

    def __init__(
        self, ledger: Ledger, subscriptions: Callable[[], Any], *, interval_s: float
    ) -> None:
        self.ledger = ledger
        self.subscriptions = subscriptions
        self._periodic = Periodic("account-updater", interval_s, self.run)

    def run(self) -> dict[str, int]:
        counts = run_account_updater(self.ledger, self.subscriptions())
        if counts["cards_updated"]:
            logger.info("account updater: %s", counts)
        return counts

    def start(self) -> None:
        self._periodic.start()

    def stop(self) -> None:
        self._periodic.stop()
