"""Network commands on the in-memory ledger: enrolment under a sponsor and a placement leg,
approved placement moves with the cycle check, status changes, idempotency, and the races
that the placement's legs and the tenant's move sequence settle (one wins, the other is told
why)."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from application.customers import CustomerNotFound
from application.idempotency import IdempotencyKeyReused
from application.ledger import Ledger
from application.network import (
    DistributorNotFound,
    NetworkCommands,
    PlacementNotFound,
    SponsorNotFound,
)
from domain.distributor import (
    ApprovalRequired,
    DistributorExists,
    DistributorStatus,
    InvalidEffectiveAt,
    InvalidJoinedAt,
    Leg,
    LegTaken,
    PlacementCycle,
)
from tests.unit.application.conftest import Clock

TENANT = "t_network"


@pytest.fixture
def network(ledger: Ledger) -> Ledger:
    assert isinstance(ledger, NetworkCommands)
    return ledger


def enrol(network: Any, tenant: str = TENANT, **fields: Any) -> dict[str, Any]:
    return network.enrol_distributor(tenant_id=tenant, **fields).body


def move(network: Any, distributor: dict, placement: dict | None, leg: Leg | None, **kw: Any):
    return network.move_placement(
        tenant_id=TENANT, distributor_id=UUID(distributor["id"]),
        placement_id=None if placement is None else UUID(placement["id"]), leg=leg,
        approved_by=kw.pop("approved_by", "compliance@acme"),
        reason=kw.pop("reason", "enrolled under the wrong leg"), **kw,
    )  # fmt: skip


def test_enrolment_places_a_distributor_under_its_sponsor_and_leg(network: Any, clock: Clock):
    root = enrol(network)
    child = enrol(network, sponsor_id=UUID(root["id"]), placement_id=UUID(root["id"]), leg=Leg.LEFT)
    assert child["sponsor_id"] == child["placement_id"] == root["id"]
    assert child["leg"] == "left" and child["status"] == "active"
    assert child["joined_at"] == clock.at.isoformat()
    assert network.get_distributor(TENANT, UUID(child["id"])).sponsor_id == root["id"]


def test_enrolment_under_an_unknown_or_another_tenants_sponsor_is_not_found(network: Any):
    theirs = enrol(network, tenant="other")
    for sponsor_id in (uuid4(), UUID(theirs["id"])):
        with pytest.raises(SponsorNotFound) as refused:
            enrol(network, sponsor_id=sponsor_id)
        assert (refused.value.code, refused.value.param) == ("sponsor_not_found", "sponsor_id")
    with pytest.raises(PlacementNotFound):
        enrol(network, placement_id=uuid4(), leg=Leg.LEFT)
    with pytest.raises(DistributorNotFound):
        network.get_distributor(TENANT, UUID(theirs["id"]))


def test_a_taken_leg_is_refused_and_the_other_leg_is_free(network: Any) -> None:
    parent = UUID(enrol(network)["id"])
    enrol(network, placement_id=parent, leg=Leg.LEFT)
    with pytest.raises(LegTaken) as refused:
        enrol(network, placement_id=parent, leg=Leg.LEFT)
    assert refused.value.code == "leg_taken"
    assert enrol(network, placement_id=parent, leg=Leg.RIGHT)["leg"] == "right"


def test_a_customer_is_enrolled_once(network: Any) -> None:
    customer_id = UUID(
        network.register_customer(
            tenant_id=TENANT, email="d@example.com", name="D", country="US", currency="USD"
        ).body["id"]
    )
    assert enrol(network, customer_id=customer_id)["customer_id"] == str(customer_id)
    with pytest.raises(DistributorExists):
        enrol(network, customer_id=customer_id)
    with pytest.raises(CustomerNotFound):
        enrol(network, customer_id=uuid4())


def test_an_import_joins_in_the_past_never_in_the_future(network: Any, clock: Clock) -> None:
    old = enrol(network, joined_at=clock.at - timedelta(days=400))
    assert old["joined_at"] == (clock.at - timedelta(days=400)).isoformat()
    with pytest.raises(InvalidJoinedAt):
        enrol(network, joined_at=clock.at + timedelta(minutes=1))
    with pytest.raises(InvalidJoinedAt):  # before the sponsor joined
        enrol(network, sponsor_id=UUID(old["id"]), joined_at=clock.at - timedelta(days=401))


def test_a_move_needs_an_approval_and_frees_the_old_leg(network: Any) -> None:
    a, b = enrol(network), enrol(network)
    x = enrol(network, placement_id=UUID(a["id"]), leg=Leg.LEFT)
    with pytest.raises(ApprovalRequired):
        move(network, x, b, Leg.RIGHT, approved_by="")
    moved = move(network, x, b, Leg.RIGHT).body
    assert (moved["placement_id"], moved["leg"]) == (b["id"], "right")
    # A's left leg is free again; B's right leg is not.
    assert enrol(network, placement_id=UUID(a["id"]), leg=Leg.LEFT)["leg"] == "left"
    with pytest.raises(LegTaken):
        enrol(network, placement_id=UUID(b["id"]), leg=Leg.RIGHT)


def test_a_move_under_ones_own_downline_is_a_cycle(network: Any) -> None:
    a = enrol(network)
    b = enrol(network, placement_id=UUID(a["id"]), leg=Leg.LEFT)
    c = enrol(network, placement_id=UUID(b["id"]), leg=Leg.LEFT)
    for target in (a, c):
        with pytest.raises(PlacementCycle) as refused:
            move(network, a, target, Leg.RIGHT)
        assert refused.value.code == "placement_cycle"
    # Out of the tree and back under a sibling branch is fine.
    move(network, b, None, None)
    assert move(network, a, c, Leg.RIGHT).body["placement_id"] == c["id"]


def test_moves_take_effect_in_the_order_they_are_recorded(network: Any, clock: Clock) -> None:
    a = enrol(network, joined_at=clock.at - timedelta(days=10))
    b = enrol(network, joined_at=clock.at - timedelta(days=10))
    c = enrol(network, joined_at=clock.at - timedelta(days=10))
    move(network, b, a, Leg.LEFT, effective_at=clock.at - timedelta(days=2))
    with pytest.raises(InvalidEffectiveAt):
        move(network, c, a, Leg.RIGHT, effective_at=clock.at - timedelta(days=3))


def test_status_changes_and_termination_is_final(network: Any) -> None:
    d = UUID(enrol(network)["id"])
    body = network.set_distributor_status(
        tenant_id=TENANT, distributor_id=d, status=DistributorStatus.INACTIVE
    ).body
    assert body["status"] == "inactive"
    network.set_distributor_status(
        tenant_id=TENANT, distributor_id=d, status=DistributorStatus.TERMINATED, reason="left"
    )
    with pytest.raises(Exception) as refused:
        network.set_distributor_status(
            tenant_id=TENANT, distributor_id=d, status=DistributorStatus.ACTIVE
        )
    assert refused.value.code == "distributor_terminated"


def test_the_same_key_replays_the_enrolment_and_another_body_is_refused(network: Any) -> None:
    first = network.enrol_distributor(tenant_id=TENANT, idempotency_key="enrol-1")
    again = network.enrol_distributor(tenant_id=TENANT, idempotency_key="enrol-1")
    assert again.replayed and again.body == first.body
    with pytest.raises(IdempotencyKeyReused):
        network.enrol_distributor(
            tenant_id=TENANT, sponsor_id=UUID(first.body["id"]), idempotency_key="enrol-1"
        )


def _race(network: Any, monkeypatch: pytest.MonkeyPatch, *calls: Any) -> list[Any]:
    """Run ``calls`` in threads that all read the placement's legs before any of them saves."""
    barrier = threading.Barrier(len(calls), timeout=5)
    original = type(network)._legs
    first_reads: set[int] = set()

    def legs(self: Any, tenant_id: str, parent_id: UUID) -> Any:
        found = original(self, tenant_id, parent_id)
        if threading.get_ident() not in first_reads:  # only the first attempt waits
            first_reads.add(threading.get_ident())
            barrier.wait()
        return found

    monkeypatch.setattr(type(network), "_legs", legs)
    outcomes: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        try:
            outcomes[index] = calls[index]()
        except Exception as error:
            outcomes[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return outcomes


def test_two_enrolments_racing_for_one_leg_one_wins(network: Any, monkeypatch) -> None:
    parent = UUID(enrol(network)["id"])
    outcomes = _race(
        network, monkeypatch,
        *[lambda: enrol(network, placement_id=parent, leg=Leg.LEFT) for _ in range(2)],
    )  # fmt: skip
    assert sorted(type(o).__name__ for o in outcomes) == ["LegTaken", "dict"]


def test_two_enrolments_racing_for_both_legs_both_win(network: Any, monkeypatch) -> None:
    parent = UUID(enrol(network)["id"])
    outcomes = _race(
        network, monkeypatch,
        lambda: enrol(network, placement_id=parent, leg=Leg.LEFT),
        lambda: enrol(network, placement_id=parent, leg=Leg.RIGHT),
    )  # fmt: skip
    assert sorted(o["leg"] for o in outcomes) == ["left", "right"]
