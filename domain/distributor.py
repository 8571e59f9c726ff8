"""The Distributor aggregate and the two small aggregates that keep the genealogy consistent.

A distributor is enrolled with a *sponsor* (who recruited them: the sponsor tree) and a
*placement* parent with a binary *leg* (where they sit: the placement tree). Both are optional:
a distributor without a sponsor is a root of the sponsor tree (the company's first
distributors), one without a placement waits to be placed (a "holding tank"). The sponsor never
changes; the placement changes only by a ``move_placement`` that records who approved it and
why (compliance), effective at an instant that may be in the past (imports) but never in the
future.

Rules that need more than one distributor are kept safe under concurrency by aggregates whose
versions conflict, saved in the same transaction as the distributor:

- ``PlacementLegs`` (one per placement parent, its id derived from the parent's) records which
  distributor holds the parent's left and right leg. Two enrolments (or moves) racing for the
  same leg both write the next version of the same aggregate: one save fails, and its retry
  finds the leg taken (``LegTaken``).
- ``PlacementMoves`` (one per tenant) is written by every placement move. Moves of a tenant are
  therefore serialised, so the cycle check (the new parent's chain of placement parents, read
  from the aggregates, must not contain the distributor moved) cannot be defeated by two moves
  racing (A under B while B goes under A). It also keeps each tenant's moves in effective-time
  order (``last_effective_at``): a move never takes effect before an earlier-recorded one, which
  is what lets the genealogy read model close and open its dated closure rows in one pass.
  Enrolments add leaves and cannot make cycles, so they do not touch it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidInput, InvalidTransition

_DISTRIBUTOR_NAMESPACE = uuid5(NAMESPACE_URL, "https://commerce-ledger/distributors")
_LEGS_NAMESPACE = uuid5(NAMESPACE_URL, "https://commerce-ledger/placement-legs")
_MOVES_NAMESPACE = uuid5(NAMESPACE_URL, "https://commerce-ledger/placement-moves")
REASON_LENGTH_MAX = 500
APPROVER_LENGTH_MAX = 200


class DistributorStatus(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    TERMINATED = "terminated"  # final: kept in the trees, never changed again


class Leg(StrEnum):
    LEFT = "left"
    RIGHT = "right"


class InvalidPlacement(InvalidInput):
    """A leg without a placement parent, or a placement under oneself."""

    code = "invalid_placement"


class InvalidJoinedAt(InvalidInput):
    """An effective instant in the future, or before a parent joined."""

    code = "invalid_joined_at"


class InvalidEffectiveAt(InvalidInput):
    code = "invalid_effective_at"


class ApprovalRequired(InvalidInput):
    """A placement move without the approver and the reason compliance needs."""

    code = "approval_required"


class LegTaken(InvalidTransition):
    code = "leg_taken"


class PlacementCycle(InvalidTransition):
    code = "placement_cycle"


class PlacementUnchanged(InvalidTransition):
    code = "placement_unchanged"


class DistributorTerminated(InvalidTransition):
    code = "distributor_terminated"


class DistributorExists(InvalidTransition):
    code = "distributor_exists"


def distributor_id_for(tenant_id: str, customer_id: UUID | None) -> UUID:
    """A customer is enrolled at most once per tenant (its id derives from the customer's); a
    distributor without a customer gets a random id."""
    if customer_id is None:
        return uuid4()
    return uuid5(_DISTRIBUTOR_NAMESPACE, f"{tenant_id}:{customer_id}")


def check_effective(at: datetime, now: datetime, param: str, error: type[InvalidInput]) -> None:
    """Raises ``error`` for a naive instant or one in the future."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise error("an instant states its time zone", param=param)
    if at > now:
        raise error("an effective instant is not in the future", param=param)


class Distributor(Aggregate):
    """One distributor of one tenant, with its place in the sponsor and placement trees."""

    @classmethod
    def enrol(
        cls,
        *,
        tenant_id: str,
        customer_id: UUID | None,
        sponsor: Distributor | None,
        placement: Distributor | None,
        leg: Leg | None,
        joined_at: datetime,
        now: datetime,
    ) -> Distributor:
        """A new distributor under ``sponsor`` and at ``leg`` of ``placement`` (both loaded and
        of this tenant; the leg itself is claimed on ``PlacementLegs``).

        Raises ``InvalidJoinedAt``, ``InvalidPlacement``, ``DistributorTerminated``.
        """
        check_effective(joined_at, now, "joined_at", InvalidJoinedAt)
        if leg is not None and placement is None:
            raise InvalidPlacement("a leg is chosen under a placement parent", param="leg")
        if placement is not None and leg is None:
            raise InvalidPlacement("a placement names its leg: left or right", param="leg")
        for parent, param in ((sponsor, "sponsor_id"), (placement, "placement_id")):
            if parent is None:
                continue
            if parent.status is DistributorStatus.TERMINATED:
                raise DistributorTerminated(
                    "a terminated distributor takes no one under them", param=param
                )
            if joined_at < parent.joined_at:
                raise InvalidJoinedAt(
                    f"joined_at is not before the {param[:-3]}'s own", param="joined_at"
                )
        return cls(
            id=distributor_id_for(tenant_id, customer_id),
            tenant_id=tenant_id,
            customer_id=None if customer_id is None else str(customer_id),
            sponsor_id=None if sponsor is None else str(sponsor.id),
            placement_id=None if placement is None else str(placement.id),
            leg=None if leg is None else leg.value,
            joined_at=joined_at,
        )

    @staticmethod
    def create_id(*, id: UUID, **_: object) -> UUID:
        return id

    @event("Enrolled")
    def __init__(
        self,
        *,
        id: UUID,
        tenant_id: str,
        customer_id: str | None,
        sponsor_id: str | None,
        placement_id: str | None,
        leg: str | None,
        joined_at: datetime,
    ) -> None:
        self.tenant_id = tenant_id
        self.customer_id = customer_id
        self.sponsor_id = sponsor_id
        self.placement_id = placement_id
        self.leg = leg
        self.joined_at = joined_at
        self.status = DistributorStatus.ACTIVE
        self.status_changed_at = joined_at
        self.placement_changed_at = joined_at
        self.last_move: dict | None = None

    # Placement ---------------------------------------------------------------------------------

    def move_placement(
        self,
        *,
        placement: Distributor | None,
        leg: Leg | None,
        approved_by: str,
        reason: str,
        effective_at: datetime,
        now: datetime,
    ) -> None:
        """Place this distributor at ``leg`` of ``placement`` (None: out of the placement tree,
        back to the holding tank), from ``effective_at``. The caller has checked the new
        parent's chain for a cycle and claimed the leg.

        Raises ``ApprovalRequired``, ``InvalidEffectiveAt``, ``InvalidPlacement``,
        ``PlacementUnchanged``, ``DistributorTerminated``.
        """
        approved_by, reason = (approved_by or "").strip(), (reason or "").strip()
        if not approved_by or len(approved_by) > APPROVER_LENGTH_MAX:
            raise ApprovalRequired(
                f"a move names who approved it (1 to {APPROVER_LENGTH_MAX} characters)",
                param="approved_by",
            )
        if not reason or len(reason) > REASON_LENGTH_MAX:
            raise ApprovalRequired(
                f"a move states its reason (1 to {REASON_LENGTH_MAX} characters)", param="reason"
            )
        self._require_not_terminated()
        check_effective(effective_at, now, "effective_at", InvalidEffectiveAt)
        if effective_at < self.placement_changed_at:
            raise InvalidEffectiveAt(
                "a move takes effect after the distributor's last placement change",
                param="effective_at",
            )
        if (placement is None) != (leg is None):
            raise InvalidPlacement("a placement and its leg are given together", param="leg")
        if placement is not None:
            if placement.id == self.id:
                raise PlacementCycle(
                    "a distributor is not placed under themself", param="placement_id"
                )
            if placement.status is DistributorStatus.TERMINATED:
                raise DistributorTerminated(
                    "a terminated distributor takes no one under them", param="placement_id"
                )
            if effective_at < placement.joined_at:
                raise InvalidEffectiveAt(
                    "a move takes effect after the new placement parent joined",
                    param="effective_at",
                )
        new_parent = None if placement is None else str(placement.id)
        new_leg = None if leg is None else leg.value
        if (new_parent, new_leg) == (self.placement_id, self.leg):
            raise PlacementUnchanged("the distributor is already placed there")
        self._moved(
            from_placement_id=self.placement_id,
            from_leg=self.leg,
            placement_id=new_parent,
            leg=new_leg,
            approved_by=approved_by,
            reason=reason,
            effective_at=effective_at,
        )

    @event("Moved")
    def _moved(
        self,
        *,
        from_placement_id: str | None,
        from_leg: str | None,
        placement_id: str | None,
        leg: str | None,
        approved_by: str,
        reason: str,
        effective_at: datetime,
    ) -> None:
        self.placement_id = placement_id
        self.leg = leg
        self.placement_changed_at = effective_at
        self.last_move = {
            "approved_by": approved_by,
            "reason": reason,
            "effective_at": effective_at.isoformat(),
        }

    # Status ------------------------------------------------------------------------------------

    def change_status(
        self,
        *,
        status: DistributorStatus,
        reason: str | None,
        effective_at: datetime,
        now: datetime,
    ) -> None:
        """Active ↔ inactive, or terminated (final).

        Raises ``DistributorTerminated``, ``InvalidEffectiveAt``, ``InvalidTransition``.
        """
        self._require_not_terminated()
        check_effective(effective_at, now, "effective_at", InvalidEffectiveAt)
        if effective_at < self.status_changed_at:
            raise InvalidEffectiveAt(
                "a status change takes effect after the last one", param="effective_at"
            )
        if status is self.status:
            raise InvalidTransition(f"the distributor is {status.value} already", param="status")
        if reason is not None and len(reason) > REASON_LENGTH_MAX:
            raise InvalidInput(
                f"a reason has at most {REASON_LENGTH_MAX} characters", param="reason"
            )
        self._status_changed(status=status.value, reason=reason, effective_at=effective_at)

    @event("StatusChanged")
    def _status_changed(self, *, status: str, reason: str | None, effective_at: datetime) -> None:
        self.status = DistributorStatus(status)
        self.status_changed_at = effective_at

    def _require_not_terminated(self) -> None:
        if self.status is DistributorStatus.TERMINATED:
            raise DistributorTerminated("this distributor is terminated")


class PlacementLegs(Aggregate):
    """Who holds the left and right leg of one placement parent (see the module docstring)."""

    @staticmethod
    def create_id(*, tenant_id: str, parent_id: UUID, **_: object) -> UUID:
        return legs_id_for(tenant_id, parent_id)

    @event("Opened")
    def __init__(self, *, tenant_id: str, parent_id: UUID) -> None:
        self.tenant_id = tenant_id
        self.parent_id = parent_id
        self.holders: dict[str, str] = {}

    def claim(self, leg: Leg, distributor_id: UUID) -> None:
        """Raises ``LegTaken``."""
        holder = self.holders.get(leg.value)
        if holder is not None:
            raise LegTaken(f"the {leg.value} leg of this placement is taken", param="leg")
        self._claimed(leg=leg.value, distributor_id=str(distributor_id))

    @event("Claimed")
    def _claimed(self, *, leg: str, distributor_id: str) -> None:
        self.holders = {**self.holders, leg: distributor_id}

    def release(self, leg: Leg, distributor_id: UUID) -> None:
        assert self.holders.get(leg.value) == str(distributor_id), "released by its holder"
        self._released(leg=leg.value, distributor_id=str(distributor_id))

    @event("Released")
    def _released(self, *, leg: str, distributor_id: str) -> None:
        self.holders = {k: v for k, v in self.holders.items() if k != leg}


def legs_id_for(tenant_id: str, parent_id: UUID) -> UUID:
    return uuid5(_LEGS_NAMESPACE, f"{tenant_id}:{parent_id}")


class PlacementMoves(Aggregate):
    """Every placement move of one tenant, in order (see the module docstring)."""

    @staticmethod
    def create_id(*, tenant_id: str, **_: object) -> UUID:
        return moves_id_for(tenant_id)

    @event("Opened")
    def __init__(self, *, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        self.last_effective_at: datetime | None = None

    def check(self, effective_at: datetime) -> None:
        """Raises ``InvalidEffectiveAt`` for a move before the tenant's latest one."""
        if self.last_effective_at is not None and effective_at < self.last_effective_at:
            raise InvalidEffectiveAt(
                "a move takes effect at or after the tenant's latest placement move "
                f"({self.last_effective_at.isoformat()})",
                param="effective_at",
            )

    def record(self, distributor_id: UUID, effective_at: datetime) -> None:
        self.check(effective_at)
        self._recorded(distributor_id=str(distributor_id), effective_at=effective_at)

    @event("Recorded")
    def _recorded(self, *, distributor_id: str, effective_at: datetime) -> None:
        self.last_effective_at = effective_at


def moves_id_for(tenant_id: str) -> UUID:
    return uuid5(_MOVES_NAMESPACE, tenant_id)
