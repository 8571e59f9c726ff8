"""The commission computations: pure, deterministic functions of integer minor units.

Nothing here reads a clock, a tree or a store: the caller (the accrual policy, the period close)
passes the upline, the activity flags, the volumes and the plan version in force, and records
what comes back. Rounding is half to even, once per accrual: ``amount = basis × rate_bps /
10000`` rounded to the nearest minor unit, a tie to the even one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from uuid import UUID

from domain.commission_config import (
    BPS,
    AffiliateConfig,
    BinaryConfig,
    Carryover,
    Compression,
    RankRule,
    RanksConfig,
    UnilevelConfig,
)
from domain.errors import InvalidInput
from domain.money import validate_amount_minor

DistributorId = UUID | str


class InvalidCommissionInput(InvalidInput):
    """A figure handed to a commission computation is impossible (negative, inconsistent)."""

    code = "invalid_commission_input"


class UnknownRank(InvalidInput):
    code = "unknown_rank"


def divide_half_even(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` (both ≥ 0, denominator > 0) rounded half to even."""
    quotient, remainder = divmod(numerator, denominator)
    if 2 * remainder > denominator or (2 * remainder == denominator and quotient % 2 == 1):
        quotient += 1
    return quotient


def apply_rate(basis_minor: int, rate_bps: int) -> int:
    """``basis × rate_bps / 10000`` rounded half to even: the amount of one accrual."""
    return divide_half_even(basis_minor * rate_bps, BPS)


# Unilevel -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UplineMember:
    """One distributor above the seller, as the accrual policy sees them for this order.

    ``active``: their PV in the period reaches the plan's ``active_min_pv_minor``.
    ``rank_depth``: the deepest unilevel level their rank is paid (``None``: every level).
    """

    distributor_id: DistributorId
    active: bool
    rank_depth: int | None = None

    def qualifies_for(self, level: int) -> bool:
        return self.active and (self.rank_depth is None or level <= self.rank_depth)


@dataclass(frozen=True, slots=True)
class Accrual:
    """What one order earns one distributor: ``amount_minor = apply_rate(basis_minor,
    rate_bps) - cap_reduction_minor``, the reduction being what the plan's overall cap took."""

    distributor_id: DistributorId
    level: int
    basis_minor: int
    rate_bps: int
    amount_minor: int
    cap_reduction_minor: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "distributor_id": str(self.distributor_id),
            "level": self.level,
            "basis_minor": self.basis_minor,
            "rate_bps": self.rate_bps,
            "amount_minor": self.amount_minor,
            "cap_reduction_minor": self.cap_reduction_minor,
        }


def unilevel_accruals(
    order_volume_minor: int,
    upline: Sequence[UplineMember],
    config: UnilevelConfig,
    *,
    seller: UplineMember | None = None,
) -> list[Accrual]:
    """The unilevel accruals of one order, level 0 (the seller) first, then upward.

    ``upline`` starts at the seller's sponsor and goes up the sponsor tree; pass all of it (or
    enough to fill every level under compression). A level is paid to a member who is active and
    whose rank allows that depth. Otherwise, under ``dynamic`` compression the level passes up to
    the next member who qualifies for it; under ``none`` the level is not paid and the next
    member is considered for the next level. The seller is paid ``level0_bps`` if active; level 0
    never compresses.

    Every accrual is rounded half to even, then the order's total is held to the plan's share
    of the volume — the level rates' sum, or ``max_payout_bps`` when it is lower — rounded half
    to even like any accrual, by reducing the highest levels first. So a single accrual is never
    reduced by rounding, and roundings up of several never add up to more than the share.
    Accruals of zero are left out.

    Raises ``InvalidAmount``.
    """
    validate_amount_minor(order_volume_minor, param="order_volume_minor")
    payees: list[tuple[UplineMember, int, int]] = []
    if seller is not None and config.level0_bps > 0 and seller.qualifies_for(0):
        payees.append((seller, 0, config.level0_bps))
    payees.extend(_level_payees(upline, config))

    budget_minor = apply_rate(order_volume_minor, config.max_share_bps)
    accruals: list[Accrual] = []
    for member, level, rate_bps in payees:
        uncapped_minor = apply_rate(order_volume_minor, rate_bps)
        amount_minor = min(uncapped_minor, budget_minor)
        budget_minor -= amount_minor
        if amount_minor > 0:
            accruals.append(
                Accrual(
                    distributor_id=member.distributor_id,
                    level=level,
                    basis_minor=order_volume_minor,
                    rate_bps=rate_bps,
                    amount_minor=amount_minor,
                    cap_reduction_minor=uncapped_minor - amount_minor,
                )
            )
    return accruals


