"""Processes starting together (``ledger serve --workers N``) bootstrap one schema at once: the
tables are created one process at a time, so none fails on concurrent DDL."""

from __future__ import annotations

import threading

from adapters.bootstrap import Services, bootstrap
from adapters.settings import Settings


def test_four_processes_bootstrapping_one_new_schema_at_once_all_start(
    test_settings: Settings,
) -> None:
    settings = test_settings  # a new schema, dropped after the test
    started: list[Services] = []
    failures: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        barrier.wait()
        try:
            started.append(bootstrap(settings))
        except BaseException as error:  # noqa: BLE001 - reported below
            failures.append(error)

    threads = [threading.Thread(target=start) for _ in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures, failures
        assert len(started) == 4
    finally:
        for services in started:
            services.close()
