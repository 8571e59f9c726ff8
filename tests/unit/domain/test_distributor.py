"""The Distributor aggregate and its companions: enrolment, approved placement moves, status
lifecycle, binary legs held once, and a tenant's moves in effective-time order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from domain.distributor import (
    ApprovalRequired,
    Distributor,
    DistributorStatus,
    DistributorTerminated,
    InvalidEffectiveAt,
    InvalidJoinedAt,
    InvalidPlacement,
    Leg,
    LegTaken,
    PlacementCycle,
    PlacementLegs,
    PlacementMoves,
    PlacementUnchanged,
    distributor_id_for,
)
from domain.errors import InvalidTransition

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def enrol(
    sponsor: Distributor | None = None,
    placement: Distributor | None = None,
    leg: Leg | None = None,
    joined_at: datetime = NOW,
    customer_id=None,
) -> Distributor:
    return Distributor.enrol(
        tenant_id="acme", customer_id=customer_id, sponsor=sponsor, placement=placement,
        leg=leg, joined_at=joined_at, now=NOW,
    )  # fmt: skip


def move(d: Distributor, placement: Distributor | None, leg: Leg | None, **kw) -> None:
    d.move_placement(
        placement=placement, leg=leg, approved_by=kw.pop("approved_by", "compliance@acme"),
        reason=kw.pop("reason", "misplaced at enrolment"), effective_at=kw.pop("at", NOW),
        now=NOW,
    )  # fmt: skip


def test_an_enrolled_distributor_is_active_under_its_sponsor_and_placement() -> None:
    root = enrol(joined_at=NOW - timedelta(days=30))
    child = enrol(sponsor=root, placement=root, leg=Leg.LEFT, joined_at=NOW - timedelta(days=2))
    assert child.status is DistributorStatus.ACTIVE
    assert (child.sponsor_id, child.placement_id, child.leg) == (str(root.id), str(root.id), "left")
    assert child.joined_at == child.placement_changed_at == NOW - timedelta(days=2)


def test_a_customer_is_enrolled_under_one_id_per_tenant() -> None:
    customer_id = uuid4()
    assert enrol(customer_id=customer_id).id == distributor_id_for("acme", customer_id)
    assert distributor_id_for("acme", customer_id) != distributor_id_for("globex", customer_id)
    assert distributor_id_for("acme", None) != distributor_id_for("acme", None)


@pytest.mark.parametrize(
    "joined_at", [NOW + timedelta(seconds=1), datetime(2026, 1, 1)], ids=["future", "naive"]
)
def test_joined_at_is_aware_and_never_in_the_future(joined_at: datetime) -> None:
    with pytest.raises(InvalidJoinedAt):
        enrol(joined_at=joined_at)


def test_nobody_joins_before_their_sponsor() -> None:
    sponsor = enrol(joined_at=NOW - timedelta(days=1))
    with pytest.raises(InvalidJoinedAt):
        enrol(sponsor=sponsor, joined_at=NOW - timedelta(days=2))


def test_a_leg_goes_with_a_placement_parent() -> None:
    parent = enrol()
    with pytest.raises(InvalidPlacement):
        enrol(leg=Leg.LEFT)
    with pytest.raises(InvalidPlacement):
        enrol(placement=parent)


def test_a_terminated_distributor_takes_no_one_and_never_changes_again() -> None:
    d = enrol()
    d.change_status(status=DistributorStatus.TERMINATED, reason="fraud", effective_at=NOW, now=NOW)
    with pytest.raises(DistributorTerminated):
        enrol(sponsor=d)
    with pytest.raises(DistributorTerminated):
        d.change_status(status=DistributorStatus.ACTIVE, reason=None, effective_at=NOW, now=NOW)
    with pytest.raises(DistributorTerminated):
        move(d, None, None)


def test_status_changes_are_real_changes_in_time_order() -> None:
    d = enrol(joined_at=NOW - timedelta(days=5))
    with pytest.raises(InvalidTransition):
        d.change_status(status=DistributorStatus.ACTIVE, reason=None, effective_at=NOW, now=NOW)
    d.change_status(status=DistributorStatus.INACTIVE, reason=None, effective_at=NOW, now=NOW)
    with pytest.raises(InvalidEffectiveAt):
        d.change_status(
            status=DistributorStatus.ACTIVE, reason=None, effective_at=NOW - timedelta(days=1),
            now=NOW,
        )  # fmt: skip
    assert d.status is DistributorStatus.INACTIVE


@pytest.mark.parametrize("field", ["approved_by", "reason"])
def test_a_move_without_its_approval_is_refused(field: str) -> None:
    parent, d = enrol(), enrol()
    with pytest.raises(ApprovalRequired) as refused:
        move(d, parent, Leg.RIGHT, **{field: "  "})
    assert refused.value.param == field
    assert d.placement_id is None


def test_an_approved_move_records_who_why_and_when() -> None:
    parent, d = enrol(joined_at=NOW - timedelta(days=3)), enrol(joined_at=NOW - timedelta(days=3))
    move(d, parent, Leg.RIGHT, at=NOW - timedelta(days=1))
    assert (d.placement_id, d.leg) == (str(parent.id), "right")
    assert d.placement_changed_at == NOW - timedelta(days=1)
    assert d.last_move == {
        "approved_by": "compliance@acme",
        "reason": "misplaced at enrolment",
        "effective_at": (NOW - timedelta(days=1)).isoformat(),
    }
    with pytest.raises(PlacementUnchanged):
        move(d, parent, Leg.RIGHT)
    with pytest.raises(InvalidEffectiveAt):  # before its last placement change
        move(d, None, None, at=NOW - timedelta(days=2))


def test_nobody_is_placed_under_themself() -> None:
    d = enrol()
    with pytest.raises(PlacementCycle):
        move(d, d, Leg.LEFT)


def test_a_leg_is_held_once_until_released() -> None:
    parent_id, first, second = uuid4(), uuid4(), uuid4()
    legs = PlacementLegs(tenant_id="acme", parent_id=parent_id)
    legs.claim(Leg.LEFT, first)
    with pytest.raises(LegTaken):
        legs.claim(Leg.LEFT, second)
    legs.claim(Leg.RIGHT, second)
    legs.release(Leg.LEFT, first)
    legs.claim(Leg.LEFT, second)
    assert legs.holders == {"left": str(second), "right": str(second)}


def test_a_tenants_moves_take_effect_in_the_order_they_are_recorded() -> None:
    moves = PlacementMoves(tenant_id="acme")
    moves.record(uuid4(), NOW)
    moves.record(uuid4(), NOW)  # the same instant is fine
    with pytest.raises(InvalidEffectiveAt):
        moves.record(uuid4(), NOW - timedelta(seconds=1))
