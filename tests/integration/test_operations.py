"""Operating the ledger: API keys from the CLI, the admin key notice, migrations, and an
eventsourcing configured by our settings alone."""

from __future__ import annotations

import psycopg
import pytest
from typer.testing import CliRunner

from adapters.access import AccessStore, digest
from adapters.bootstrap import bootstrap
from api.cli import announce_admin_key, app

pytestmark = pytest.mark.integration


@pytest.fixture
def cli_env(test_settings) -> dict[str, str]:
    return {
        "LEDGER_DATABASE_URL": test_settings.database_url,
        "LEDGER_REDIS_URL": test_settings.redis_url,
        "LEDGER_DB_SCHEMA": test_settings.db_schema,
        "LEDGER_REDIS_NAMESPACE": test_settings.redis_namespace,
    }


def test_keys_list_shows_ids_and_names_never_keys_and_revoke_takes_effect_at_once(
    cli_env, test_settings
):
    runner = CliRunner()
    created = runner.invoke(
        app, ["keys", "create", "--tenant", "shop-7", "--role", "agent", "--name", "till"],
        env=cli_env,
    )
    assert created.exit_code == 0, created.output
    key = created.output.strip().splitlines()[-1]

    listed = runner.invoke(app, ["keys", "list", "--tenant", "shop-7"], env=cli_env)
    assert listed.exit_code == 0, listed.output
    assert "till" in listed.output and "agent" in listed.output
    assert key not in listed.output and digest(key) not in listed.output
    services = bootstrap(test_settings)
    try:
        (record,) = services.access.list_keys("shop-7", 10)
        assert str(record.id) in listed.output

        revoked = runner.invoke(app, ["keys", "revoke", str(record.id)], env=cli_env)
        assert revoked.exit_code == 0, revoked.output
        assert services.access.authenticate(key) is None
    finally:
        services.close()
    again = runner.invoke(app, ["keys", "revoke", str(record.id)], env=cli_env)
    assert again.exit_code == 1
    assert "Traceback" not in again.output


def test_last_used_at_is_written_at_most_once_a_minute(services):
    key = services.access.create_key("acme", "agent")
    services.access.authenticate(key)
    (first,) = services.access.list_keys("acme", 10)
    services.access.authenticate(key)
    (second,) = services.access.list_keys("acme", 10)
    assert first.last_used_at is not None
    assert second.last_used_at == first.last_used_at

    with services.ledger.factory.datastore.transaction(commit=True) as curs:
        curs.execute(
            f'UPDATE "{services.settings.db_schema}".ledger_api_keys'
            " SET last_used_at = last_used_at - interval '2 minutes'"
        )
    services.access.authenticate(key)
    (third,) = services.access.list_keys("acme", 10)
    assert third.last_used_at > first.last_used_at


def test_a_key_table_of_the_first_release_gains_ids_names_and_last_use(services):
    table = f'"{services.settings.db_schema}".ledger_api_keys'
    datastore = services.ledger.factory.datastore
    with datastore.transaction(commit=True) as curs:
        curs.execute(f"DROP TABLE {table}")
        curs.execute(
            f"CREATE TABLE {table} (key_digest text PRIMARY KEY, tenant_id text NOT NULL,"
            " role text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(),"
            " revoked_at timestamptz)"
        )
        curs.execute(
            f"INSERT INTO {table} (key_digest, tenant_id, role) VALUES (%s, 'acme', 'admin')",
            (digest("lk_an_old_key"),),
        )
    AccessStore(datastore).create_tables()

    (record,) = services.access.list_keys("acme", 10)
    assert record.id is not None and record.name == ""
    assert services.access.authenticate("lk_an_old_key").role == "admin"
    assert services.access.revoke_key(record.id)


def test_the_admin_key_is_shown_when_generated_and_only_its_place_afterwards(
    test_settings, tmp_path, capsys
):
    settings = test_settings.model_copy(update={"data_dir": tmp_path})
    services = bootstrap(settings)
    try:
        announce_admin_key(services)
        first = capsys.readouterr().err
        announce_admin_key(services)
        second = capsys.readouterr().err
        key = (tmp_path / "admin-api-key").read_text().strip()
        assert services.access.authenticate(key).role == "admin"
    finally:
        services.close()
    assert key in first
    assert key not in second
    assert f"kept in {tmp_path / 'admin-api-key'}" in second
    assert (tmp_path / "admin-api-key").stat().st_mode & 0o777 == 0o600


def test_eventsourcing_is_configured_by_the_settings_alone(test_settings, monkeypatch):
    # eventsourcing would merge these into its environment, the LEDGER_ ones first.
    for name in ("DBNAME", "SCHEMA", "HOST", "PORT", "USER", "PASSWORD", "ENABLE_DB_FUNCTIONS"):
        value = "y" if name == "ENABLE_DB_FUNCTIONS" else "garbage"
        monkeypatch.setenv(f"POSTGRES_{name}", value)
        monkeypatch.setenv(f"LEDGER_POSTGRES_{name}", value)
    monkeypatch.setenv("PERSISTENCE_MODULE", "garbage")
    monkeypatch.setenv("LEDGER_CIPHER_TOPIC", "garbage:Garbage")
    monkeypatch.setenv("COMPRESSOR_TOPIC", "garbage:Garbage")

    services = bootstrap(test_settings)
    try:
        datastore = services.ledger.factory.datastore
        assert datastore.schema == test_settings.db_schema
        assert datastore.enable_db_functions is False
        assert "garbage" not in "".join(services.ledger.env.values())
        assert services.ledger.env["POSTGRES_ENABLE_DB_FUNCTIONS"] == "n"
        services.ledger.recorder.max_notification_id()  # reads the log in that schema
        with psycopg.connect(test_settings.database_url) as conn:
            tables = conn.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s",
                (test_settings.db_schema,),
            ).fetchone()[0]
        assert tables > 0
    finally:
        services.close()
