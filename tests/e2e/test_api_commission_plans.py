"""Commission plans over HTTP: defined, revised version by version, read back; refused with a
named error when malformed, of another type, reaching back, or from a non-admin key."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.e2e.conftest import Merchant, assert_error, auth

pytestmark = pytest.mark.e2e

UNILEVEL = {
    "type": "unilevel",
    "levels_bps": [2000, 500, 400],
    "compression": "dynamic",
    "active_min_pv_minor": 5000,
}


def put(merchant: Merchant, code: str, body: dict[str, Any]) -> Any:
    return merchant.client.put(
        f"/v1/commission-plans/{code}", json=body, headers=auth(merchant.key)
    )


def test_a_plan_is_defined_then_revised_and_reads_back_with_its_versions(acme: Merchant) -> None:
    first = put(acme, "retail", {"config": UNILEVEL, "effective_from": "2026-01-01T00:00:00Z"})
    assert first.status_code == 200, first.text
    assert first.json()["type"] == "unilevel" and len(first.json()["versions"]) == 1
    again = put(acme, "retail", {"config": UNILEVEL, "effective_from": "2026-01-01T00:00:00Z"})
    assert len(again.json()["versions"]) == 1  # the same version again: nothing new
    revised = put(
        acme,
        "retail",
        {
            "config": {**UNILEVEL, "levels_bps": [2500, 500]},
            "effective_from": "2026-03-01T00:00:00Z",
        },
    )
    assert revised.status_code == 200, revised.text
    versions = revised.json()["versions"]
    assert [v["number"] for v in versions] == [1, 2]
    assert versions[0]["effective_until"] == versions[1]["effective_from"]
    assert versions[1]["config"]["levels_bps"] == [2500, 500]
    read = acme.get("/v1/commission-plans/retail")
    assert read.status_code == 200 and read.json() == revised.json()


def test_malformed_reaching_back_or_retyped_plans_are_named_422s(acme: Merchant) -> None:
    assert put(acme, "p", {"config": UNILEVEL, "effective_from": "2026-02-01T00:00:00Z"}).is_success
    assert_error(
        put(acme, "p", {"config": {"type": "binary", "rate_bps": 1000, "cap_minor": 10**6,
                                    "carryover": "flush"}}),
        422,
        "invalid_commission_plan",
    )  # fmt: skip
    assert_error(
        put(acme, "p", {"config": {**UNILEVEL, "levels_bps": [300]},
                        "effective_from": "2026-01-01T00:00:00Z"}),
        422,
        "invalid_effective_from",
    )  # fmt: skip
    assert_error(
        put(acme, "q", {"config": {**UNILEVEL, "levels_bps": [20001]}}),
        422,
        "invalid_commission_plan",
    )
    assert_error(
        put(acme, "q", {"config": {**UNILEVEL, "active_min_pv_minor": 10**20}}),
        422,
        "invalid_commission_plan",
    )
    assert_error(put(acme, "q", {"config": {"type": "pyramid"}}), 422, "invalid_commission_plan")


def test_only_admins_define_plans_and_tenants_see_only_their_own(
    acme: Merchant, globex: Merchant, client: TestClient, key_of: Any
) -> None:
    assert put(acme, "mine", {"config": UNILEVEL}).status_code == 200
    manager = Merchant(client, key_of("acme", "manager"))
    assert_error(put(manager, "other", {"config": UNILEVEL}), 403, "permission_denied")
    assert manager.get("/v1/commission-plans/mine").status_code == 200
    assert_error(globex.get("/v1/commission-plans/mine"), 404, "commission_plan_not_found")
