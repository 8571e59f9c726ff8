"""The operator's commands against real PostgreSQL and Redis."""

from __future__ import annotations

from uuid import UUID

import pytest
from typer.testing import CliRunner

from adapters.bootstrap import bootstrap
from api.cli import app

pytestmark = pytest.mark.integration


@pytest.fixture
def cli_env(test_settings) -> dict[str, str]:
    return {
        "LEDGER_DATABASE_URL": test_settings.database_url,
        "LEDGER_REDIS_URL": test_settings.redis_url,
        "LEDGER_DB_SCHEMA": test_settings.db_schema,
        "LEDGER_REDIS_NAMESPACE": test_settings.redis_namespace,
    }


def test_keys_create_prints_a_working_key_alone_on_the_last_line(cli_env, test_settings):
    result = CliRunner().invoke(
        app, ["keys", "create", "--tenant", "shop-7", "--role", "agent"], env=cli_env
    )
    assert result.exit_code == 0, result.output
    key = result.output.strip().splitlines()[-1]
    services = bootstrap(test_settings)
    try:
        principal = services.access.authenticate(key)
    finally:
        services.close()
    assert (principal.tenant_id, principal.role) == ("shop-7", "agent")


def test_keys_create_refuses_an_unknown_role_without_a_traceback(cli_env):
    result = CliRunner().invoke(
        app, ["keys", "create", "--tenant", "t", "--role", "owner"], env=cli_env
    )
    assert result.exit_code != 0
    assert "Traceback" not in result.output


def test_demo_then_rebuild_keeps_the_read_model_identical(cli_env, test_settings):
    result = CliRunner().invoke(app, ["demo", "--customers", "20"], env=cli_env)
    assert result.exit_code == 0, result.output
    services = bootstrap(test_settings)
    try:
        runner = services.runners["order_summaries"]
        runner.catch_up()
        before = services.orders.list("default", limit=1000)
        assert before
    finally:
        services.close()
    result = CliRunner().invoke(app, ["rebuild", "order_summaries"], env=cli_env)
    assert result.exit_code == 0, result.output
    services = bootstrap(test_settings)
    try:
        assert services.orders.list("default", limit=1000) == before
        assert all(isinstance(row["order_id"], UUID) for row in before)
    finally:
        services.close()


def test_the_bootstrap_api_key_is_an_admin_of_tenant_default_and_is_created_idempotently(
    test_settings,
):
    settings = test_settings.model_copy(
        update={"bootstrap_api_key": "lk_bootstrap_example_of_32_characters"}
    )
    for _ in range(2):  # a restart must neither fail nor add a second key
        services = bootstrap(settings)
        services.close()
    services = bootstrap(settings)
    try:
        principal = services.access.authenticate("lk_bootstrap_example_of_32_characters")
        with services.ledger.factory.datastore.transaction() as curs:
            curs.execute(f'SELECT count(*) AS keys FROM "{settings.db_schema}".ledger_api_keys')
            keys = curs.fetchone()["keys"]
    finally:
        services.close()
    assert (principal.tenant_id, principal.role) == ("default", "admin")
    assert keys == 1


def test_retry_parked_reports_what_it_applied(cli_env):
    result = CliRunner().invoke(app, ["retry-parked", "order_summaries"], env=cli_env)
    assert result.exit_code == 0, result.output
    assert "order_summaries: 0 parked events applied, 0 still parked" in result.output
