"""``ledger rebuild``: a new version is built beside the serving one, then switched to at once."""

from __future__ import annotations

from uuid import UUID

import pytest
from typer.testing import CliRunner

from adapters.rebuild import rebuild
from api.cli import app
from tests.integration.conftest import Shop

pytestmark = pytest.mark.integration


def _tables(services) -> set[str]:
    with services.ledger.factory.datastore.transaction(commit=False) as curs:
        curs.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (services.settings.db_schema,),
        )
        return {row["table_name"] for row in curs.fetchall()}


def test_a_rebuild_while_serving_never_shows_partial_data_then_switches_to_the_new_version(
    running_services,
):
    services = running_services
    shop = Shop(services)
    customer_id, method_id = shop.customer()
    placed = [shop.paid_order(customer_id, method_id, 100 + i) for i in range(8)]
    assert services.waiter.wait(services.orders, placed[-1].position, timeout_s=10)
    live = services.runners["order_summaries"]
    live.batch_size = 4  # the rebuild copies it: several batches, so several progress reports
    seen: list[int] = []
    during: list = []

    def progress(position: int, head: int) -> None:
        # Between the rebuild's batches: readers still get the whole serving version.
        seen.append(len(services.orders.list("acme", limit=100)))
        if not during:  # a write while rebuilding, applied live to the serving version
            during.append(shop.paid_order(customer_id, method_id, 999))
            assert services.waiter.wait(services.orders, during[0].position, timeout_s=10)
        assert services.orders.name == "order_summaries_v1"

    version = rebuild(live, services.serving, services.database_url, progress=progress)

    assert version == 2
    assert len(seen) > 2
    assert seen[0] == len(placed) and all(count == len(placed) + 1 for count in seen[1:])
    assert services.serving.wait_for_version("order_summaries", 2, timeout_s=5)
    assert services.orders.name == "order_summaries_v2"
    rows = services.orders.list("acme", limit=100)
    assert {row["order_id"] for row in rows} == {
        UUID(result.body["id"]) for result in [*placed, *during]
    }
    # The live runner and the position waiter follow the new version.
    after = shop.paid_order(customer_id, method_id, 7)
    assert services.waiter.wait(services.orders, after.position, timeout_s=10)
    assert services.orders.get("acme", UUID(after.body["id"]))["captured_minor"] == 7
    assert live.view.name == "order_summaries_v2"
    readiness = services.readiness()["projections"]["order_summaries"]
    assert (readiness["version"], readiness["lag"]) == (2, 0)
    assert "order_summaries_v1_orders" in _tables(services)  # kept until --drop-old


def test_rebuild_then_drop_old_from_the_command_line(running_services, test_settings):
    services = running_services
    env = {
        "LEDGER_DATABASE_URL": test_settings.database_url,
        "LEDGER_REDIS_URL": test_settings.redis_url,
        "LEDGER_DB_SCHEMA": test_settings.db_schema,
        "LEDGER_REDIS_NAMESPACE": test_settings.redis_namespace,
    }
    shop = Shop(services)
    customer_id, method_id = shop.customer()
    order = shop.paid_order(customer_id, method_id, 1234)
    assert services.waiter.wait(services.customers, order.position, timeout_s=10)
    before = services.customers.get("acme", customer_id)

    result = CliRunner().invoke(app, ["rebuild", "customer_summaries"], env=env)
    assert result.exit_code == 0, result.output
    assert "version 2 is serving" in result.output
    assert services.serving.wait_for_version("customer_summaries", 2, timeout_s=5)
    assert services.customers.get("acme", customer_id) == before

    result = CliRunner().invoke(app, ["rebuild", "customer_summaries", "--drop-old"], env=env)
    assert result.exit_code == 0, result.output
    tables = _tables(services)
    assert not any(name.startswith("customer_summaries_v1_") for name in tables)
    assert "customer_summaries_v2_customers" in tables
    assert services.customers.get("acme", customer_id) == before
    later = shop.paid_order(customer_id, method_id, 1)
    assert services.waiter.wait(services.customers, later.position, timeout_s=10)
    assert services.customers.get("acme", customer_id)["lifetime_value_minor"] == 1235


def test_retry_parked_while_the_runner_is_live_applies_each_parked_event_once(
    running_services,
):
    services = running_services
    shop = Shop(services)
    customer_id, method_id = shop.customer()
    order = shop.paid_order(customer_id, method_id, 500)
    assert services.waiter.wait(services.customers, order.position, timeout_s=10)
    view = services.customers
    # Park the order's capture as a poison event would have been, and take its effect out.
    captured = [
        n
        for n in services.ledger.recorder.select_notifications(start=1, limit=1000)
        if n.originator_id == UUID(order.body["id"]) and n.topic.endswith("PaymentCaptured")
    ]
    with view.retrying(services.ledger.name) as curs:
        curs.execute(
            f"INSERT INTO {view.dead_letters.as_string(curs)} (notification_id, originator_id,"
            " originator_version, topic, error) VALUES (%s, %s, %s, %s, 'test')",
            (
                captured[0].id,
                captured[0].originator_id,
                captured[0].originator_version,
                captured[0].topic,
            ),
        )
        curs.execute(
            f"UPDATE {view.table('customers').as_string(curs)} SET value_by_currency = '{{}}'"
        )
        curs.execute(f"UPDATE {view.table('orders').as_string(curs)} SET captured_minor = 0")
    retrier = services.runners["customer_summaries"]
    results = [retrier.retry_parked(), retrier.retry_parked()]  # a second run finds nothing
    assert results == [(1, 0), (0, 0)]
    later = shop.paid_order(customer_id, method_id, 50)
    assert services.waiter.wait(view, later.position, timeout_s=10)
    row = view.get("acme", customer_id)
    assert (row["lifetime_value_minor"], row["order_count"]) == (550, 2)
