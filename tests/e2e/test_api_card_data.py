"""A card number goes to the vault and nowhere else: not to responses, tables, Redis or logs."""

from __future__ import annotations

import logging

import psycopg
import pytest
import redis
from psycopg import sql

from adapters.bootstrap import Services
from tests.e2e.conftest import GOOD_CARD, Merchant, position

pytestmark = pytest.mark.e2e

SPACED_CARD = "4242 4242 4242 4242"


def test_a_card_number_is_never_returned_stored_or_logged(
    acme: Merchant, running_services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    responses = []
    customer = acme.customer()
    for index, card_number in enumerate((GOOD_CARD, SPACED_CARD)):
        card_path = f"/v1/customers/{customer['id']}/payment-methods"
        card_body = {"card_number": card_number, "exp_month": 12, "exp_year": 2031, "cvc": "123"}
        responses.append(
            acme.post(card_path, card_body, headers={"Idempotency-Key": f"card-{index}"})
        )
        responses.append(
            acme.post(card_path, card_body, headers={"Idempotency-Key": f"card-{index}"})
        )
        responses.append(acme.post(card_path, {**card_body, "exp_month": "12"}))
        responses.append(acme.post(card_path, {**card_body, "exp_year": 1999}))
        responses.append(acme.post(card_path, {**card_body, "card_number": int(GOOD_CARD)}))
        responses.append(acme.post(card_path, {**card_body, "extra": card_number}))
    method_id = responses[0].json()["id"]
    placed = acme.place_order(customer["id"], method_id)
    responses.append(placed)
    responses.append(acme.get(f"/v1/orders/{placed.json()['id']}"))
    responses.append(
        acme.get(f"/v1/customers/{customer['id']}", params={"min_position": position(placed)})
    )

    assert responses[0].status_code == 201
    assert responses[1].headers["Idempotent-Replayed"] == "true"
    assert {response.status_code for response in responses[2:6]} == {422}
    for response in responses:
        assert GOOD_CARD not in response.text
        assert SPACED_CARD not in response.text
    assert GOOD_CARD not in caplog.text
    assert SPACED_CARD not in caplog.text
    stored = stored_text(running_services)
    assert "424242" in stored  # the scan does see card data: the BIN is kept
    assert GOOD_CARD not in stored
    assert GOOD_CARD not in redis_text(running_services)


def stored_text(services: Services) -> str:
    """Every row of every table of the test schema as text, bytea columns decoded."""
    schema = services.settings.db_schema
    chunks: list[str] = []
    with psycopg.connect(services.database_url) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (schema,),
        ).fetchall()
        assert len(tables) >= 5
        for (table,) in tables:
            identifier = sql.Identifier(schema, table)
            query = sql.SQL("SELECT t::text FROM {} t").format(identifier)
            chunks.extend(row[0] for row in conn.execute(query))
        binary_columns = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = %s AND data_type = 'bytea'",
            (schema,),
        ).fetchall()
        assert binary_columns, "the event store keeps event state as bytea"
        for table, column in binary_columns:
            query = sql.SQL("SELECT {} FROM {}").format(
                sql.Identifier(column), sql.Identifier(schema, table)
            )
            chunks.extend(bytes(row[0]).decode("utf-8", "replace") for row in conn.execute(query))
    return "\n".join(chunks)


def redis_text(services: Services) -> str:
    client = redis.Redis.from_url(services.redis_url)
    chunks: list[str] = []
    for key in client.scan_iter(f"{services.settings.redis_namespace}*"):
        kind = client.type(key).decode()
        if kind == "string":
            values = [client.get(key)]
        elif kind == "hash":
            values = list(client.hgetall(key).values())
        elif kind == "list":
            values = client.lrange(key, 0, -1)
        elif kind == "set":
            values = list(client.smembers(key))
        elif kind == "zset":
            values = client.zrange(key, 0, -1)
        else:
            values = []
        chunks.extend(value.decode("utf-8", "replace") for value in values if value)
    return "\n".join(chunks)
