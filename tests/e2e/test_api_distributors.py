"""Distributors over HTTP on real PostgreSQL and Redis: enrolment under a sponsor and a
placement leg, reads of both trees (downline pages, upline, as of a date), an approved
placement move, status changes, and the errors a back office meets (unknown sponsor, taken leg,
cycle, another tenant's distributor, out-of-range values, idempotent replays)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.e2e.conftest import Merchant, assert_error, position

pytestmark = pytest.mark.e2e

UNKNOWN = "00000000-0000-4000-8000-000000000000"


class Network:
    """One merchant's back office for its distributors."""

    def __init__(self, merchant: Merchant) -> None:
        self.m = merchant
        self.head = 0

    def enrol(self, **fields: Any) -> dict[str, Any]:
        response = self.m.post("/v1/distributors", {k: v for k, v in fields.items() if v})
        assert response.status_code == 201, response.text
        self.head = max(self.head, position(response))
        return response.json()

    def read(self, path: str, **params: Any) -> dict[str, Any]:
        response = self.m.get(path, params={"min_position": self.head, **params})
        assert response.status_code == 200, response.text
        return response.json()

    def move(self, distributor_id: str, **body: Any) -> Any:
        response = self.m.post(f"/v1/distributors/{distributor_id}/placement", body)
        if response.status_code == 200:
            self.head = max(self.head, position(response))
        return response


@pytest.fixture
def network(acme: Merchant) -> Network:
    return Network(acme)


def ids(page: dict[str, Any]) -> list[tuple[str, int]]:
    return [(member["distributor"]["id"], member["depth"]) for member in page["data"]]


def test_enrol_read_both_trees_and_page_a_downline(network: Network, acme: Merchant) -> None:
    customer = acme.customer()
    root = network.enrol(customer_id=customer["id"])
    assert root["customer_id"] == customer["id"] and root["status"] == "active"
    left = network.enrol(sponsor_id=root["id"], placement_id=root["id"], leg="left")
    right = network.enrol(sponsor_id=root["id"], placement_id=root["id"], leg="right")
    grandchild = network.enrol(sponsor_id=left["id"], placement_id=right["id"], leg="left")

    assert network.read(f"/v1/distributors/{left['id']}") == left  # one rendering
    sponsor_tree = network.read(f"/v1/distributors/{root['id']}/downline", tree="sponsor")
    assert sorted(ids(sponsor_tree)) == sorted(
        [(left["id"], 1), (right["id"], 1), (grandchild["id"], 2)]
    )
    member = next(m for m in sponsor_tree["data"] if m["distributor"]["id"] == grandchild["id"])
    assert member["branch_id"] == left["id"] and member["leg"] is None
    placement = network.read(f"/v1/distributors/{root['id']}/downline", tree="placement", depth=1)
    assert sorted(ids(placement)) == sorted([(left["id"], 1), (right["id"], 1)])
    assert {m["leg"] for m in placement["data"]} == {"left", "right"}

    first = network.read(f"/v1/distributors/{root['id']}/downline", tree="placement", limit=2)
    assert len(first["data"]) == 2 and first["next_cursor"]
    rest = network.read(
        f"/v1/distributors/{root['id']}/downline", tree="placement", limit=2,
        cursor=first["next_cursor"],
    )  # fmt: skip
    assert ids(rest) == [(grandchild["id"], 2)] and rest["next_cursor"] is None

    upline = network.read(f"/v1/distributors/{grandchild['id']}/upline", tree="placement")
    assert [(m["distributor"]["id"], m["depth"], m["leg"]) for m in upline["data"]] == [
        (right["id"], 1, "left"), (root["id"], 2, "right"),
    ]  # fmt: skip


def test_an_approved_move_changes_the_tree_from_its_effective_date(network: Network) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=90)
    a = network.enrol(joined_at=long_ago.isoformat())
    b = network.enrol(joined_at=long_ago.isoformat())
    x = network.enrol(placement_id=a["id"], leg="left", joined_at=long_ago.isoformat())
    moved_at = datetime.now(UTC) - timedelta(days=30)

    refused = network.move(x["id"], placement_id=b["id"], leg="left")
    assert_error(refused, 422, "parameter_missing")  # no approval, no move
    response = network.move(
        x["id"], placement_id=b["id"], leg="right", approved_by="compliance@acme",
        reason="enrolled under the wrong upline", effective_at=moved_at.isoformat(),
    )  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json()["placement_id"] == b["id"]

    before = (moved_at - timedelta(days=1)).isoformat()
    assert ids(network.read(f"/v1/distributors/{a['id']}/downline", tree="placement",
                            as_of=before)) == [(x["id"], 1)]  # fmt: skip
    assert network.read(f"/v1/distributors/{a['id']}/downline", tree="placement")["data"] == []
    upline = network.read(f"/v1/distributors/{x['id']}/upline", tree="placement")
    assert [m["distributor"]["id"] for m in upline["data"]] == [b["id"]]
    # Back under its own downline: a cycle.
    cycle = network.move(b["id"], placement_id=x["id"], leg="left", approved_by="c", reason="r")
    assert_error(cycle, 409, "placement_cycle")


