"""Group commit under interrupts: a signal in one caller never strands or reaches the others."""

from __future__ import annotations

import signal
import threading
from typing import Any

import pytest
from eventsourcing.domain import Aggregate

from adapters.bootstrap import Services
from adapters.event_store import LedgerApplicationRecorder

pytestmark = pytest.mark.integration


class Interrupt(BaseException):
    pass


def _raise(*_: Any) -> None:
    raise Interrupt("signal")


def _wait_until(cond, t=10.0):
    e = threading.Event()
    for _ in range(int(t * 100)):
        if cond():
            return
        e.wait(0.01)
    raise AssertionError("not reached")


def blocking_first_commit(
    recorder: LedgerApplicationRecorder, monkeypatch
) -> tuple[threading.Event, threading.Event]:
    original = recorder._commit_pipelined
    entered, release = threading.Event(), threading.Event()
    calls = []

    def slow(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            entered.set()
            release.wait(20)
        return original(batch)

    monkeypatch.setattr(recorder, "_commit_pipelined", slow)
    return entered, release


def test_a_caller_interrupted_while_waiting_leaves_the_others_committing(
    services: Services, monkeypatch
) -> None:
    ledger, recorder = services.ledger, services.ledger.recorder
    entered, release = blocking_first_commit(recorder, monkeypatch)
    leader = threading.Thread(target=lambda: ledger.save(Aggregate()))
    leader.start()
    assert entered.wait(10)
    old = signal.signal(signal.SIGALRM, _raise)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(Interrupt):
            ledger.save(Aggregate())  # main thread: queued behind the leader, interrupted in wait()
    finally:
        signal.signal(signal.SIGALRM, old)
    release.set()
    leader.join(10)
    assert not leader.is_alive()
    # Leadership was handed to the abandoned save: nobody commits any more.
    later = threading.Thread(target=lambda: ledger.save(Aggregate()), daemon=True)
    later.start()
    later.join(5)
    stuck = later.is_alive()
    if stuck:  # unblock for teardown
        recorder._commit_next_batch()
        later.join(5)
    assert not stuck, "a save after an interrupted follower waits for ever"


def test_an_interrupt_of_the_leader_reaches_no_other_caller(
    services: Services, monkeypatch
) -> None:
    ledger, recorder = services.ledger, services.ledger.recorder
    original = recorder._commit_pipelined
    entered, release, second = threading.Event(), threading.Event(), threading.Event()
    calls = []

    def slow(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            entered.set()
            release.wait(20)
        elif len(calls) == 2:
            second.set()
            threading.Event().wait(5)  # main thread leads this batch; interrupted here
        return original(batch)

    monkeypatch.setattr(recorder, "_commit_pipelined", slow)
    first = threading.Thread(target=lambda: ledger.save(Aggregate()))
    first.start()
    assert entered.wait(10)
    results: list[Any] = []

    def follower() -> None:
        try:
            results.append(ledger.save(Aggregate()))
        except BaseException as e:
            results.append(e)

    old = signal.signal(signal.SIGALRM, _raise)
    try:
        # Main thread enqueues first (queue[0] -> next leader), then three followers.
        main_result: list[Any] = []

        def enqueue_followers() -> None:
            _wait_until(lambda: len(recorder._queue) == 1)
            for _ in range(3):
                threading.Thread(target=follower).start()
            _wait_until(lambda: len(recorder._queue) == 4)
            release.set()
            second.wait(10)
            signal.pthread_kill(threading.main_thread().ident, signal.SIGALRM)

        threading.Thread(target=enqueue_followers).start()
        try:
            ledger.save(Aggregate())
        except Interrupt as e:
            main_result.append(e)
    finally:
        signal.signal(signal.SIGALRM, old)
    _wait_until(lambda: len(results) == 3)
    assert len(main_result) == 1
    # Batch-mates learn only that the batch's outcome was unknown (and their retry commits).
    assert not any(isinstance(r, Interrupt) for r in results)
    assert all(isinstance(r, list) for r in results), results
