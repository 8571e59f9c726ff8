"""Fixtures of the billing tests: an in-memory ledger on the sandbox, with a clock the tests
move and the processor's books to count what it executed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from adapters.bootstrap import bootstrap_ledger
from adapters.gateways.sandbox import SandboxGateway
from adapters.gateways.sandbox_book import MemorySandboxBook
from application.ledger import Ledger


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 1, 15, 12, tzinfo=UTC))


@pytest.fixture
def book() -> MemorySandboxBook:
    return MemorySandboxBook()


@pytest.fixture
def ledger(clock: Clock, book: MemorySandboxBook) -> Ledger:
    return bootstrap_ledger(gateway=SandboxGateway(book), now=clock)