def test_enrolment_errors_name_their_cause(network: Network, acme: Merchant) -> None:
    parent = network.enrol()
    network.enrol(placement_id=parent["id"], leg="left")
    cases = [
        ({"sponsor_id": UNKNOWN}, 404, "sponsor_not_found"),
        ({"placement_id": UNKNOWN, "leg": "left"}, 404, "placement_not_found"),
        ({"placement_id": parent["id"], "leg": "left"}, 409, "leg_taken"),
        ({"placement_id": parent["id"]}, 422, "invalid_placement"),
        ({"leg": "left"}, 422, "invalid_placement"),
        ({"leg": "middle"}, 422, "validation_error"),
        ({"sponsor_id": 10**20}, 422, "validation_error"),
        ({"joined_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()}, 422,
         "invalid_joined_at"),
        ({"joined_at": "1969-12-31T00:00:00Z"}, 422, "invalid_joined_at"),
        ({"joined_at": "2026-01-01T00:00:00"}, 422, "validation_error"),  # no time zone
        ({"rank": "gold"}, 422, "parameter_unknown"),
    ]  # fmt: skip
    for body, status, code in cases:
        assert_error(acme.post("/v1/distributors", body), status, code)
    huge = acme.get(f"/v1/distributors/{parent['id']}/downline", params={"depth": 10**20})
    assert_error(huge, 422, "validation_error")
    assert_error(
        acme.get(f"/v1/distributors/{parent['id']}/downline", params={"cursor": "x"}),
        400, "invalid_cursor",
    )  # fmt: skip
    assert_error(acme.get("/v1/distributors/not-an-id"), 404, "distributor_not_found")


def test_another_tenants_distributor_is_not_found(
    network: Network, globex: Merchant, acme: Merchant, key_of: Any
) -> None:
    theirs = network.enrol()
    for path in ("", "/downline", "/upline"):
        assert_error(
            globex.get(f"/v1/distributors/{theirs['id']}{path}"), 404, "distributor_not_found"
        )
    assert_error(globex.post("/v1/distributors", {"sponsor_id": theirs["id"]}), 404,
                 "sponsor_not_found")  # fmt: skip
    assert_error(
        globex.post(f"/v1/distributors/{theirs['id']}/status", {"status": "inactive"}),
        404, "distributor_not_found",
    )  # fmt: skip
    # Imports (a past joined_at) are for admin keys only.
    agent = Merchant(acme.client, key_of("acme", "agent"))
    response = agent.post("/v1/distributors", {"joined_at": "2025-01-01T00:00:00Z"})
    assert_error(response, 403, "permission_denied")


def test_status_changes_end_in_termination_and_replays_are_idempotent(
    network: Network, acme: Merchant
) -> None:
    headers = {"Idempotency-Key": "enrol-ada"}
    first = acme.post("/v1/distributors", {}, headers=headers)
    again = acme.post("/v1/distributors", {}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    other = acme.post("/v1/distributors", {"leg": None, "sponsor_id": first.json()["id"]},
                      headers=headers)  # fmt: skip
    assert_error(other, 409, "idempotency_key_reused")

    path = f"/v1/distributors/{first.json()['id']}/status"
    inactive = acme.post(path, {"status": "inactive", "reason": "no orders for 6 months"})
    assert inactive.status_code == 200 and inactive.json()["status"] == "inactive"
    assert_error(acme.post(path, {"status": "inactive"}), 409, "invalid_state")
    assert acme.post(path, {"status": "terminated"}).json()["status"] == "terminated"
    assert_error(acme.post(path, {"status": "active"}), 409, "distributor_terminated")
    assert_error(acme.post(path, {"status": "asleep"}), 422, "validation_error")
