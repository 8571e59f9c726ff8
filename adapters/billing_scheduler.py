"""The billing scheduler: what is due of every subscription is done, spread over the workers.

Every ``interval_s`` each worker process lists the subscriptions due by now from the
subscriptions read model (``SubscriptionsView.due``) and enqueues one ``advance_subscription``
message per subscription, all in one round trip to Redis. The actor asks the ledger to do what
is due (``Ledger.advance_subscription``: renew, retry, learn a lost charge's outcome, end at
period end, churn). The ledger decides from the aggregate, not from the read model, under one
idempotency key per period and retry, so a message delivered twice, two workers on the same
subscription, two ticks in two processes or ``POST /v1/billing/run`` at the same moment charge
a period at most once: the second finds nothing due, replays the first's answer, or is told the
first is still running (``IdempotencyKeyInProgress``, ``ConcurrentModification``) — which is
logged and dropped, not retried, as the next tick looks again.

One worker process ticks at a time (it holds an advisory lock, as a projection runner does;
the others stand by), and a subscription it enqueued for the same ``due_at`` is not enqueued
again for ``requeue_after_s``: ticks that run while the workers are behind do not pile
duplicates on the queue, and a message the broker lost is sent again after that time.

``run_due`` does the same work synchronously, in the caller's thread (``POST /v1/billing/run``,
tests), and counts what happened.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from uuid import UUID

import dramatiq

from adapters.account_updater import run_account_updater
from adapters.jobs import enqueue_many
from adapters.metrics import JOBS_ENQUEUED
from adapters.periodic import Periodic
from adapters.projection_lock import ProjectionLock
from application.billing import SubscriptionNotFound
from application.commands import CommandResult, ConcurrentModification, GatewayOutcomeUnknown
from application.idempotency import IdempotencyKeyInProgress
from application.ledger import Ledger
from domain.errors import DomainError
from projections.subscriptions import SubscriptionsView

logger = logging.getLogger(__name__)

BILLING_QUEUE = "billing"
# Subscriptions looked at per tick (or per synchronous run) at most; the rest wait for the next.
BATCH_SIZE_DEFAULT = 10_000
# Subscriptions advanced together (one message; what they read is fetched in three round trips).
MESSAGE_BATCH = 50
# What ``run_due`` counts, besides ``due``.
OUTCOMES = ("renewed", "failed", "ended", "churned", "unknown", "skipped", "errors")


def outcome_of(result: CommandResult | None) -> str:
    """One word for what ``advance_subscription`` did, from the subscription it answers with.

    ``skipped``: nothing was due (done already, by this run or another) or the answer is a
    replay of another run's. ``renewed`` covers a renewal, a dunning retry that recovered the
    subscription and a lost outcome learnt as paid; ``failed`` a declined renewal or retry.
    """
    if result is None or result.replayed:
        return "skipped"
    body = result.body
    if body.get("pending_charge") is not None:
        return "unknown"
    return {
        "active": "renewed",
        "past_due": "failed",
        "cancelled": "ended",
        "churned": "churned",
    }.get(body["status"], "skipped")


def outcome_of_answer(subscription_id: UUID, answer: CommandResult | Exception | None) -> str:
    """The outcome of one item of ``Ledger.advance_subscriptions`` (see ``advance``)."""
    if isinstance(answer, (IdempotencyKeyInProgress, ConcurrentModification)):
        logger.info("subscription %s is being advanced elsewhere: %s", subscription_id, answer)
        return "skipped"
    if isinstance(answer, GatewayOutcomeUnknown):
        logger.warning("the charge of subscription %s has an unknown outcome", subscription_id)
        return "unknown"
    if isinstance(answer, SubscriptionNotFound):
        logger.warning("no subscription %s to advance", subscription_id)
        return "skipped"
    if isinstance(answer, DomainError):
        logger.warning("advancing subscription %s refused: %s", subscription_id, answer)
        return "errors"
    if isinstance(answer, Exception):
        logger.warning("advancing subscription %s failed: %r", subscription_id, answer)
        return "errors"
    return outcome_of(answer)


def advance(ledger: Ledger, tenant_id: str, subscription_id: UUID) -> str:
    """Do what is due for one subscription; return its outcome (see ``outcome_of``).

    Another run doing the same thing right now (``IdempotencyKeyInProgress``,
    ``ConcurrentModification``) is ``skipped``; a charge whose answer was lost is ``unknown``
    (the scheduler learns it once its lease is over). Raises other errors as they are.
    """
    try:
        result = ledger.advance_subscription(tenant_id=tenant_id, subscription_id=subscription_id)
    except (IdempotencyKeyInProgress, ConcurrentModification) as busy:
        logger.info("subscription %s is being advanced elsewhere: %s", subscription_id, busy)
        return "skipped"
    except GatewayOutcomeUnknown:
        logger.warning("the charge of subscription %s has an unknown outcome", subscription_id)
        return "unknown"
    return outcome_of(result)


def run_due(
    ledger: Ledger,
    view: SubscriptionsView,
    *,
    now: datetime | None = None,
    limit: int = BATCH_SIZE_DEFAULT,
    tenant_id: str | None = None,
) -> dict[str, int]:
    """Advance every subscription due by ``now`` (the ledger's clock by default), of every
    tenant or of ``tenant_id``, one after the other; return how many ended in each outcome.

    One subscription failing is logged and counted (``errors``); the others go on.
    """
    due = view.due(now or ledger.now(), limit, tenant_id=tenant_id)
    summary = {"due": len(due), **dict.fromkeys(OUTCOMES, 0)}
    for start in range(0, len(due), MESSAGE_BATCH):
        chunk = due[start : start + MESSAGE_BATCH]
        try:
            answers = ledger.advance_subscriptions(chunk)
        except Exception:
            logger.warning("advancing %d subscriptions failed", len(chunk), exc_info=True)
            summary["errors"] += len(chunk)
            continue
        for (_, subscription_id), answer in zip(chunk, answers, strict=True):
            summary[outcome_of_answer(subscription_id, answer)] += 1
    if due:
        logger.info("billing run: %s", summary)
    return summary


class BillingScheduler:
    """The periodic tick and the ``advance_subscription`` actor, declared on ``broker``."""

    def __init__(
        self,
        ledger: Ledger,
        subscriptions: Callable[[], SubscriptionsView],
        broker: dramatiq.Broker,
        *,
        interval_s: float,
        batch_size: int = BATCH_SIZE_DEFAULT,
        requeue_after_s: float = 300.0,
        lock: ProjectionLock | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Without ``lock`` every process that starts the scheduler ticks (tests)."""
        self.ledger = ledger
        self.lock = lock
        self.subscriptions = subscriptions
        self.broker = broker
        self.batch_size = batch_size
        self.requeue_after_s = requeue_after_s
        self._clock = clock
        # Subscription -> (the due_at it was enqueued for, when): see the module's docstring.
        self._enqueued: dict[UUID, tuple[datetime, float]] = {}
        self.advance_subscription = dramatiq.Actor(
            self._advance,
            broker=broker,
            actor_name="advance_subscription",
            queue_name=BILLING_QUEUE,
            priority=0,
            options={
                # A failure of the database or the network is retried a few times; the next
                # tick enqueues the subscription again anyway.
                "max_retries": 3,
                "time_limit": 60_000,
                "min_backoff": 1_000,
                "max_backoff": 30_000,
                # Business refusals do not change by retrying: log them, do not retry.
                "throws": (DomainError,),
            },
        )
        # The tick's messages: a batch of due subscriptions each.
        self.advance_subscriptions = dramatiq.Actor(
            self._advance_many,
            broker=broker,
            actor_name="advance_subscriptions",
            queue_name=BILLING_QUEUE,
            priority=0,
            options=dict(self.advance_subscription.options),
        )
        self._periodic = Periodic("billing-scheduler", interval_s, self.tick)

    def _advance_many(self, items: list[list[str]]) -> None:
        due = [(tenant_id, UUID(subscription_id)) for tenant_id, subscription_id in items]
        answers = self.ledger.advance_subscriptions(due)
        outcomes = [outcome_of_answer(s, a) for (_, s), a in zip(due, answers, strict=True)]
        logger.info("advanced %d subscriptions: %s", len(due), Counter(outcomes))

    def _advance(self, tenant_id: str, subscription_id: str) -> None:
        try:
            outcome = advance(self.ledger, tenant_id, UUID(subscription_id))
        except SubscriptionNotFound:
            logger.warning("no subscription %s of %s to advance", subscription_id, tenant_id)
            return
        logger.info("subscription %s advanced: %s", subscription_id, outcome)

    def tick(self, now: datetime | None = None) -> int:
        """Enqueue the subscriptions due by ``now``, ``MESSAGE_BATCH`` per message; return how
        many subscriptions were sent
        (none while another process holds the scheduler's lock)."""
        if self.lock is not None and not (self.lock.still_held() or self.lock.try_acquire()):
            return 0
        view = self.subscriptions()
        now = now or self.ledger.now()
        due = view.due_entries(now, self.batch_size)
        started = self._clock()
        self._enqueued = {
            subscription_id: entry
            for subscription_id, entry in self._enqueued.items()
            if started - entry[1] < self.requeue_after_s
        }
        items = []
        for tenant_id, subscription_id, due_at in due:
            if self._enqueued.get(subscription_id, (None, 0.0))[0] == due_at:
                continue  # still on the queue, most likely
            self._enqueued[subscription_id] = (due_at, started)
            items.append([tenant_id, str(subscription_id)])
        messages = [
            self.advance_subscriptions.message(items[start : start + MESSAGE_BATCH])
            for start in range(0, len(items), MESSAGE_BATCH)
        ]
        enqueue_many(self.broker, messages)
        if items:
            JOBS_ENQUEUED.labels("advance_subscriptions").inc(len(messages))
            logger.info("enqueued %d due subscriptions", len(items))
        return len(items)

    def run_due(
        self, *, tenant_id: str | None = None, now: datetime | None = None
    ) -> dict[str, int]:
        """What is due now, done in this thread (see ``run_due``)."""
        return run_due(
            self.ledger, self.subscriptions(), now=now, limit=self.batch_size, tenant_id=tenant_id
        )

    def run_account_updater(self, *, tenant_id: str | None = None) -> dict[str, int]:
        """The account updater (``adapters.account_updater``) now, in this thread."""
        return run_account_updater(self.ledger, self.subscriptions(), tenant_id=tenant_id)

    def start(self) -> None:
        self._periodic.start()

    def stop(self) -> None:
        self._periodic.stop()
        if self.lock is not None:
            self.lock.release()
