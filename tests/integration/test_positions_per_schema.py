"""Position announcements are scoped to their schema: NOTIFY channels are database-wide."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from adapters.bootstrap import bootstrap
from tests.integration.conftest import Shop

pytestmark = pytest.mark.integration


def test_another_schemas_positions_do_not_advance_this_schemas_waiter(test_settings):
    other_schema = "test_" + uuid.uuid4().hex[:12]
    here = bootstrap(test_settings)
    there = bootstrap(test_settings.model_copy(update={"db_schema": other_schema}))
    try:
        here.start_listener()  # listening, but no runner applies anything here
        there.start_listener()
        assert here.listener.connected.wait(5) and there.listener.connected.wait(5)
        there.start_runners()
        # The same view names and positions in both schemas: only the schema tells them apart.
        shop_here, shop_there = Shop(here), Shop(there)
        customer_id, method_id = shop_here.customer()
        written_here = shop_here.paid_order(customer_id, method_id)
        customer_id, method_id = shop_there.customer()
        written_there = shop_there.paid_order(customer_id, method_id)
        for _ in range(3):  # more announcements, beyond this schema's head
            written_there = shop_there.paid_order(customer_id, method_id)
        assert there.waiter.wait(there.orders, written_there.position, timeout_s=10)

        assert not here.waiter.wait(here.orders, written_here.position, timeout_s=1.0)
        assert here.orders.position(here.ledger.name) == 0
    finally:
        there.close()
        here.close()
        with psycopg.connect(test_settings.database_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{other_schema}" CASCADE')
