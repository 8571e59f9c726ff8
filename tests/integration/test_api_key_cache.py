"""The API key cache: answers from memory, forgets a key in every process when it changes.

Two bootstrapped systems on one schema stand for two processes: each has its own cache and its
own LISTEN connection. A test waits for the other process's notification (a subscriber added
after the cache's, so it runs once the cache has acted), never for a fixed time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

import adapters.access
from adapters.bootstrap import Services, bootstrap
from application.access import Principal

pytestmark = pytest.mark.integration

NOTIFICATION_WAIT_S = 5


class Heard:
    """Set each time a process has handled a notification of the keys channel."""

    def __init__(self, services: Services) -> None:
        self._event = threading.Event()
        services.listener.subscribe(services.access.channel, lambda _payload: self._event.set())

    def wait(self) -> None:
        assert self._event.wait(NOTIFICATION_WAIT_S), "no notification of the key change"
        self._event.clear()


def _listening(services: Services) -> Services:
    services.start_listener()
    assert services.listener.connected.wait(NOTIFICATION_WAIT_S)
    return services


@pytest.fixture
def other(test_settings) -> Iterator[tuple[Services, Heard]]:
    """A second process on the same schema, listening, with a way to wait for what it hears."""
    built = bootstrap(test_settings)
    heard = Heard(built)
    _listening(built)
    yield built, heard
    built.close()


def test_a_known_key_is_answered_from_memory_once_loaded(services):
    key = services.access.create_key("acme", "agent")
    _listening(services)

    assert services.access.authenticate_cached(key) == (False, None)  # not loaded yet
    assert services.access.authenticate(key) == Principal("acme", "agent")
    assert services.access.authenticate_cached(key) == (True, Principal("acme", "agent"))


def test_without_its_listen_connection_a_process_reads_every_key_from_the_database(services):
    key = services.access.create_key("acme", "agent")

    assert services.access.authenticate(key) == Principal("acme", "agent")
    assert services.access.authenticate_cached(key) == (False, None)


def test_a_revocation_in_one_process_fails_the_key_in_another_at_once(services, other):
    other_services, heard = other
    key = services.access.create_key("acme", "agent")
    heard.wait()
    assert other_services.access.authenticate(key) == Principal("acme", "agent")
    assert other_services.access.authenticate_cached(key)[0]

    (record,) = services.access.list_keys("acme", 10)
    assert services.access.revoke_key(record.id)
    heard.wait()

    assert other_services.access.authenticate_cached(key) == (False, None)
    assert other_services.access.authenticate(key) is None


def test_an_unknown_key_costs_one_lookup_then_is_remembered_until_it_is_created(services, other):
    other_services, heard = other
    key = "lk_" + "k" * 43
    assert other_services.access.authenticate(key) is None
    assert other_services.access.authenticate_cached(key) == (True, None)  # no lookup again

    services.access.create_key("acme", "readonly", key)
    heard.wait()

    assert other_services.access.authenticate_cached(key) == (False, None)
    assert other_services.access.authenticate(key) == Principal("acme", "readonly")


def test_remembered_unknown_keys_are_bounded_oldest_forgotten_first(services, monkeypatch):
    monkeypatch.setattr(adapters.access, "UNKNOWN_DIGESTS_MAX", 3)
    _listening(services)
    unknown = [f"lk_unknown_{n:040d}" for n in range(4)]
    for key in unknown:
        assert services.access.authenticate(key) is None

    assert services.access.authenticate_cached(unknown[0]) == (False, None)
    assert [services.access.authenticate_cached(key) for key in unknown[1:]] == [(True, None)] * 3


def test_a_lost_listen_connection_turns_the_cache_off_until_reconnected(services):
    key = services.access.create_key("acme", "agent")
    _listening(services)
    services.access.authenticate(key)
    assert services.access.authenticate_cached(key)[0]

    services.access.stop_caching()  # what the listener does when its connection fails
    assert services.access.authenticate_cached(key) == (False, None)
    services.access.start_caching()  # and on reconnection: from empty
    assert services.access.authenticate_cached(key) == (False, None)
    assert services.access.authenticate(key) == Principal("acme", "agent")


def test_last_use_is_written_by_the_background_flush_not_by_authentication(services):
    key = services.access.create_key("acme", "agent")
    _listening(services)
    table = f'"{services.settings.db_schema}".ledger_api_keys'

    def last_used_at() -> object:
        with services.ledger.factory.datastore.cursor() as curs:
            curs.execute(f"SELECT last_used_at FROM {table}")
            return curs.fetchone()["last_used_at"]

    services.access.authenticate(key)
    services.access.authenticate(key)
    assert last_used_at() is None

    services.access.flush_last_used()
    assert last_used_at() is not None
