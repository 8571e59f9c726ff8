"""Properties of the commission computations, checked against naive references written here.

The unilevel reference walks a sponsor tree (a dict from each distributor to their sponsor)
recursively, level by level, and rounds with ``fractions.Fraction`` and Python's ``round``
(half to even): it shares no code with ``domain.commission_rules``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.commission_config import (
    BinaryConfig,
    Carryover,
    Compression,
    RankRule,
    RanksConfig,
    UnilevelConfig,
)
from domain.commission_rules import (
    UplineMember,
    binary_payout,
    clawback,
    evaluate_rank,
    unilevel_accruals,
)

FAST = settings(max_examples=150, deadline=None)

volumes_minor = st.integers(min_value=0, max_value=10**12)
rates_bps = st.integers(min_value=0, max_value=10_000)


@dataclass(frozen=True)
class Network:
    """A sponsor tree of distributors 0..n-1 (0 is the root) and each one's period figures."""

    sponsor_of: dict[int, int | None]
    active: dict[int, bool]
    rank_depth: dict[int, int | None]


@st.composite
def networks(draw: st.DrawFn) -> Network:
    size = draw(st.integers(min_value=1, max_value=40))
    # Each distributor after the root is sponsored by one who joined before them: a tree.
    sponsor_of: dict[int, int | None] = {0: None}
    for node in range(1, size):
        sponsor_of[node] = draw(st.integers(min_value=0, max_value=node - 1))
    active = {node: draw(st.booleans()) for node in range(size)}
    depths = st.none() | st.integers(min_value=0, max_value=6)
    rank_depth = {node: draw(depths) for node in range(size)}
    return Network(sponsor_of, active, rank_depth)


@st.composite
def unilevel_configs(draw: st.DrawFn) -> UnilevelConfig:
    levels_bps = tuple(draw(st.lists(rates_bps, min_size=1, max_size=6)))
    level0_bps = draw(st.sampled_from([0, 0, 500, 2500]))
    total_bps = level0_bps + sum(levels_bps)
    max_payout_bps = draw(st.none() | st.integers(min_value=0, max_value=10_000))
    if max_payout_bps is None and total_bps > 10_000:
        max_payout_bps = 10_000  # what validation asks of a plan whose rates exceed 100%
    return UnilevelConfig(
        levels_bps=levels_bps,
        level0_bps=level0_bps,
        compression=draw(st.sampled_from(Compression)),
        max_payout_bps=max_payout_bps,
    )


# The naive reference --------------------------------------------------------------------------


def reference_payees(
    network: Network, node: int | None, level: int, config: UnilevelConfig
) -> list[tuple[int, int, int]]:
    """(distributor, level, rate) from ``node`` upward, ``node`` being the candidate for
    ``level``: a recursive walk of the sponsor chain."""
    if node is None or level > len(config.levels_bps):
        return []
    depth = network.rank_depth[node]
    qualifies = network.active[node] and (depth is None or level <= depth)
    sponsor = network.sponsor_of[node]
    if qualifies:
        return [(node, level, config.levels_bps[level - 1])] + reference_payees(
            network, sponsor, level + 1, config
        )
    if config.compression is Compression.DYNAMIC:
        return reference_payees(network, sponsor, level, config)
    return reference_payees(network, sponsor, level + 1, config)


def reference_accruals(
    network: Network, seller: int, volume_minor: int, config: UnilevelConfig
) -> list[tuple[int, int, int, int]]:
    """(distributor, level, rate, amount) of every accrual above zero, lowest level first."""
    payees = reference_payees(network, network.sponsor_of[seller], 1, config)
    if config.level0_bps and network.active[seller]:
        payees = [(seller, 0, config.level0_bps)] + payees
    share_bps = config.level0_bps + sum(config.levels_bps)
    if config.max_payout_bps is not None:
        share_bps = min(share_bps, config.max_payout_bps)
    remaining_minor = round(Fraction(volume_minor * share_bps, 10_000))
    accruals = []
    for distributor, level, rate_bps in payees:
        amount_minor = min(round(Fraction(volume_minor * rate_bps, 10_000)), remaining_minor)
        remaining_minor -= amount_minor
        if amount_minor:
            accruals.append((distributor, level, rate_bps, amount_minor))
    return accruals


