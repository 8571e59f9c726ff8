"""Group commit: many commands, one transaction; each keeps its own outcome."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, OperationalError

from adapters.bootstrap import Services
from adapters.event_store import LedgerApplicationRecorder

pytestmark = pytest.mark.integration


class Counter(Aggregate):
    def __init__(self) -> None:
        self.count = 0

    def increment(self) -> None:
        self._incremented()

    from eventsourcing.domain import event as _event

    @_event("Incremented")
    def _incremented(self) -> None:
        self.count += 1


def recorder_of(services: Services) -> LedgerApplicationRecorder:
    recorder = services.ledger.recorder
    assert isinstance(recorder, LedgerApplicationRecorder)
    return recorder


def run_together(calls: list[Callable[[], Any]]) -> list[Any]:
    """Start every call at the same moment; return each one's result or exception."""
    results: list[Any] = [None] * len(calls)
    barrier = threading.Barrier(len(calls), timeout=30)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = calls[index]()
        except BaseException as error:  # each caller's own outcome
            results[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_concurrent_saves_with_conflicts_mixed_in_commit_each_good_one_exactly_once(
    services: Services,
) -> None:
    ledger = services.ledger
    recorder = recorder_of(services)
    shared = Counter()
    ledger.save(shared)
    # Sixteen saves of new aggregates, and sixteen copies of one aggregate all taking version 2.
    fresh = [Counter() for _ in range(16)]
    copies = []
    for _ in range(16):
        copy = ledger.repository.get(shared.id)
        copy.increment()
        copies.append(copy)
    batches_before = recorder.batches_committed

    results = run_together(
        [lambda a=a: ledger.save(a) for a in fresh] + [lambda c=c: ledger.save(c) for c in copies]
    )

    fresh_results, copy_results = results[:16], results[16:]
    assert all(not isinstance(r, BaseException) for r in fresh_results), fresh_results
    winners = [r for r in copy_results if not isinstance(r, BaseException)]
    losers = [r for r in copy_results if isinstance(r, BaseException)]
    assert len(winners) == 1
    assert len(losers) == 15 and all(isinstance(r, IntegrityError) for r in losers)
    assert ledger.repository.get(shared.id).count == 1
    for aggregate in fresh:
        assert ledger.repository.get(aggregate.id).version == 1
    # Every committed save has its own notification ids, and the log holds each once, in order.
    # (A batch rolled back for a conflict leaves unused sequence numbers, as any rolled-back
    # insert does; the table lock still makes ids commit in order, so readers miss nothing.)
    ids = [n for r in [*fresh_results, *winners] for n in (x.notification.id for x in r)]
    assert len(ids) == len(set(ids)) == 17
    log = ledger.recorder.select_notifications(start=1, limit=1000)
    assert [n.id for n in log] == sorted(n.id for n in log)
    assert {n.id for n in log} == set(ids) | {log[0].id}
    assert len(log) == 18  # the first save of ``shared`` and the 17 above
    # The saves were grouped: fewer transactions than saves (the first goes alone, at once).
    assert recorder.batches_committed - batches_before < 17


def test_a_lone_save_commits_in_a_transaction_of_its_own(services: Services) -> None:
    recorder = recorder_of(services)
    before = (recorder.batches_committed, recorder.saves_committed)

    services.ledger.save(Counter())

    assert (recorder.batches_committed, recorder.saves_committed) == (before[0] + 1, before[1] + 1)


def test_a_batch_that_fails_mid_way_stores_none_of_its_saves_and_tells_every_caller(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = services.ledger
    recorder = recorder_of(services)
    head = recorder.max_notification_id() or 0
    insert = recorder._insert
    entered = threading.Event()
    release = threading.Event()
    failed_batches: list[int] = []

    def slow_then_crash(curs: Any, saves: list[Any], **kwargs: Any) -> None:
        if not entered.is_set():
            entered.set()  # the first batch holds the lock while the others queue up
            release.wait(10)
            insert(curs, saves, **kwargs)
            return
        insert(curs, saves, **kwargs)  # written inside the transaction ...
        failed_batches.append(len(saves))
        raise OperationalError("the connection was lost mid-batch")  # ... and never committed

    monkeypatch.setattr(recorder, "_insert", slow_then_crash)
    first = threading.Thread(target=lambda: ledger.save(Counter()))
    first.start()
    assert entered.wait(10)
    waiting = [Counter() for _ in range(8)]
    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda a=a: results.append(_outcome(lambda: ledger.save(a))))
        for a in waiting
    ]
    for thread in threads:
        thread.start()
    _wait_until(lambda: len(recorder._queue) == 8)
    release.set()
    first.join(10)
    for thread in threads:
        thread.join(10)

    # The eight waiting saves failed together as one batch (and again on their one retry).
    assert failed_batches[0] == 8
    assert len(results) == 8
    assert all(isinstance(r, OperationalError) for r in results)
    stored = ledger.recorder.select_notifications(start=head + 1, limit=100)
    assert len(stored) == 1  # only the first save: nothing of the failed batch
    assert not {n.originator_id for n in stored} & {a.id for a in waiting}
    monkeypatch.undo()
    services.ledger.save(Counter())  # the store goes on


def test_live_subscribers_miss_nothing_under_concurrent_commands(
    running_services: Services,
) -> None:
    ledger = running_services.ledger
    customers = [
        ledger.register_customer(
            tenant_id="acme", email=f"c{i}@example.com", name="C", country="US", currency="USD"
        )
        for i in range(4)
    ]
    calls = [
        lambda c=c: ledger.place_order(
            tenant_id="acme",
            customer_id=_uuid(c.body["id"]),
            currency="USD",
            lines=[{"sku": "A", "quantity": 1, "unit_price_minor": 100}],
        )
        for c in customers
        for _ in range(10)
    ]
    results = run_together(calls)
    assert all(not isinstance(r, BaseException) for r in results)
    head = max(r.position for r in results)
    assert running_services.waiter.wait(running_services.orders, head, 10)

    for customer in customers:
        rows = running_services.orders.list(
            "acme", customer_id=_uuid(customer.body["id"]), limit=50
        )
        assert len(rows) == 10


def _uuid(text: str) -> Any:
    from uuid import UUID

    return UUID(text)


def _outcome(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except BaseException as error:
        return error


def _wait_until(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    done = threading.Event()
    for _ in range(int(timeout_s * 100)):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError("condition not reached")
