"""Embedded PostgreSQL and Redis: real servers from wheels, stopped cleanly, data kept."""

from __future__ import annotations

import psycopg
import pytest
import redis

from adapters.embedded import EmbeddedPostgres, EmbeddedRedis

pytestmark = pytest.mark.integration


def test_embedded_postgres_keeps_its_data_across_a_stop_and_a_start(tmp_path):
    first = EmbeddedPostgres(tmp_path)
    with psycopg.connect(first.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (value text)")
        conn.execute("INSERT INTO kept VALUES ('survives')")
    first.stop()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(first.url, connect_timeout=2)

    second = EmbeddedPostgres(tmp_path)
    try:
        with psycopg.connect(second.url) as conn:
            assert conn.execute("SELECT value FROM kept").fetchone() == ("survives",)
    finally:
        second.stop()


def test_embedded_redis_keeps_its_data_across_a_stop_and_a_start(tmp_path):
    first = EmbeddedRedis(tmp_path)
    client = redis.Redis.from_url(first.url)
    client.set("kept", "survives")
    client.close()
    first.stop()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(first.url, socket_connect_timeout=2).ping()

    second = EmbeddedRedis(tmp_path)
    try:
        assert redis.Redis.from_url(second.url).get("kept") == b"survives"
    finally:
        second.stop()