def upline_of(network: Network, seller: int) -> list[UplineMember]:
    """What the genealogy hands the accrual policy: the seller's sponsor first, then upward."""
    upline = []
    node = network.sponsor_of[seller]
    while node is not None:
        upline.append(UplineMember(node, network.active[node], network.rank_depth[node]))
        node = network.sponsor_of[node]
    return upline


def computed_accruals(network: Network, seller: int, volume_minor: int, config: UnilevelConfig):
    seller_member = UplineMember(seller, network.active[seller], network.rank_depth[seller])
    return unilevel_accruals(volume_minor, upline_of(network, seller), config, seller=seller_member)


@st.composite
def orders(draw: st.DrawFn) -> tuple[Network, int, int, UnilevelConfig]:
    network = draw(networks())
    seller = draw(st.integers(min_value=0, max_value=len(network.sponsor_of) - 1))
    return network, seller, draw(volumes_minor), draw(unilevel_configs())


# Unilevel -------------------------------------------------------------------------------------


@FAST
@given(order=orders())
def test_unilevel_accruals_equal_the_recursive_walk_of_the_sponsor_tree(order) -> None:
    network, seller, volume_minor, config = order

    accruals = computed_accruals(network, seller, volume_minor, config)

    assert [
        (a.distributor_id, a.level, a.rate_bps, a.amount_minor) for a in accruals
    ] == reference_accruals(network, seller, volume_minor, config)
    assert all(a.basis_minor == volume_minor for a in accruals)


@FAST
@given(order=orders())
def test_an_order_never_pays_more_than_the_plan_s_maximum_share_of_its_volume(order) -> None:
    network, seller, volume_minor, config = order

    accruals = computed_accruals(network, seller, volume_minor, config)

    paid_minor = sum(a.amount_minor for a in accruals)
    # The share is rounded half to even like any accrual: at most half a minor unit above it.
    assert 2 * paid_minor * 10_000 <= 2 * volume_minor * config.max_share_bps + 10_000
    assert len({a.distributor_id for a in accruals}) == len(accruals)
    for accrual in accruals:
        stated = Fraction(accrual.basis_minor * accrual.rate_bps, 10_000)
        assert abs(accrual.amount_minor + accrual.cap_reduction_minor - stated) <= Fraction(1, 2)


# Clawbacks ------------------------------------------------------------------------------------


@st.composite
def refund_sequences(draw: st.DrawFn, *, full: bool) -> tuple[int, list[int]]:
    """An order total and refunds of it, adding up to all of it when ``full``."""
    total_minor = draw(st.integers(min_value=1, max_value=10**9))
    cuts = sorted(draw(st.lists(st.integers(0, total_minor), min_size=0, max_size=6)))
    bounds = [0, *cuts, total_minor] if full else [0, *cuts]
    return total_minor, [later - earlier for earlier, later in pairwise(bounds)]


def clawbacks_of(accrual_minor: int, total_minor: int, refunds_minor: list[int]) -> list[int]:
    taken, refunded_minor = [], 0
    for refund_minor in refunds_minor:
        taken.append(
            clawback(
                accrual_minor,
                refund_minor,
                total_minor,
                already_refunded_minor=refunded_minor,
                already_clawed_back_minor=sum(taken),
            )
        )
        refunded_minor += refund_minor
    return taken


@FAST
@given(order=orders(), refunds=refund_sequences(full=True))
def test_refunding_the_whole_order_brings_its_net_commissions_to_zero(order, refunds) -> None:
    network, seller, volume_minor, config = order
    total_minor, refunds_minor = refunds

    accruals = computed_accruals(network, seller, volume_minor, config)

    for accrual in accruals:
        taken = clawbacks_of(accrual.amount_minor, total_minor, refunds_minor)
        assert accrual.amount_minor - sum(taken) == 0


