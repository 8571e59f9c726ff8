"""The billing scheduler without servers: dramatiq's StubBroker, a ledger that answers as told,
a read model that lists what it is given."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from adapters.billing_scheduler import BILLING_QUEUE, BillingScheduler, outcome_of, run_due
from application.commands import CommandResult, ConcurrentModification, GatewayOutcomeUnknown
from application.idempotency import IdempotencyKeyInProgress

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def result(status: str, *, pending: bool = False, replayed: bool = False) -> CommandResult:
    body = {"status": status, "pending_charge": {"key": "k"} if pending else None}
    return CommandResult(body, position=1, replayed=replayed)


class AnsweringLedger:
    """``advance_subscription`` answers (or raises) what the test set for each subscription,
    and records every call."""

    def __init__(self, answers: dict[UUID, Any]) -> None:
        self.answers = answers
        self.calls: list[UUID] = []

    def now(self) -> datetime:
        return NOW

    def advance_subscription(self, *, tenant_id: str, subscription_id: UUID) -> Any:
        self.calls.append(subscription_id)
        answer = self.answers[subscription_id]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def advance_subscriptions(self, due: list[tuple[str, UUID]]) -> list[Any]:
        answers = []
        for tenant_id, subscription_id in due:
            try:
                answers.append(
                    self.advance_subscription(tenant_id=tenant_id, subscription_id=subscription_id)
                )
            except Exception as error:
                answers.append(error)
        return answers


class ListedView:
    """The due query of the read model over a list of (tenant, subscription, due_at)."""

    def __init__(self, entries: list[tuple[str, UUID, datetime]]) -> None:
        self.entries = entries

    def due_entries(self, now: datetime, limit: int, *, tenant_id: str | None = None) -> list:
        return [e for e in self.entries if e[2] <= now and tenant_id in (None, e[0])][:limit]

    def due(self, now: datetime, limit: int, *, tenant_id: str | None = None) -> list:
        return [(t, s) for t, s, _ in self.due_entries(now, limit, tenant_id=tenant_id)]


@pytest.fixture
def broker() -> Iterator[StubBroker]:
    stub = StubBroker()
    stub.emit_after("process_boot")
    yield stub
    stub.close()


def test_each_outcome_is_named_from_the_subscription_the_ledger_answers_with() -> None:
    assert outcome_of(None) == "skipped"
    assert outcome_of(result("active")) == "renewed"
    assert outcome_of(result("active", replayed=True)) == "skipped"
    assert outcome_of(result("past_due")) == "failed"
    assert outcome_of(result("cancelled")) == "ended"
    assert outcome_of(result("churned")) == "churned"
    assert outcome_of(result("active", pending=True)) == "unknown"


def test_a_run_counts_every_outcome_and_one_failure_does_not_stop_the_others() -> None:
    answers: dict[UUID, Any] = {
        uuid4(): result("active"),
        uuid4(): result("past_due"),
        uuid4(): None,
        uuid4(): IdempotencyKeyInProgress("in progress"),
        uuid4(): ConcurrentModification("changed"),
        uuid4(): GatewayOutcomeUnknown("no answer", idempotency_key="k"),
        uuid4(): RuntimeError("database away"),
        uuid4(): result("churned"),
    }
    ledger = AnsweringLedger(answers)
    view = ListedView([("acme", s, NOW) for s in answers])

    summary = run_due(ledger, view)  # type: ignore[arg-type]

    assert summary == {
        "due": 8, "renewed": 1, "failed": 1, "ended": 0, "churned": 1, "unknown": 1,
        "skipped": 3, "errors": 1,
    }  # fmt: skip
    assert ledger.calls == list(answers)


def test_a_run_for_a_tenant_advances_only_that_tenants_subscriptions_due_by_now() -> None:
    mine, theirs, later = uuid4(), uuid4(), uuid4()
    ledger = AnsweringLedger(dict.fromkeys((mine, theirs, later), result("active")))
    view = ListedView(
        [("acme", mine, NOW), ("globex", theirs, NOW), ("acme", later, NOW + timedelta(1))]
    )

    assert run_due(ledger, view, tenant_id="acme")["renewed"] == 1  # type: ignore[arg-type]
    assert ledger.calls == [mine]


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.at = 0.0

    def __call__(self) -> float:
        return self.at


def test_a_tick_enqueues_each_due_subscription_once_until_its_due_at_changes_or_time_passes(
    broker: StubBroker,
) -> None:
    first, second = uuid4(), uuid4()
    view = ListedView([("acme", first, NOW), ("acme", second, NOW - timedelta(hours=1))])
    ticks = Ticks()
    scheduler = BillingScheduler(
        AnsweringLedger({}),  # type: ignore[arg-type]
        lambda: view,  # type: ignore[arg-type,return-value]
        broker,
        interval_s=60,
        requeue_after_s=300,
        clock=ticks,
    )

    assert scheduler.tick() == 2
    assert scheduler.tick() == 0
    view.entries[0] = ("acme", first, NOW - timedelta(minutes=1))  # due again, for another reason
    assert scheduler.tick() == 1
    ticks.at = 301.0  # a message the broker lost is sent again
    assert scheduler.tick() == 2
    queued = [tuple(item) for m in _drain(broker) for item in m.args[0]]
    assert queued == [("acme", str(s)) for s in (first, second, first, first, second)]


def _drain(broker: StubBroker) -> list[dramatiq.Message[Any]]:
    queue = broker.queues[BILLING_QUEUE]
    messages = []
    while not queue.empty():
        messages.append(dramatiq.Message.decode(queue.get_nowait()))
    return messages


def test_the_actor_drops_a_subscription_another_worker_is_advancing_without_retrying(
    broker: StubBroker,
) -> None:
    busy, gone = uuid4(), uuid4()
    ledger = AnsweringLedger(
        {busy: IdempotencyKeyInProgress("in progress"), gone: result("active")}
    )
    scheduler = BillingScheduler(
        ledger,  # type: ignore[arg-type]
        lambda: ListedView([]),  # type: ignore[arg-type,return-value]
        broker,
        interval_s=60,
    )
    worker = dramatiq.Worker(broker, worker_timeout=100)
    worker.start()
    try:
        scheduler.advance_subscription.send("acme", str(busy))
        scheduler.advance_subscription.send("acme", str(gone))
        broker.join(BILLING_QUEUE, fail_fast=True)
        worker.join()
    finally:
        worker.stop()

    assert sorted(map(str, ledger.calls)) == sorted([str(busy), str(gone)])  # once each
    actor = scheduler.advance_subscription
    assert actor.queue_name == BILLING_QUEUE
    assert (actor.options["max_retries"], actor.options["time_limit"]) == (3, 60_000)