def _level_payees(
    upline: Sequence[UplineMember], config: UnilevelConfig
) -> list[tuple[UplineMember, int, int]]:
    """(member, level, rate) for each level from 1 that someone in the upline is paid."""
    payees = []
    level = 1
    for member in upline:
        if level > len(config.levels_bps):
            break
        if member.qualifies_for(level):
            payees.append((member, level, config.levels_bps[level - 1]))
            level += 1
        elif config.compression is Compression.NONE:
            level += 1
        # Under dynamic compression an unqualified member is passed over: the level stays open.
    return payees


def unilevel_depth_for(rank_code: str | None, ranks: RanksConfig) -> int | None:
    """The ``rank_depth`` of a distributor of this rank: ``None`` for every level. A distributor
    without a rank is paid no level above 0 (a tenant who wants them paid lists an entry rank
    with no thresholds). Raises ``UnknownRank``."""
    if rank_code is None:
        return 0
    for rank in ranks.ranks:
        if rank.code == rank_code:
            return rank.unilevel_depth
    raise UnknownRank(f"the plan has no rank {rank_code!r}", param="rank")


# Binary -------------------------------------------------------------------------------------


class Leg(StrEnum):
    LEFT = "left"
    RIGHT = "right"


@dataclass(frozen=True, slots=True)
class BinaryResult:
    """One period's binary commission of one distributor.

    ``basis_minor`` is the weaker leg's volume (carry included) and ``weaker_leg`` names it (the
    left one when the legs are equal). ``capped`` says the period cap cut the amount.
    """

    amount_minor: int
    basis_minor: int
    rate_bps: int
    weaker_leg: Leg
    new_carry_left_minor: int
    new_carry_right_minor: int
    capped: bool


def binary_payout(
    left_volume_minor: int,
    right_volume_minor: int,
    carry_left_minor: int,
    carry_right_minor: int,
    config: BinaryConfig,
) -> BinaryResult:
    """Pay ``rate_bps`` of the weaker leg's volume (this period's plus what was carried), up to
    ``cap_minor``. The weaker leg's volume is matched, so both legs lose it, even when the cap
    cuts the amount. The stronger leg's remainder is carried to the next period (up to
    ``carryover_cap_minor``) or, with ``flush``, lost with the weaker leg's.

    Raises ``InvalidCommissionInput``.
    """
    left_minor = _volume(left_volume_minor, "left_volume_minor") + _volume(
        carry_left_minor, "carry_left_minor"
    )
    right_minor = _volume(right_volume_minor, "right_volume_minor") + _volume(
        carry_right_minor, "carry_right_minor"
    )
    matched_minor = min(left_minor, right_minor)
    uncapped_minor = apply_rate(matched_minor, config.rate_bps)
    amount_minor = uncapped_minor
    if config.cap_minor is not None:
        amount_minor = min(uncapped_minor, config.cap_minor)
    carry_left, carry_right = left_minor - matched_minor, right_minor - matched_minor
    if config.carryover is Carryover.FLUSH:
        carry_left = carry_right = 0
    elif config.carryover_cap_minor is not None:
        carry_left = min(carry_left, config.carryover_cap_minor)
        carry_right = min(carry_right, config.carryover_cap_minor)
    return BinaryResult(
        amount_minor=amount_minor,
        basis_minor=matched_minor,
        rate_bps=config.rate_bps,
        weaker_leg=Leg.LEFT if left_minor <= right_minor else Leg.RIGHT,
        new_carry_left_minor=carry_left,
        new_carry_right_minor=carry_right,
        capped=amount_minor < uncapped_minor,
    )


# Affiliate ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AffiliateAccrual:
    """``rate_bps`` is ``None`` for a fixed CPA: the amount is then the plan's ``cpa_minor``."""

    basis_minor: int
    rate_bps: int | None
    amount_minor: int


def affiliate_accrual(order_volume_minor: int, config: AffiliateConfig) -> AffiliateAccrual:
    """What one attributed order earns its affiliate. Raises ``InvalidAmount``."""
    validate_amount_minor(order_volume_minor, param="order_volume_minor")
    if config.rate_bps is None:
        assert config.cpa_minor is not None, "a parsed affiliate plan has a CPA or a rate"
        return AffiliateAccrual(order_volume_minor, None, config.cpa_minor)
    amount_minor = apply_rate(order_volume_minor, config.rate_bps)
    return AffiliateAccrual(order_volume_minor, config.rate_bps, amount_minor)