@FAST
@given(accrual_minor=volumes_minor, refunds=refund_sequences(full=False))
def test_partial_refunds_claw_back_proportionally_and_never_more_than_accrued(
    accrual_minor: int, refunds: tuple[int, list[int]]
) -> None:
    total_minor, refunds_minor = refunds

    taken = clawbacks_of(accrual_minor, total_minor, refunds_minor)

    assert all(amount_minor >= 0 for amount_minor in taken)
    assert sum(taken) <= accrual_minor
    exact = Fraction(accrual_minor * sum(refunds_minor), total_minor)
    assert abs(sum(taken) - exact) <= Fraction(1, 2)


# Binary and ranks -----------------------------------------------------------------------------


@FAST
@given(
    legs=st.lists(volumes_minor, min_size=4, max_size=4),
    rate_bps=rates_bps,
    cap_minor=st.none() | volumes_minor,
)
def test_binary_matches_the_weaker_leg_and_carries_exactly_the_stronger_remainder(
    legs: list[int], rate_bps: int, cap_minor: int | None
) -> None:
    left_minor, right_minor, carry_left_minor, carry_right_minor = legs
    config = BinaryConfig(rate_bps=rate_bps, cap_minor=cap_minor, carryover=Carryover.CARRY)

    result = binary_payout(left_minor, right_minor, carry_left_minor, carry_right_minor, config)

    total_left, total_right = left_minor + carry_left_minor, right_minor + carry_right_minor
    weaker_minor = min(total_left, total_right)
    assert result.basis_minor == weaker_minor
    assert result.new_carry_left_minor == total_left - weaker_minor
    assert result.new_carry_right_minor == total_right - weaker_minor
    assert min(result.new_carry_left_minor, result.new_carry_right_minor) == 0
    uncapped_minor = round(Fraction(weaker_minor * rate_bps, 10_000))
    if cap_minor is not None and uncapped_minor > cap_minor:
        assert result.capped and result.amount_minor == cap_minor
    else:
        assert not result.capped and result.amount_minor == uncapped_minor


@st.composite
def rank_ladders(draw: st.DrawFn) -> RanksConfig:
    """Ranks whose thresholds grow (and leg share shrinks) from the lowest to the highest."""
    count = draw(st.integers(min_value=1, max_value=4))
    steps = [draw(st.lists(st.integers(0, 500), min_size=3, max_size=3)) for _ in range(count)]
    shares = sorted(draw(st.lists(st.integers(1, 10_000), min_size=count, max_size=count)))
    ranks, pv, gv, legs = [], 0, 0, 0
    for i, (pv_step, gv_step, legs_step) in enumerate(steps):
        pv, gv, legs = pv + pv_step, gv + gv_step * 3, legs + legs_step % 3
        ranks.append(RankRule(f"r{i}", pv, gv, legs, shares[count - 1 - i], None))
    return RanksConfig(tuple(ranks))


@FAST
@given(
    ranks=rank_ladders(),
    pv_minor=st.integers(0, 2000),
    legs_minor=st.lists(st.integers(0, 2000), max_size=5),
    extra_minor=st.integers(0, 2000),
    active_legs=st.integers(0, 10),
)
def test_the_rank_reached_is_the_highest_whose_every_rule_a_naive_check_finds_met(
    ranks: RanksConfig, pv_minor: int, legs_minor: list[int], extra_minor: int, active_legs: int
) -> None:
    gv_minor = pv_minor + sum(legs_minor) + extra_minor

    def meets(rank: RankRule) -> bool:
        leg_cap = Fraction(rank.min_gv_minor * rank.max_leg_share_bps, 10_000)
        counted = pv_minor + extra_minor + sum(min(leg, int(leg_cap)) for leg in legs_minor)
        return (
            pv_minor >= rank.min_pv_minor
            and counted >= rank.min_gv_minor
            and active_legs >= rank.min_active_legs
        )

    met = [rank.code for rank in ranks.ranks if meets(rank)]

    assert evaluate_rank(pv_minor, gv_minor, legs_minor, active_legs, ranks) == (
        met[-1] if met else None
    )
