"""Network commands: enrol distributors, move their placement (approved), change their status.

The rules that span distributors are made safe under concurrency by saving, in the command's
one transaction, the aggregates whose versions conflict (``domain.distributor``): the placement
parent's ``PlacementLegs`` (two enrolments racing for one leg: one wins, the other is told
``leg_taken``) and, for a move, the tenant's ``PlacementMoves`` (moves are serialised, so the
cycle check over the new parent's chain of placement parents holds). A save that loses such a
race is prepared again from the new state, a few times, before ``ConcurrentModification``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from application.commands import CommandResult, ConcurrentModification, LedgerBase, Step
from application.customers import CustomerNotFound
from domain.customer import Customer
from domain.distributor import (
    Distributor,
    DistributorExists,
    DistributorStatus,
    Leg,
    PlacementCycle,
    PlacementLegs,
    PlacementMoves,
    distributor_id_for,
    legs_id_for,
    moves_id_for,
)
from domain.errors import NotFound

# Saves lost to a concurrent enrolment or move are prepared again this many times in all.
RACE_ATTEMPTS = 4


class DistributorNotFound(NotFound):
    code = "distributor_not_found"


class SponsorNotFound(NotFound):
    code = "sponsor_not_found"


class PlacementNotFound(NotFound):
    code = "placement_not_found"


@dataclass(frozen=True)
class EnrolDistributor:
    customer_id: UUID | None
    sponsor_id: UUID | None
    placement_id: UUID | None
    leg: str | None
    joined_at: datetime | None


@dataclass(frozen=True)
class MovePlacement:
    distributor_id: UUID
    placement_id: UUID | None
    leg: str | None
    approved_by: str
    reason: str
    effective_at: datetime | None


@dataclass(frozen=True)
class SetDistributorStatus:
    distributor_id: UUID
    status: str
    reason: str | None
    effective_at: datetime | None


def _iso(value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value.astimezone(UTC).isoformat()


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def render_distributor(distributor_id: UUID | str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """A distributor as the API shows it, from the aggregate (``distributor_fields``) or from
    a read-model row (one rendering for both)."""
    return {
        "id": str(distributor_id),
        "customer_id": _text(fields["customer_id"]),
        "sponsor_id": _text(fields["sponsor_id"]),
        "placement_id": _text(fields["placement_id"]),
        "leg": fields["leg"],
        "status": str(fields["status"]),
        "joined_at": _iso(fields["joined_at"]),
        "status_changed_at": _iso(fields["status_changed_at"]),
        "placement_changed_at": _iso(fields["placement_changed_at"]),
    }


def distributor_fields(distributor: Distributor) -> dict[str, Any]:
    return {
        "customer_id": distributor.customer_id,
        "sponsor_id": distributor.sponsor_id,
        "placement_id": distributor.placement_id,
        "leg": distributor.leg,
        "status": distributor.status.value,
        "joined_at": distributor.joined_at,
        "status_changed_at": distributor.status_changed_at,
        "placement_changed_at": distributor.placement_changed_at,
    }


def distributor_body(distributor: Distributor) -> dict[str, Any]:
    return render_distributor(distributor.id, distributor_fields(distributor))


class NetworkCommands(LedgerBase):
    """Distributors and their place in the sponsor and placement trees."""

    def enrol_distributor(
        self,
        *,
        tenant_id: str,
        customer_id: UUID | None = None,
        sponsor_id: UUID | None = None,
        placement_id: UUID | None = None,
        leg: Leg | None = None,
        joined_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> CommandResult:
        """Enrol a distributor under a sponsor and at a leg of a placement parent (each
        optional), joined at ``joined_at`` (now, or earlier for imports).

        Raises ``CustomerNotFound``, ``SponsorNotFound``, ``PlacementNotFound``,
        ``DistributorExists``, ``LegTaken``, ``DistributorTerminated``, ``InvalidPlacement``,
        ``InvalidJoinedAt``, ``ConcurrentModification``, ``IdempotencyKeyReused``.
        """
        command = EnrolDistributor(
            customer_id, sponsor_id, placement_id, None if leg is None else leg.value, joined_at
        )

        def prepare() -> Step:
            now = self.now()
            if customer_id is not None:
                self.get_owned(Customer, tenant_id, customer_id, CustomerNotFound)
                if self._distributor_exists(distributor_id_for(tenant_id, customer_id)):
                    raise DistributorExists(
                        "this customer is enrolled already", param="customer_id"
                    )
            sponsor = self._parent(tenant_id, sponsor_id, SponsorNotFound, "sponsor_id")
            placement = self._parent(tenant_id, placement_id, PlacementNotFound, "placement_id")
            distributor = Distributor.enrol(
                tenant_id=tenant_id,
                customer_id=customer_id,
                sponsor=sponsor,
                placement=placement,
                leg=leg,
                joined_at=(joined_at or now).astimezone(UTC),
                now=now,
            )
            aggregates: list[Any] = [distributor]
            if placement is not None and leg is not None:
                legs = self._legs(tenant_id, placement.id)
                legs.claim(leg, distributor.id)
                aggregates.append(legs)
            return Step(aggregates, distributor_body(distributor))

        return self._run_racing(tenant_id, idempotency_key, command, prepare)

    def move_placement(
        self,
        *,
        tenant_id: str,
        distributor_id: UUID,
        placement_id: UUID | None,
        leg: Leg | None,
        approved_by: str,
        reason: str,
        effective_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> CommandResult:
        """Move a distributor (and the subtree under them) to ``leg`` of ``placement_id`` (None:
        out of the placement tree), from ``effective_at`` (now, or earlier for imports: not
        before the tenant's latest move). Compliance: who approved it and why are recorded.

        Raises ``DistributorNotFound``, ``PlacementNotFound``, ``PlacementCycle``,
        ``LegTaken``, ``PlacementUnchanged``, ``DistributorTerminated``, ``ApprovalRequired``,
        ``InvalidPlacement``, ``InvalidEffectiveAt``, ``ConcurrentModification``.
        """
        command = MovePlacement(
            distributor_id, placement_id, None if leg is None else leg.value, approved_by,
            reason, effective_at,
        )  # fmt: skip

        def prepare() -> Step:
            now = self.now()
            at = (effective_at or now).astimezone(UTC)
            distributor = self.get_distributor(tenant_id, distributor_id)
            placement = self._parent(tenant_id, placement_id, PlacementNotFound, "placement_id")
            moves = self._moves(tenant_id)
            moves.check(at)
            if placement is not None:
                self._check_no_cycle(tenant_id, distributor.id, placement)
            old_parent, old_leg = distributor.placement_id, distributor.leg
            distributor.move_placement(
                placement=placement, leg=leg, approved_by=approved_by, reason=reason,
                effective_at=at, now=now,
            )  # fmt: skip
            moves.record(distributor.id, at)
            legs: dict[UUID, PlacementLegs] = {}
            if old_parent is not None and old_leg is not None:
                released = self._legs(tenant_id, UUID(old_parent))
                released.release(Leg(old_leg), distributor.id)
                legs[released.id] = released
            if placement is not None and leg is not None:
                claimed = legs.get(legs_id_for(tenant_id, placement.id)) or self._legs(
                    tenant_id, placement.id
                )
                claimed.claim(leg, distributor.id)
                legs[claimed.id] = claimed
            return Step([distributor, moves, *legs.values()], distributor_body(distributor))

        return self._run_racing(tenant_id, idempotency_key, command, prepare)

    def set_distributor_status(
        self,
        *,
        tenant_id: str,
        distributor_id: UUID,
        status: DistributorStatus,
        reason: str | None = None,
        effective_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> CommandResult:
        """Active, inactive or terminated (final), from ``effective_at`` (now, or earlier).

        Raises ``DistributorNotFound``, ``DistributorTerminated``, ``InvalidTransition``,
        ``InvalidEffectiveAt``, ``ConcurrentModification``.
        """
        command = SetDistributorStatus(distributor_id, status.value, reason, effective_at)

        def prepare() -> Step:
            now = self.now()
            distributor = self.get_distributor(tenant_id, distributor_id)
            distributor.change_status(
                status=status,
                reason=reason,
                effective_at=(effective_at or now).astimezone(UTC),
                now=now,
            )
            return Step([distributor], distributor_body(distributor))

        return self.run(tenant_id, idempotency_key, command, prepare)

    def get_distributor(self, tenant_id: str, distributor_id: UUID) -> Distributor:
        """Raises ``DistributorNotFound``."""
        return self.get_owned(Distributor, tenant_id, distributor_id, DistributorNotFound)

    # Helpers -----------------------------------------------------------------------------------

    def _run_racing(
        self, tenant_id: str, idempotency_key: str | None, command: Any, prepare: Callable[[], Step]
    ) -> CommandResult:
        """``run``, prepared again from the new state when a concurrent enrolment or move of
        the same leg, customer or tenant saved first (the retry then names what it found)."""
        for attempt in range(RACE_ATTEMPTS):
            try:
                return self.run(tenant_id, idempotency_key, command, prepare)
            except ConcurrentModification:
                if attempt == RACE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _parent(
        self,
        tenant_id: str,
        parent_id: UUID | None,
        not_found: type[NotFound],
        param: str,
    ) -> Distributor | None:
        if parent_id is None:
            return None
        try:
            return self.get_owned(Distributor, tenant_id, parent_id, not_found)
        except not_found:
            raise not_found(f"no distributor with this {param}", param=param) from None

    def _distributor_exists(self, distributor_id: UUID) -> bool:
        try:
            return isinstance(self.repository.get(distributor_id), Distributor)
        except AggregateNotFoundError:
            return False

    def _legs(self, tenant_id: str, parent_id: UUID) -> PlacementLegs:
        try:
            legs = self.repository.get(legs_id_for(tenant_id, parent_id))
        except AggregateNotFoundError:
            return PlacementLegs(tenant_id=tenant_id, parent_id=parent_id)
        assert isinstance(legs, PlacementLegs)
        return legs

    def _moves(self, tenant_id: str) -> PlacementMoves:
        try:
            moves = self.repository.get(moves_id_for(tenant_id))
        except AggregateNotFoundError:
            return PlacementMoves(tenant_id=tenant_id)
        assert isinstance(moves, PlacementMoves)
        return moves

    def _check_no_cycle(self, tenant_id: str, moved_id: UUID, placement: Distributor) -> None:
        """Raises ``PlacementCycle`` if ``placement`` is ``moved_id`` or placed under it: the
        chain of placement parents is read from the aggregates (moves are serialised by
        ``PlacementMoves``, so no concurrent move changes it before this one is saved)."""
        seen: set[UUID] = set()
        current: Distributor | None = placement
        while current is not None:
            if current.id == moved_id:
                raise PlacementCycle(
                    "the new placement parent is in the moved distributor's placement downline",
                    param="placement_id",
                )
            assert current.id not in seen, "the placement tree has no cycle"
            seen.add(current.id)
            parent = current.placement_id
            current = (
                None
                if parent is None
                else self.get_owned(Distributor, tenant_id, UUID(parent), DistributorNotFound)
            )