# Ranks --------------------------------------------------------------------------------------


def evaluate_rank(
    pv_minor: int,
    gv_minor: int,
    leg_volumes_minor: Sequence[int],
    active_legs: int,
    ranks: RanksConfig,
) -> str | None:
    """The code of the highest rank whose rules the period's figures meet, or ``None``.

    ``gv_minor`` is the group volume as the genealogy reports it; ``leg_volumes_minor`` are the
    volumes of the distributor's legs (the subtrees of their frontline), which are part of it.
    The leg rule, per rank: no leg counts for more than ``max_leg_share_bps`` of the rank's
    *required* group volume, ``leg_cap = floor(min_gv_minor × max_leg_share_bps / 10000)``, and
    the qualifying group volume is ``gv_minor − Σ max(0, leg − leg_cap)``. The cap is a share of
    the requirement, not of the actual GV, because a share of the actual GV grows with the very
    leg it is meant to limit: one huge leg would then qualify on its own.

    Raises ``InvalidCommissionInput``.
    """
    _volume(pv_minor, "pv_minor")
    _volume(gv_minor, "gv_minor")
    for i, leg_minor in enumerate(leg_volumes_minor):
        _volume(leg_minor, f"leg_volumes_minor[{i}]")
    if sum(leg_volumes_minor) > gv_minor:
        raise InvalidCommissionInput(
            "the legs' volumes are part of the group volume, so never more than it",
            param="leg_volumes_minor",
        )
    _volume(active_legs, "active_legs")
    for rank in reversed(ranks.ranks):
        if _meets(rank, pv_minor, gv_minor, leg_volumes_minor, active_legs):
            return rank.code
    return None


def qualifying_gv_minor(rank: RankRule, gv_minor: int, leg_volumes_minor: Sequence[int]) -> int:
    """The group volume that counts toward ``rank`` once each leg is held to its cap."""
    leg_cap_minor = rank.min_gv_minor * rank.max_leg_share_bps // BPS
    return gv_minor - sum(max(0, leg - leg_cap_minor) for leg in leg_volumes_minor)


def _meets(
    rank: RankRule, pv_minor: int, gv_minor: int, legs: Sequence[int], active_legs: int
) -> bool:
    return (
        pv_minor >= rank.min_pv_minor
        and active_legs >= rank.min_active_legs
        and qualifying_gv_minor(rank, gv_minor, legs) >= rank.min_gv_minor
    )


# Clawbacks ----------------------------------------------------------------------------------


def clawback(
    accrual_amount_minor: int,
    refunded_minor: int,
    order_total_minor: int,
    *,
    already_refunded_minor: int = 0,
    already_clawed_back_minor: int | None = None,
) -> int:
    """What a refund (or chargeback) of ``refunded_minor`` claws back from one accrual.

    The clawbacks of an order are computed on the *cumulative* refund: after refunds totalling
    R of an order of total T, the accrual A has lost ``round_half_even(A × R / T)`` in all, and
    each refund claws back the difference from what earlier ones took
    (``already_clawed_back_minor``; by default what this rule took for
    ``already_refunded_minor``). So clawbacks never add up to more than the accrual, and once
    the whole order is refunded they add up to it exactly: the order's net commission is zero.

    Raises ``InvalidCommissionInput`` (a refund beyond the order's total, clawbacks beyond the
    accrual).
    """
    _volume(accrual_amount_minor, "accrual_amount_minor")
    _volume(refunded_minor, "refunded_minor")
    _volume(already_refunded_minor, "already_refunded_minor")
    refunded_total_minor = already_refunded_minor + refunded_minor
    if refunded_total_minor > _volume(order_total_minor, "order_total_minor"):
        raise InvalidCommissionInput(
            "the refunds add up to more than the order's total", param="refunded_minor"
        )
    if refunded_total_minor == 0:
        return 0
    if already_clawed_back_minor is None:
        already_clawed_back_minor = divide_half_even(
            accrual_amount_minor * already_refunded_minor, order_total_minor
        )
    if not 0 <= already_clawed_back_minor <= accrual_amount_minor:
        raise InvalidCommissionInput(
            "the accrual's clawbacks are between zero and its amount",
            param="already_clawed_back_minor",
        )
    target_minor = divide_half_even(accrual_amount_minor * refunded_total_minor, order_total_minor)
    return max(0, target_minor - already_clawed_back_minor)


def _volume(value: Any, param: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidCommissionInput("this is a non-negative integer", param=param)
    return value
