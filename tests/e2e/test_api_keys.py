"""``/v1/api-keys``: an admin creates, lists and revokes the keys of their own tenant."""

from __future__ import annotations

from uuid import uuid4

import pytest

from tests.e2e.conftest import assert_error, auth

pytestmark = pytest.mark.e2e


def test_a_key_is_created_used_listed_without_its_secret_and_revoked_at_once(client, acme):
    created = acme.post("/v1/api-keys", {"role": "agent", "name": "warehouse sync"})
    assert created.status_code == 201, created.text
    assert created.headers["Cache-Control"] == "no-store"
    body = created.json()
    secret = body["key"]
    assert (body["role"], body["name"], body["last_used_at"]) == ("agent", "warehouse sync", None)

    used = client.get("/v1/orders", headers=auth(secret))
    assert used.status_code == 200, used.text

    listed = acme.get("/v1/api-keys")
    assert listed.status_code == 200, listed.text
    keys = {key["id"]: key for key in listed.json()["data"]}
    assert set(keys[body["id"]]) == {"id", "name", "role", "created_at", "last_used_at"}
    assert keys[body["id"]]["last_used_at"] is not None
    assert keys[body["id"]]["created_at"] == body["created_at"]
    assert secret not in listed.text
    assert len(keys) == 2  # acme's admin key and the new one

    revoked = client.delete(f"/v1/api-keys/{body['id']}", headers=auth(acme.key))
    assert revoked.status_code == 204, revoked.text
    assert_error(client.get("/v1/orders", headers=auth(secret)), 401, "invalid_api_key")
    assert body["id"] not in {key["id"] for key in acme.get("/v1/api-keys").json()["data"]}
    assert_error(
        client.delete(f"/v1/api-keys/{body['id']}", headers=auth(acme.key)),
        404,
        "api_key_not_found",
    )


def test_another_tenants_key_cannot_be_seen_or_revoked(client, acme, globex):
    globex_key = globex.post("/v1/api-keys", {"role": "readonly", "name": "bi"}).json()

    assert_error(
        client.delete(f"/v1/api-keys/{globex_key['id']}", headers=auth(acme.key)),
        404,
        "api_key_not_found",
    )
    assert globex_key["id"] not in acme.get("/v1/api-keys").text
    assert client.get("/v1/orders", headers=auth(globex_key["key"])).status_code == 200
    assert_error(
        client.delete(f"/v1/api-keys/{uuid4()}", headers=auth(acme.key)), 404, "api_key_not_found"
    )


@pytest.mark.parametrize("role", ["manager", "agent", "auditor", "readonly"])
def test_only_an_admin_manages_keys(client, key_of, role):
    key = key_of("acme", role)
    denied = client.post(
        "/v1/api-keys", json={"role": "readonly", "name": "x"}, headers=auth(key)
    )
    assert_error(denied, 403, "permission_denied")
    assert_error(client.get("/v1/api-keys", headers=auth(key)), 403, "permission_denied")
    assert_error(
        client.delete(f"/v1/api-keys/{uuid4()}", headers=auth(key)), 403, "permission_denied"
    )


def test_only_a_platform_key_creates_platform_keys(client, acme, key_of):
    error = assert_error(
        acme.post("/v1/api-keys", {"role": "platform", "name": "ops"}), 403, "permission_denied"
    )
    assert error["param"] == "role"
    platform = key_of("operator", "platform")
    created = client.post(
        "/v1/api-keys", json={"role": "platform", "name": "ops"}, headers=auth(platform)
    )
    assert created.status_code == 201, created.text


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"role": "owner", "name": "x"}, "validation_error", "role"),
        ({"role": "agent", "name": ""}, "validation_error", "name"),
        ({"role": "agent"}, "parameter_missing", "name"),
    ],
)
def test_an_unknown_role_or_no_name_is_422(acme, body, code, param):
    assert assert_error(acme.post("/v1/api-keys", body), 422, code)["param"] == param


def test_a_key_id_that_is_not_a_uuid_names_no_key(client, acme):
    response = client.delete("/v1/api-keys/not-a-uuid", headers=auth(acme.key))
    assert_error(response, 404, "key_not_found")
